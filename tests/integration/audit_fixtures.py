"""A registry holding one artifact of every kind `mdl audit` tells apart, pushed for real (tests only).

`populate(registry, work)` pushes, on the real distribution 2.8.2:

- `models/docker-tiny:v1` (and `:latest`, the same digest): a Docker model packaged by `mdl package`,
  signed with `alice` (`ops.sign`), which adds its `.sig` tag, its referrers fallback index tag, and
  whatever other signature referrers the signer writes (listed in that index, untagged);
- `models/pack-tiny:v1`: a ModelPack model packaged by `mdl package --format cncf`, unsigned;
- `models/broken:v1`: the Docker model with a config whose `context_size` is -5 (fails the schema),
  pushed as raw bytes through the repository API;
- `apps/web:1.0`: a container image (OCI image config, a tar layer), and `apps/web:multi`: an index
  listing it;
- `misc/sbom:v1`: another OCI artifact (an artifactType, the empty config).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mdl.content.descriptor import Descriptor, Index, Manifest, canonical_json
from mdl.content.digest import sha256_bytes
from mdl.ops.sign import sign_with_key
from mdl.ops.signatures import find_registry_signatures
from mdl.registry.client import RegistryClient
from mdl.registry.referrers import fallback_tag
from mdl.registry.repository import RemoteRepository
from mdl.signing.cosign import signature_tag
from mdl.signing.keys import load_private_key, write_keypair
from mdl.spec import mediatypes as mt
from tests.fixtures.models import write_tiny_gguf

BROKEN_CASE = "docker-config/docker-config-context-size-a-positive-32-bit-integer"
REPOSITORIES = ["apps/web", "misc/sbom", "models/broken", "models/docker-tiny", "models/pack-tiny"]


class Blobs:
    """Blobs held in memory, as a copy source for `RemoteRepository.put_blob`."""

    def __init__(self, *blobs: bytes):
        self.blobs = {sha256_bytes(b): b for b in blobs}

    def open_blob(self, desc: Descriptor, offset: int = 0):
        return io.BytesIO(self.blobs[desc.digest][offset:]), offset


@dataclass
class Populated:
    host: str
    keys: dict[str, tuple[Path, Path]]  # name -> (private, public)
    digests: dict[str, str] = field(default_factory=dict)  # "repo:tag" -> digest
    signatures: list[str] = field(default_factory=list)  # every signature manifest of models/docker-tiny:v1


def run_mdl(work: Path, *args: str, check: bool = True, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m mdl ARGS` with its own store under `work`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MDL_DEBUG", "SOURCE_DATE_EPOCH", "MDL_REGISTRY_USERNAME", "MDL_REGISTRY_PASSWORD")}
    env |= {"MDL_HOME": str(work / "home"), "DOCKER_CONFIG": str(work / "docker-config")} | (extra_env or {})
    proc = subprocess.run([sys.executable, "-m", "mdl", *args], capture_output=True, text=True, env=env, cwd=work,
                          stdin=subprocess.DEVNULL)
    if check:
        assert proc.returncode in (0, 1), proc.stderr
    return proc


def repository(host: str, name: str) -> RemoteRepository:
    return RemoteRepository(RegistryClient(host), name)


def push_model(work: Path, host: str, ref: str, fmt: str = "docker", seed: int = 0) -> str:
    gguf = write_tiny_gguf(work / f"tiny-{seed}.gguf", seed=seed)[0]
    proc = run_mdl(work, "package", "--format", fmt, "--gguf", str(gguf), "--push", f"{host}/{ref}")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1].split("@")[1]


def push_broken(host: str, source: str, target: str) -> str:
    """The model `source` (repo:tag) again as `target`, its config's context_size set to -5."""
    src_name, tag = source.split(":")
    src = repository(host, src_name)
    manifest = src.fetch_manifest(tag)
    stream, _ = src.open_blob(manifest.config)
    config = json.loads(stream.read())
    stream.close()
    config["config"]["context_size"] = -5
    raw_config = canonical_json(config)
    doc = manifest.as_dict()
    doc["config"].update(digest=sha256_bytes(raw_config), size=len(raw_config))
    raw = canonical_json(doc)
    name, new_tag = target.split(":")
    dst = repository(host, name)
    dst.mount_from = [src_name]
    for layer in manifest.layers:
        dst.put_blob(layer, src)
    dst.put_blob(Descriptor(manifest.config.media_type, sha256_bytes(raw_config), len(raw_config)), Blobs(raw_config))
    dst.put_manifest_bytes(raw, mt.OCI_MANIFEST, sha256_bytes(raw), [new_tag])
    return sha256_bytes(raw)


def push_image_and_index(host: str, name: str) -> tuple[str, str]:
    """A container-image-like manifest (tag 1.0) and an index listing it (tag multi)."""
    layer = b"not really a tar, but a layer all the same\n" * 10
    config = canonical_json({"architecture": "amd64", "os": "linux", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": [sha256_bytes(layer)]}})
    repo = repository(host, name)
    layer_desc = Descriptor("application/vnd.oci.image.layer.v1.tar", sha256_bytes(layer), len(layer))
    config_desc = Descriptor(mt.OCI_IMAGE_CONFIG, sha256_bytes(config), len(config))
    for d in (layer_desc, config_desc):
        repo.put_blob(d, Blobs(layer, config))
    image = Manifest.build(config_desc, [layer_desc])
    repo.put_manifest(image, ["1.0"])
    index = Index.build([{"mediaType": mt.OCI_MANIFEST, "digest": image.digest, "size": image.size,
                          "platform": {"architecture": "amd64", "os": "linux"}}])
    repo.put_manifest_bytes(index.raw, mt.OCI_INDEX, index.digest, ["multi"])
    return image.digest, index.digest


def push_artifact(host: str, name: str, tag: str = "v1") -> str:
    """Another OCI artifact: an SBOM with an artifactType and the empty config."""
    sbom = b'{"spdxVersion": "SPDX-2.3"}'
    repo = repository(host, name)
    empty = Descriptor(mt.OCI_EMPTY, sha256_bytes(b"{}"), 2)
    layer = Descriptor("application/spdx+json", sha256_bytes(sbom), len(sbom))
    for d in (empty, layer):
        repo.put_blob(d, Blobs(b"{}", sbom))
    m = Manifest.build(empty, [layer], artifact_type="application/spdx+json")
    repo.put_manifest(m, [tag])
    return m.digest


def sign(host: str, ref: str, private_key: Path):
    name, tag = ref.split(":")
    return sign_with_key(repository(host, name), tag, load_private_key(private_key, lambda: None))


def populate(host: str, work: Path) -> Populated:
    work.mkdir(parents=True, exist_ok=True)
    keys = {n: write_keypair(work / n, None) for n in ("alice", "bob")}
    p = Populated(host, keys)
    p.digests["models/docker-tiny:v1"] = push_model(work, host, "models/docker-tiny:v1")
    repo = repository(host, "models/docker-tiny")
    raw, media_type, digest = repo.fetch_manifest_bytes("v1")
    repo.put_manifest_bytes(raw, media_type, digest, ["latest"])
    p.digests["models/pack-tiny:v1"] = push_model(work, host, "models/pack-tiny:v1", fmt="cncf")
    p.digests["models/broken:v1"] = push_broken(host, "models/docker-tiny:v1", "models/broken:v1")
    p.digests["apps/web:1.0"], p.digests["apps/web:multi"] = push_image_and_index(host, "apps/web")
    p.digests["misc/sbom:v1"] = push_artifact(host, "misc/sbom")
    sign(host, "models/docker-tiny:v1", keys["alice"][0])
    model = p.digests["models/docker-tiny:v1"]
    p.digests["signature"] = repo.resolve(signature_tag(model)).digest  # the legacy `.sig` manifest
    p.digests["fallback"] = repo.resolve(fallback_tag(model)).digest
    p.signatures = sorted(m.digest for m in find_registry_signatures(repo, model))
    return p
