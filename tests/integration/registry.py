"""Start and stop a real registry for tests: Debian's distribution 2.8.2 (`/usr/bin/docker-registry`,
the default) or distribution v3 (`flavor="v3"`: `registry-v3`, v3.1.2's `cmd/registry`, which
`tests/interop/build_peers.sh` builds into the peers' cache folder, `tests/peers.py`).

Each registry gets its own config written here (the packaged default is unusable, docs/notes.md §1):
filesystem storage under the test's temp dir, 127.0.0.1 on a free port, deletes enabled, and
optionally htpasswd auth (bcrypt) and TLS with a self-signed P-256 certificate for 127.0.0.1.
Both read the same config (format `version: 0.1`); v3 is started with `OTEL_TRACES_EXPORTER=none`,
since it otherwise exports its OpenTelemetry traces over OTLP to localhost:4318 and logs each failure.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REGISTRY_BIN = "/usr/bin/docker-registry"
V3_PEER = "registry-v3"  # distribution v3.1.2, built by tests/interop/build_peers.sh
FLAVORS = ("2.8.2", "v3")
START_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningRegistry:
    host: str
    url: str
    root: Path
    config: Path
    process: subprocess.Popen
    log: Path
    ca_file: str | None = None
    username: str | None = None
    password: str | None = None
    flavor: str = "2.8.2"
    _stopped: bool = field(default=False, repr=False)

    def blob_path(self, digest: str) -> Path:
        hexpart = digest.split(":", 1)[1]
        return self.root / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexpart[:2] / hexpart / "data"

    def stop(self, timeout: float = 5.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


def _self_signed_cert(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _wait_ready(url: str, ca_file: str | None, process: subprocess.Popen, log: Path) -> None:
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the registry exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url + "/v2/", timeout=1, context=ctx).close()
            return
        except urllib.error.HTTPError:
            return  # 401 from an auth registry: it is up
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"the registry did not answer {url}/v2/ within {START_TIMEOUT} s")


def registry_binary(flavor: str = "2.8.2") -> str:
    """The registry program of `flavor`. Without Debian's package the 2.8.2 tests are skipped (as
    always); a missing v3 fails the test, naming the peer and `bash tests/interop/build_peers.sh`."""
    if flavor == "2.8.2":
        if not os.access(REGISTRY_BIN, os.X_OK):
            pytest.skip(f"{REGISTRY_BIN} is not installed (Debian package docker-registry)")
        return REGISTRY_BIN
    if flavor == "v3":
        from tests.peers import peer

        return peer(V3_PEER)
    raise ValueError(f"unknown registry flavor {flavor!r}: one of {', '.join(FLAVORS)}")


def start_registry(tmp_dir: Path | str, *, htpasswd: tuple[str, str] | None = None,
                   tls: bool = False, readonly: bool = False, flavor: str = "2.8.2") -> RunningRegistry:
    """`readonly`: distribution's maintenance mode (`storage.maintenance.readonly`): reads work, every
    write (upload, manifest PUT, delete) is refused with 405 UNSUPPORTED. `flavor`: `"2.8.2"` (Debian's
    docker-registry) or `"v3"` (distribution v3.1.2)."""
    binary = registry_binary(flavor)
    tmp = Path(tmp_dir)
    tmp.mkdir(parents=True, exist_ok=True)
    root = tmp / "storage"
    root.mkdir(exist_ok=True)
    port = free_port()
    host = f"127.0.0.1:{port}"
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {root}",
        "  delete:",
        "    enabled: true",
        *(["  maintenance:", "    readonly:", "      enabled: true"] if readonly else []),
        "http:",
        f"  addr: {host}",
        "  secret: mdl-test-secret",
    ]
    ca_file = None
    if tls:
        cert, key = _self_signed_cert(tmp)
        lines += ["  tls:", f"    certificate: {cert}", f"    key: {key}"]
        ca_file = str(cert)
    username = password = None
    if htpasswd is not None:
        import bcrypt

        username, password = htpasswd
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
        pw_file = tmp / "htpasswd"
        pw_file.write_text(f"{username}:{hashed}\n")
        lines += ["auth:", "  htpasswd:", "    realm: mdl-test", f"    path: {pw_file}"]
    config = tmp / "config.yml"
    config.write_text("\n".join(lines) + "\n")
    log = tmp / "registry.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "OTEL_"))}
    if flavor == "v3":
        env["OTEL_TRACES_EXPORTER"] = "none"
    with open(log, "wb") as logf:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=logf, stderr=subprocess.STDOUT,
                                   env=env, stdin=subprocess.DEVNULL)
    scheme = "https" if tls else "http"
    url = f"{scheme}://{host}"
    reg = RunningRegistry(host=host, url=url, root=root, config=config, process=process, log=log,
                          ca_file=ca_file, username=username, password=password, flavor=flavor)
    try:
        _wait_ready(url, ca_file, process, log)
    except BaseException:
        reg.stop()
        raise
    return reg
