"""mdl against distribution v3.1.2 (`registry-v3`, built by tests/interop/build_peers.sh; missing, these
tests fail naming it): where v3 answers differently from 2.8.2 (spec/interop.md §7).

- v3.1.2 has no referrers API either (the route does not exist: a plain-text 404), so `mdl sign` keeps
  the `sha256-<hex>` fallback index and `mdl verify --key`, `mdl pull --verify-key` and `mdl audit --key`
  find the signatures there.
- v3 answers an upload session's status (`GET <location>`) from the session itself, even with a
  `Location` whose signed `_state` is stale, where 2.8.2 answers 404 and cancels the session: a chunked
  upload whose PATCH answer was lost resumes in the same session, where 2.8.2 restarts the blob.
- v3 checks a PATCH's `Content-Range` (416 `RANGE_INVALID` when it does not start at the session's
  offset); mdl's chunks always start there.
- v3 pages `tags/list` by `n` with a `Link` header, and mdl (`mdl audit --page-size`) follows the pages.
"""

from __future__ import annotations

import json
import re

import pytest
import requests

from mdl.content.transfer import SENT
from mdl.registry.errors import RegistryUnreachableError
from mdl.registry.referrers import fallback_tag, referrers_api
from mdl.signing.cosign import signature_tag
from mdl.spec import mediatypes as mt
from tests.integration.blobs import BytesSource, random_blob, read_and_verify
from tests.integration.registry import start_registry
from tests.integration.signing_fixtures import cli, keys, ok, push_model, remote  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """distribution v3 (overrides the conftest's 2.8.2 one for this module)."""
    reg = start_registry(tmp_path_factory.mktemp("registry-v3"), flavor="v3")
    yield reg
    reg.stop()


def test_the_registry_is_v3(registry):
    assert registry.flavor == "v3"
    assert requests.get(f"{registry.url}/v2/", timeout=10).headers["Docker-Distribution-Api-Version"] \
        == "registry/2.0"


def test_sign_and_verify_through_the_fallback_index(cli, registry, unique_repo, keys, tmp_path):
    target, digest = push_model(cli, registry, unique_repo)
    repo = remote(registry, unique_repo)
    # No referrers API: the route is unknown (Go's plain-text 404), so mdl reads and writes the fallback tag.
    r = requests.get(f"{registry.url}/v2/{unique_repo}/referrers/{digest}", timeout=10)
    assert (r.status_code, r.headers["Content-Type"], r.text) == (404, "text/plain; charset=utf-8",
                                                                  "404 page not found\n")
    assert referrers_api(repo, digest) is None

    signed = json.loads(ok(cli("sign", target, "--key", keys["alice"][0], "--model-signing", "--json")).stdout)
    assert signed["added"] == ["bundle", "legacy", "model-signing"]
    forms = signed["signatures"]
    index = json.loads(repo.fetch_manifest_bytes(fallback_tag(digest))[0])
    assert {m["digest"]: m["artifactType"] for m in index["manifests"]} == {
        forms["bundle"]: mt.SIGSTORE_BUNDLE, forms["legacy"]: mt.COSIGN_SIGNATURE_ARTIFACT_TYPE,
        forms["model-signing"]: mt.SIGSTORE_BUNDLE}
    assert repo.fetch_manifest_bytes(signature_tag(digest))[2] == forms["legacy"]
    # v3 keeps each referrer's `subject` as pushed (and answers no OCI-Subject)
    for form in ("bundle", "legacy", "model-signing"):
        assert json.loads(repo.fetch_manifest_bytes(forms[form])[0])["subject"]["digest"] == digest

    got = json.loads(ok(cli("verify", target, "--key", keys["alice"][1], "--json")).stdout)
    assert got["ok"] and got["signature"]["form"] == "bundle"
    assert got["signature"]["signatureManifest"] == forms["bundle"] and got["signature"]["digest"] == digest
    proc = cli("verify", target, "--key", keys["bob"][1])
    assert proc.returncode == 11, proc.stderr

    fresh = {"MDL_HOME": str(tmp_path / "fresh")}
    pulled = json.loads(ok(cli("pull", target, "--verify-key", keys["alice"][1], "--json",
                               extra_env=fresh)).stdout.strip().splitlines()[-1])
    assert pulled["signature"]["form"] == "bundle"

    audit = json.loads(ok(cli("audit", f"{registry.host}/{unique_repo}", "--key", keys["alice"][1],
                              "--json", "-")).stdout)
    assert audit["ok"] and audit["counts"]["models"] == 1 and audit["counts"]["failing"] == 0
    assert audit["counts"]["signatures"] == {"verified": 1}
    assert audit["counts"]["kinds"]["signature"] == 3 and audit["counts"]["kinds"]["index"] == 1

    # Signing again adds nothing; a second key adds its own forms to the same index.
    again = json.loads(ok(cli("sign", target, "--key", keys["alice"][0], "--model-signing", "--json")).stdout)
    assert again["added"] == []
    ok(cli("sign", target, "--key", keys["bob"][0]))
    assert len(json.loads(repo.fetch_manifest_bytes(fallback_tag(digest))[0])["manifests"]) == 5
    ok(cli("verify", target, "--key", keys["bob"][1]))


def _lose_the_answer_of_patch(client, n: int) -> None:
    """The n-th PATCH reaches the registry, but its answer (with the next Location) is lost."""
    original = client.request
    seen = []

    def request(method, url, **kw):
        if method == "PATCH":
            seen.append(url)
            if len(seen) == n:
                original(method, url, **kw).close()
                raise RegistryUnreachableError(client.registry, "connection reset (injected)")
        return original(method, url, **kw)

    client.request = request


class _Events:
    def start(self, desc, what):
        pass

    def advance(self, desc, nbytes):
        pass

    def done(self, desc, outcome):
        pass


def test_a_chunked_upload_whose_patch_answer_was_lost_resumes_in_the_same_session(repo, rec):
    # 2.8.2 answers the stale Location's GET with 404 and cancels the session, so the blob restarts
    # (tests/integration/test_registry_push.py); v3 answers the session's real offset.
    data, desc = random_blob(200_000)
    repo.chunk_size = 50_000
    _lose_the_answer_of_patch(repo.client, 3)
    source = BytesSource(data)
    assert repo.put_blob(desc, source, _Events()) == SENT
    assert source.opened == [0] and rec.count("POST", "uploads") == 1
    status = [e for e in rec.exchanges if e.method == "GET" and "/uploads/" in e.url]
    assert len(status) == 1 and status[0].status == 204
    # chunks 1-3 (the 3rd's answer lost), then only the 4th: nothing was sent twice
    assert rec.count("PATCH", "uploads") == 4
    stream, _ = repo.open_blob(desc)
    assert read_and_verify(stream, desc) == data


def test_a_patch_not_starting_at_the_session_offset_is_refused(registry, unique_repo):
    s = requests.Session()
    start = s.post(f"{registry.url}/v2/{unique_repo}/blobs/uploads/", timeout=10)
    assert start.status_code == 202 and "OCI-Chunk-Min-Length" not in start.headers
    r = s.patch(start.headers["Location"], data=b"0123456789",
                headers={"Content-Type": "application/octet-stream", "Content-Range": "5-14"}, timeout=10)
    assert r.status_code == 416 and r.json()["errors"][0]["code"] == "RANGE_INVALID"


_EXCHANGE = re.compile(r"^debug: (GET|HEAD) https?://[^/]+(/\S*) -> ", re.M)


def test_audit_follows_the_registrys_own_tag_pages(cli, registry, unique_repo):
    """v3 pages `tags/list` by `n` with a `Link` header, in lexical order (2.8.2 sends one page whatever `n`
    asks, so tests/integration/test_audit.py fakes the pages with a proxy): here the real pages are read."""
    target, digest = push_model(cli, registry, unique_repo)
    repo = remote(registry, unique_repo)
    raw, media_type, _ = repo.fetch_manifest_bytes(digest)
    repo.put_manifest_bytes(raw, media_type, digest, ["b", "a", "c", "d"])
    proc = cli("--debug", "audit", f"{registry.host}/{unique_repo}", "--page-size", "2", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    base = f"/v2/{unique_repo}/tags/list"
    pages = [p for m, p in _EXCHANGE.findall(proc.stderr) if p.startswith(base)]
    assert pages == [f"{base}?n=2", f"{base}?last=b&n=2", f"{base}?last=d&n=2"], pages
    [model] = json.loads(proc.stdout)["artifacts"]
    assert sorted(model["tags"]) == ["a", "b", "c", "d", "v1"]
