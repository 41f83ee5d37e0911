"""Behaviour a healthy local registry cannot show: retries, Retry-After, redirects, error bodies, huge
manifests, tag pagination. A tiny HTTP server injects the faults; it is not a fake registry (the
registry tests use the real one)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mdl.registry.client import RegistryClient

from mdl.registry.repository import RemoteRepository
from mdl.registry.errors import (
    AuthenticationError,
    ManifestTooLargeError,
    PermissionDeniedError,
    RegistryError,
)
from mdl.spec import mediatypes as mt
from tests.integration.blobs import Recorder, blob


class FaultServer:
    """HTTP on 127.0.0.1; `respond(handler)` answers each request; `requests` records (method, path, headers)."""

    def __init__(self, respond):
        self.requests: list[tuple[str, str, dict]] = []
        self.bodies: list[bytes] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                server.bodies.append(self.rfile.read(length) if length else b"")
                server.requests.append((self.command, self.path, dict(self.headers)))
                respond(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def reply(h, status, body=b"", headers=None):
    h.send_response(status)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    if "Content-Length" not in (headers or {}):
        h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD" and body:
        h.wfile.write(body)


@pytest.fixture
def serve():
    servers = []

    def start(respond):
        s = FaultServer(respond)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def client_for(server, **kw):
    kw.setdefault("backoff_base", 0.01)
    return RegistryClient(server.host, **kw)


def test_503_then_200_is_retried(serve):
    calls = []

    def respond(h):
        calls.append(h.path)
        reply(h, 503 if len(calls) < 3 else 200, b"{}")

    server = serve(respond)
    resp = client_for(server).request("GET", "/v2/")
    assert resp.status_code == 200 and len(calls) == 3


def test_retries_are_bounded(serve):
    server = serve(lambda h: reply(h, 502, b'{"errors":[{"code":"UNAVAILABLE","message":"down"}]}'))
    rec = Recorder()
    with pytest.raises(RegistryError) as err:
        client_for(server, retries=3, debug_log=rec).request("GET", "/v2/")
    assert err.value.status == 502 and err.value.code == "UNAVAILABLE" and "down" in err.value.message
    assert len(server.requests) == 4 and len(rec.exchanges) == 4


def test_429_honours_retry_after(serve):
    calls = []

    def respond(h):
        calls.append(time.monotonic())
        if len(calls) == 1:
            reply(h, 429, b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}', {"Retry-After": "1"})
        else:
            reply(h, 200, b"{}")

    server = serve(respond)
    slept = []
    client = client_for(server)
    real_sleep = client._sleep
    client._sleep = lambda s: (slept.append(s), real_sleep(s))
    assert client.request("GET", "/v2/").status_code == 200
    assert slept == [1.0] and calls[1] - calls[0] >= 0.95


def test_429_that_persists_is_a_registry_error(serve):
    server = serve(lambda h: reply(h, 429, b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow"}]}',
                                   {"Retry-After": "0"}))
    with pytest.raises(RegistryError) as err:
        client_for(server, retries=2).request("GET", "/v2/")
    assert err.value.code == "TOOMANYREQUESTS" and err.value.status == 429
    assert len(server.requests) == 3


def test_retry_after_is_capped_and_budgeted(serve):
    server = serve(lambda h: reply(h, 503, b"", {"Retry-After": "3600"}))
    client = client_for(server, retry_after_cap=0.2, retries=2)
    slept = []
    client._sleep = slept.append
    with pytest.raises(RegistryError):
        client.request("GET", "/v2/")
    assert slept == [0.2, 0.2]


@pytest.mark.parametrize("status,code,cls,kind", [
    (400, "NAME_INVALID", RegistryError, "registry"),
    (400, "MANIFEST_INVALID", RegistryError, "registry"),
    (400, "DIGEST_INVALID", RegistryError, "registry"),
    (416, "BLOB_UPLOAD_INVALID", RegistryError, "registry"),
    (405, "UNSUPPORTED", RegistryError, "registry"),
    (403, "DENIED", PermissionDeniedError, "denied"),
])
def test_error_bodies_are_mapped_at_once(serve, status, code, cls, kind):
    body = json.dumps({"errors": [{"code": code, "message": f"msg {code}", "detail": None}]}).encode()
    server = serve(lambda h: reply(h, status, body, {"Content-Type": "application/json"}))
    with pytest.raises(cls) as err:
        client_for(server).request("PUT", "/v2/a/manifests/x", data=b"{}")
    assert err.value.kind == kind and len(server.requests) == 1
    if cls is RegistryError:
        assert err.value.code == code and err.value.status == status and code in err.value.message


def test_401_without_challenge_is_an_auth_error(serve):
    server = serve(lambda h: reply(h, 401, b""))
    with pytest.raises(AuthenticationError) as err:
        client_for(server).request("GET", "/v2/")
    assert err.value.message.startswith(f"authentication required for {server.host}; run mdl login")


def test_malformed_challenge_is_a_registry_error(serve):
    server = serve(lambda h: reply(h, 401, b"", {"WWW-Authenticate": 'Bearer realm="unterminated'}))
    with pytest.raises(RegistryError) as err:
        client_for(server).request("GET", "/v2/")
    assert "malformed WWW-Authenticate" in err.value.message


def test_redirect_to_another_host_drops_authorization(serve):
    data = b"blob bytes"
    desc = blob(data)
    storage = serve(lambda h: reply(h, 200, data))

    def registry(h):
        if h.headers.get("Authorization") is None:
            reply(h, 401, b"", {"WWW-Authenticate": 'Basic realm="test"'})
        elif h.path.startswith("/v2/a/blobs/"):
            reply(h, 307, b"", {"Location": f"http://{storage.host}/storage/{desc.digest}?X-Amz-Signature=abc"})
        else:
            reply(h, 200, b"{}")

    reg = serve(registry)
    rec = Recorder()
    from mdl.registry.credentials import Credentials

    client = client_for(reg, credentials=Credentials("user", "s3cret-pw"), debug_log=rec)
    stream, start = RemoteRepository(client, "a").open_blob(desc)
    with stream:
        assert stream.read() == data and start == 0
    assert [r[2].get("Authorization") is not None for r in reg.requests] == [False, True]
    assert len(storage.requests) == 1 and "Authorization" not in storage.requests[0][2]
    log = rec.text()
    assert "s3cret-pw" not in log and "abc" not in log and "<redacted>" in log


def test_redirects_are_bounded(serve):
    server = serve(lambda h: reply(h, 302, b"", {"Location": "/v2/loop"}))
    with pytest.raises(RegistryError) as err:
        client_for(server).request("GET", "/v2/loop")
    assert err.value.code == "TOO_MANY_REDIRECTS" and len(server.requests) == 6


@pytest.mark.parametrize("with_length", [True, False])
def test_oversized_manifest_is_refused(serve, with_length):
    body = b"{" + b" " * (4 << 20) + b"}"
    digest = "sha256:" + hashlib.sha256(body).hexdigest()

    def respond(h):
        h.send_response(200)
        h.send_header("Content-Type", mt.OCI_MANIFEST)
        h.send_header("Docker-Content-Digest", digest)
        if with_length:
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        else:
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(body)
            h.close_connection = True

    server = serve(respond)
    with pytest.raises(ManifestTooLargeError) as err:
        RemoteRepository(client_for(server), "a/b").fetch_manifest("big")
    assert "a/b:big" in err.value.message and "too large" in err.value.message


def test_tag_list_follows_link_pagination(serve):
    pages = {"/v2/a/tags/list": (["t1", "t2"], '</v2/a/tags/list?n=2&last=t2>; rel="next"'),
             "/v2/a/tags/list?n=2&last=t2": (["t3", "t4"], '</v2/a/tags/list?n=2&last=t4>; rel="next"'),
             "/v2/a/tags/list?n=2&last=t4": (["t5"], None)}

    def respond(h):
        tags, link = pages[h.path]
        reply(h, 200, json.dumps({"name": "a", "tags": tags}).encode(), {"Link": link} if link else {})

    server = serve(respond)
    assert RemoteRepository(client_for(server), "a").tags() == ["t1", "t2", "t3", "t4", "t5"]
    assert len(server.requests) == 3
