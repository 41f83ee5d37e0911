"""Model artifacts built by hand for the extract tests: ModelPack models with tar, tar+gzip and tar+zstd
layers (as modctl and KitOps write them), Docker's legacy unannotated v0.1 and `vllm.config.tar`, and
hostile archives (traversal, links out, devices, bombs)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

from mdl.content.descriptor import Descriptor, Manifest, canonical_json
from mdl.content.digest import sha256_bytes
from mdl.reference import parse_reference
from mdl.spec import mediatypes as mt
from mdl.store import LayoutStore

CREATED = "2025-06-01T00:00:00Z"


def tar_bytes(members: list[tuple], *, fmt=tarfile.PAX_FORMAT) -> bytes:
    """A tar of `members`: (name, bytes) files, (name, None) directories, or (name, TarInfo-kwargs dict)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            elif isinstance(data, dict):
                for k, v in data.items():
                    setattr(info, k, v)
                tar.addfile(info)
            else:
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def compress(data: bytes, compression: str | None) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    return data


def layer(media_type: str, data: bytes, filepath: str | None = None) -> tuple[Descriptor, bytes]:
    annotations = {mt.ANNOTATION_FILEPATH: filepath} if filepath is not None else None
    return Descriptor(media_type, sha256_bytes(data), len(data), annotations), data


def store_model(store: LayoutStore, ref: str, layers: list[tuple[Descriptor, bytes]], *,
                modelpack: bool = True, docker_config: str = mt.DOCKER_CONFIG_V01, fmt: str = "safetensors") -> Manifest:
    """Put a model made of `layers` in `store` under `ref` (blobs, config, manifest, tag)."""
    if modelpack:
        config = {"descriptor": {"createdAt": CREATED}, "config": {"format": fmt, "paramSize": "1"},
                  "modelfs": {"type": "layers", "diffIds": [d.digest for d, _ in layers]}}
        config_type, artifact_type = mt.CNCF_CONFIG, mt.CNCF_ARTIFACT_TYPE
    else:
        config = {"config": {"format": fmt}, "descriptor": {"created": CREATED},
                  "rootfs": {"type": "rootfs", "diff_ids": [d.digest for d, _ in layers]}}
        config_type, artifact_type = docker_config, None
    raw = canonical_json(config)
    store.ensure_layout()
    config_desc = Descriptor(config_type, store.write_blob(raw)[0], len(raw))
    for d, data in layers:
        store.write_blob(data, d.digest)
    manifest = Manifest.build(config_desc, [d for d, _ in layers], artifact_type=artifact_type)
    store.put_manifest(manifest)
    store.add_tag(manifest.digest, parse_reference(ref))
    return manifest


def modelpack_archive_layers() -> list[tuple[Descriptor, bytes]]:
    """A ModelPack model as modctl/KitOps write it: a raw weight, and config files in tar, tar+gzip and
    tar+zstd layers (one with a nested directory)."""
    weight = b"\x00" * 4096 + b"weights"
    return [
        layer(mt.CNCF_WEIGHT_RAW, weight, "model.safetensors"),
        layer("application/vnd.cncf.model.weight.config.v1.tar",
              tar_bytes([("config.json", b'{"architectures": ["X"]}')]), "config.json"),
        layer("application/vnd.cncf.model.weight.config.v1.tar+gzip",
              compress(tar_bytes([("tokenizer", None), ("tokenizer/tokenizer.json", b'{"v": 1}'),
                                  ("tokenizer/vocab.txt", b"a\nb\n")]), "gzip"), "tokenizer"),
        layer("application/vnd.cncf.model.doc.v1.tar+zstd",
              compress(tar_bytes([("README.md", b"# model\n")]), "zstd"), "README.md"),
    ]


def config_json(data: dict) -> bytes:
    return json.dumps(data).encode()
