"""What the registry checks undo after each check, and what they report the API cannot remove, against a
scripted registry (the real one, distribution 2.8.2, is in tests/integration/test_conformance_registry.py)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from mdl.conformance.registry_framework import Context
from mdl.spec import mediatypes as mt


class _Response:
    def __init__(self, status: int, body: dict | None = None, next_link: str | None = None):
        self.status_code = status
        self.content = json.dumps(body).encode() if body is not None else b""
        self.links = {"next": {"url": next_link}} if next_link else {}
        self.url = "http://r.example/v2/_catalog"
        self.headers = {}

    def json(self):
        return json.loads(self.content)

    def iter_content(self, n):
        yield self.content

    def close(self):
        pass


class _Client:
    """Answers each (method, path) from `answers`, a list per key consumed in order; records every request."""

    registry = "r.example"

    def __init__(self, answers: dict):
        self.answers = answers
        self.sent: list[tuple[str, str]] = []

    def request(self, method, url, **kwargs):
        path = urlsplit(url).path
        self.sent.append((method, path))
        return self.answers[(method, path)].pop(0)


class _Repo:
    def __init__(self, client, repository="ns/x"):
        self.client = client
        self.repository = repository
        self.deleted: list[str] = []

    def delete_manifest(self, digest):
        self.deleted.append(digest)

    delete_blob = delete_manifest


def _context(answers: dict) -> tuple[Context, _Client, _Repo]:
    client = _Client(answers)
    repo = _Repo(client)
    return Context(repo, 1 << 20, []), client, repo


MANIFESTS = "/v2/ns/x/manifests/"


def test_a_tag_the_registry_drops_with_its_manifest_is_left_alone():
    ctx, client, repo = _context({("PUT", MANIFESTS + "v1"): [_Response(201)],
                                  ("HEAD", MANIFESTS + "v1"): [_Response(404)]})
    ctx.put_manifest(repo, b"{}", mt.OCI_MANIFEST, "v1")
    assert ctx.clean_up() == []
    assert repo.deleted == ["sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"]
    assert client.sent[-1] == ("HEAD", MANIFESTS + "v1")  # after the manifest's delete


def test_a_tag_that_outlives_its_manifest_is_deleted_by_name():
    ctx, client, repo = _context({("PUT", MANIFESTS + "v1"): [_Response(201)],
                                  ("HEAD", MANIFESTS + "v1"): [_Response(200)],
                                  ("DELETE", MANIFESTS + "v1"): [_Response(202)]})
    ctx.put_manifest(repo, b"{}", mt.OCI_MANIFEST, "v1")
    assert ctx.clean_up() == []
    assert client.sent[-2:] == [("HEAD", MANIFESTS + "v1"), ("DELETE", MANIFESTS + "v1")]


def test_a_tag_the_registry_will_not_delete_is_reported_left_behind():
    refused = _Response(400, {"errors": [{"code": "UNSUPPORTED", "message": "unsupported"}]})
    ctx, _, repo = _context({("PUT", MANIFESTS + "v1"): [_Response(201)],
                             ("HEAD", MANIFESTS + "v1"): [_Response(200)],
                             ("DELETE", MANIFESTS + "v1"): [refused]})
    ctx.put_manifest(repo, b"{}", mt.OCI_MANIFEST, "v1")
    assert ctx.clean_up() == ["tag v1 in ns/x (DELETE answered 400 UNSUPPORTED)"]


def test_a_manifest_pushed_by_digest_has_no_tag_to_undo():
    digest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    ctx, client, repo = _context({("PUT", MANIFESTS + digest): [_Response(201)]})
    ctx.put_manifest(repo, b"{}", mt.OCI_MANIFEST, digest)
    assert ctx.clean_up() == [] and repo.deleted == [digest] and client.sent == [("PUT", MANIFESTS + digest)]


def test_not_removable_names_the_listed_repositories_and_the_blob_bytes():
    pages = [_Response(200, {"repositories": ["a", "ns/x"]}, next_link="/v2/_catalog?last=ns/x&n=1000"),
             _Response(200, {"repositories": ["ns/x-mount", "z"]})]
    ctx, client, repo = _context({("GET", "/v2/_catalog"): pages})
    ctx.repo("mount")
    ctx.pushed = [{"repository": "ns/x", "kind": "blob", "digest": "sha256:ab"},
                  {"repository": "ns/x", "kind": "manifest", "digest": "sha256:cd"}]
    remains = ctx.not_removable()
    assert remains[:2] == ["repository ns/x: still listed in /v2/_catalog (the API has no repository delete)",
                           "repository ns/x-mount: still listed in /v2/_catalog (the API has no repository delete)"]
    assert remains[2].startswith("the bytes of the 1 blob(s) pushed:") and "garbage collection" in remains[2]
    assert len(remains) == 3 and client.sent == [("GET", "/v2/_catalog")] * 2


def test_not_removable_without_a_catalog():
    ctx, _, _ = _context({("GET", "/v2/_catalog"): [_Response(401, {"errors": [{"code": "UNAUTHORIZED"}]})]})
    assert ctx.not_removable() == ["repository ns/x: the API has no repository delete (GET /v2/_catalog answered "
                                   "401 UNAUTHORIZED, so whether it is still listed is unknown)"]
