"""cosign's legacy signature layout: the payload, the signature manifest that carries it, and the tag
`sha256-<hex>.sig` that names it (in a registry, and as `<repo>:sha256-<hex>.sig` in the local store)."""

from __future__ import annotations

from .. import artifact_check
from ..content.descriptor import Descriptor, Manifest, canonical_json
from ..content.digest import sha256_bytes
from ..spec import mediatypes as mt

PAYLOAD_TYPE = "cosign container image signature"
PAYLOAD_SCHEMA = "cosign-payload"  # schemas/cosign-payload.schema.json
MAX_PAYLOAD = 1 << 20


def make_payload(docker_reference: str, digest: str, annotations: dict[str, str] | None = None) -> bytes:
    doc = {"critical": {"identity": {"docker-reference": docker_reference},
                        "image": {"docker-manifest-digest": digest},
                        "type": PAYLOAD_TYPE},
           "optional": dict(sorted(annotations.items())) if annotations else None}
    return canonical_json(doc)


def signature_config(layers: list[Descriptor]) -> bytes:
    """The config cosign's signature images carry: an OCI image config whose diff_ids are the payloads."""
    return canonical_json({"architecture": "", "config": {}, "os": "",
                           "rootfs": {"type": "layers", "diff_ids": [d.digest for d in layers]}})


def signature_tag(digest: str) -> str:
    return "sha256-" + digest.split(":", 1)[1] + ".sig"


def build_signature_manifest(subject: Descriptor, layers: list[Descriptor]) -> tuple[Manifest, bytes]:
    config = signature_config(layers)
    config_desc = Descriptor(mt.OCI_IMAGE_CONFIG, sha256_bytes(config), len(config))
    manifest = Manifest.build(config_desc, layers, artifact_type=mt.COSIGN_SIGNATURE_ARTIFACT_TYPE,
                              subject=Descriptor(subject.media_type, subject.digest, subject.size))
    return manifest, config


def is_signature_manifest(manifest: Manifest) -> bool:
    """A signature manifest of either form: cosign's legacy one (spec/signing.md §4) or a bundle
    referrer (§10); the rules are artifact_check's, over the document."""
    doc = manifest.as_dict()
    return artifact_check.is_signature_manifest(doc) or artifact_check.is_bundle_manifest(doc)


def local_signature_names(store, digest: str) -> list[tuple[str, str]]:
    """(ref name, manifest digest) of the signature entries the store holds for `digest`."""
    tag = signature_tag(digest)
    return [(e.ref_name, e.digest) for e in store.entries()
            if e.ref_name is not None and e.ref_name.endswith(":" + tag)]
