"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1 in front of the real registry (tests only).

One thread per client connection; requests on a connection are handled in turn (mdl does not pipeline):
the request (headers and body, Content-Length or chunked) is read and forwarded, then the response is
forwarded, and a matching `Fault` may answer instead, cut the connection, stall, or flip a byte.

    proxy = FaultProxy("127.0.0.1", 5000)
    proxy.add(Fault("GET", r"/blobs/", cut_after=1 << 20, times=3))
    ... f"{proxy.host}/repo:tag" ...
    proxy.stop()
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field

IO_TIMEOUT = 30.0  # every socket operation of the proxy
BUF = 64 << 10


@dataclass
class Fault:
    """Applied to the next `times` requests whose method and path match (`path` is a regex searched in
    the request target). One action: `status` (a canned answer, not forwarded; `headers` added or
    replacing the defaults, None to leave one out; `body` instead of an OCI error body), `cut_after`
    (close both sides after that many response-body bytes), `cut_request_after` (close both sides after
    forwarding that many request-body bytes), `stall` (seconds of silence before the response, then
    close), `flip_at` (xor one byte of the response body at that offset), `append` (bytes sent after the
    response body, beyond its Content-Length; the connection stays open)."""

    method: str
    path: str
    times: int = 1
    status: int | None = None
    headers: dict = field(default_factory=dict)
    body: bytes | None = None
    cut_after: int | None = None
    cut_request_after: int | None = None
    stall: float | None = None
    flip_at: int | None = None
    append: bytes | None = None
    hits: int = 0  # how many requests it was applied to

    def matches(self, method: str, target: str) -> bool:
        return self.hits < self.times and method == self.method and re.search(self.path, target) is not None


class _Closed(Exception):
    """The connection is over (peer closed, a fault cut it, or the proxy stops)."""


class _Reader:
    """Buffered reads from a socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def _more(self) -> None:
        data = self.sock.recv(BUF)
        if not data:
            raise _Closed()
        self.buf += data

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise _Closed()
            self._more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line + b"\r\n"

    def head(self) -> bytes:
        out = b""
        while True:
            line = self.line()
            out += line
            if line == b"\r\n":
                return out
            if len(out) > 1 << 20:
                raise _Closed()

    def some(self, limit: int) -> bytes:
        if not self.buf:
            self._more()
        data, self.buf = self.buf[:limit], self.buf[limit:]
        return data

    def until_close(self):
        if self.buf:
            data, self.buf = self.buf, b""
            yield data
        while True:
            data = self.sock.recv(BUF)
            if not data:
                return
            yield data


def _headers(head: bytes) -> dict[str, str]:
    out = {}
    for line in head.split(b"\r\n")[1:]:
        if b":" in line:
            k, v = line.split(b":", 1)
            out[k.decode("latin-1").strip().lower()] = v.decode("latin-1").strip()
    return out


def _body_chunks(reader: _Reader, headers: dict[str, str], *, no_body: bool):
    """The raw bytes of a message body as they travel (chunked framing included), and whether the
    connection must close afterwards (body delimited by EOF)."""
    if no_body:
        return
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = reader.line()
            yield size_line
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers up to the empty line
                    line = reader.line()
                    yield line
                    if line == b"\r\n":
                        return
            left = size + 2
            while left:
                data = reader.some(left)
                left -= len(data)
                yield data
    elif "content-length" in headers:
        left = int(headers["content-length"])
        while left:
            data = reader.some(min(left, BUF))
            left -= len(data)
            yield data
    else:
        yield from reader.until_close()


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int):
        self.upstream = (upstream_host, upstream_port)
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []  # (method, target) of every request seen
        self.headers: list[dict[str, str]] = []  # the request headers (lower-cased names), in the same order
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: set[socket.socket] = set()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept_thread.start()

    # -- plan ---------------------------------------------------------------------------------------
    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def _take(self, method: str, target: str, headers: dict[str, str]) -> Fault | None:
        with self._lock:
            self.requests.append((method, target))
            self.headers.append(headers)
            for f in self.faults:
                if f.matches(method, target):
                    f.hits += 1
                    return f
        return None

    # -- plumbing -----------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(client,), daemon=True)
            with self._lock:
                self._threads.append(t)
            t.start()

    def _track(self, sock: socket.socket) -> socket.socket:
        sock.settimeout(IO_TIMEOUT)
        with self._lock:
            self._socks.add(sock)
        return sock

    def _close(self, *socks: socket.socket) -> None:
        for s in socks:
            if s is None:
                continue
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
            with self._lock:
                self._socks.discard(s)

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        upstream = None
        try:
            creader = _Reader(client)
            for _ in range(100_000):  # requests on this connection
                if self._stopping.is_set():
                    return
                head = creader.head()
                method, target = head.split(b" ", 2)[:2]
                method, target = method.decode(), target.decode()
                req_headers = _headers(head)
                fault = self._take(method, target, req_headers)
                if fault is not None and fault.status is not None:
                    for _chunk in _body_chunks(creader, req_headers, no_body=False if req_headers.get(
                            "content-length") or req_headers.get("transfer-encoding") else True):
                        pass  # the request body is read and dropped
                    body = fault.body if fault.body is not None else \
                        b'{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}'
                    fields = {"Content-Type": "application/json", "Content-Length": str(len(body))}
                    fields.update(fault.headers)
                    fields["Connection"] = "close"
                    head = "".join(f"{k}: {v}\r\n" for k, v in fields.items() if v is not None)
                    client.sendall(f"HTTP/1.1 {fault.status} Injected\r\n{head}\r\n".encode()
                                   + (b"" if method == "HEAD" else body))
                    return
                if upstream is None:
                    upstream = self._track(socket.create_connection(self.upstream, timeout=IO_TIMEOUT))
                    ureader = _Reader(upstream)
                upstream.sendall(head)
                has_body = bool(req_headers.get("content-length") or req_headers.get("transfer-encoding"))
                sent = 0
                for chunk in _body_chunks(creader, req_headers, no_body=not has_body):
                    if fault is not None and fault.cut_request_after is not None \
                            and sent + len(chunk) > fault.cut_request_after:
                        upstream.sendall(chunk[:max(0, fault.cut_request_after - sent)])
                        return
                    upstream.sendall(chunk)
                    sent += len(chunk)
                if fault is not None and fault.stall is not None:
                    self._stopping.wait(fault.stall)
                    return
                resp_head = ureader.head()
                while resp_head.split(b" ", 2)[1].startswith(b"1"):  # 1xx: pass on, read the real one
                    client.sendall(resp_head)
                    resp_head = ureader.head()
                client.sendall(resp_head)
                status = int(resp_head.split(b" ", 2)[1])
                resp_headers = _headers(resp_head)
                no_body = method == "HEAD" or status in (204, 304)
                offset = 0
                framed = "content-length" in resp_headers or "chunked" in resp_headers.get(
                    "transfer-encoding", "").lower()
                for chunk in _body_chunks(ureader, resp_headers, no_body=no_body):
                    if fault is not None and fault.cut_after is not None and offset + len(chunk) > fault.cut_after:
                        client.sendall(chunk[:max(0, fault.cut_after - offset)])
                        return
                    if fault is not None and fault.flip_at is not None and offset <= fault.flip_at < offset + len(chunk):
                        b = bytearray(chunk)
                        b[fault.flip_at - offset] ^= 0xFF
                        chunk = bytes(b)
                    client.sendall(chunk)
                    offset += len(chunk)
                if fault is not None and fault.append is not None:
                    client.sendall(fault.append)
                if not no_body and not framed:
                    return
                if "close" in resp_headers.get("connection", "").lower() \
                        or "close" in req_headers.get("connection", "").lower():
                    return
        except (_Closed, OSError, ValueError, IndexError):
            return
        finally:
            self._close(client, upstream)

    def stop(self) -> None:
        self._stopping.set()
        try:
            self._listener.close()
        except OSError:
            pass
        self._accept_thread.join(5)
        with self._lock:
            socks = list(self._socks)
            threads = list(self._threads)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in threads:
            t.join(5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
