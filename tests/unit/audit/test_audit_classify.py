"""What `mdl audit` calls each manifest: one rule over the parsed node."""

from __future__ import annotations

import pytest

from mdl.audit.classify import classify, subject_of
from mdl.content.descriptor import Descriptor, Index, Manifest
from mdl.content.digest import sha256_bytes
from mdl.signing.cosign import build_signature_manifest
from mdl.spec import mediatypes as mt

D = sha256_bytes(b"x")
SUBJECT = Descriptor(mt.OCI_MANIFEST, sha256_bytes(b"model"), 5)


def manifest(config_type: str, layer_type: str = mt.GGUF, artifact_type: str | None = None, **kw) -> Manifest:
    return Manifest.build(Descriptor(config_type, D, 1), [Descriptor(layer_type, D, 1)], artifact_type=artifact_type,
                          **kw)


@pytest.mark.parametrize("node, expected", [
    (manifest(mt.DOCKER_CONFIG_V01), ("docker-model", "docker")),
    (manifest(mt.DOCKER_CONFIG_V02, mt.SAFETENSORS), ("docker-model", "docker")),
    (manifest(mt.CNCF_CONFIG, mt.CNCF_WEIGHT_RAW, mt.CNCF_ARTIFACT_TYPE), ("modelpack-model", "modelpack")),
    (manifest(mt.CNAI_CONFIG, mt.CNCF_WEIGHT_RAW), ("modelpack-model", "modelpack")),
    # claims to be a ModelPack model by its artifactType alone: a model, whose check says what is wrong
    (manifest(mt.OCI_EMPTY, mt.CNCF_WEIGHT_RAW, mt.CNCF_ARTIFACT_TYPE), ("modelpack-model", "modelpack")),
    (manifest(mt.OCI_IMAGE_CONFIG, "application/vnd.oci.image.layer.v1.tar"), ("image", None)),
    (manifest(mt.DOCKER_IMAGE_CONFIG, "application/vnd.docker.image.rootfs.diff.tar.gzip"), ("image", None)),
    (manifest(mt.OCI_IMAGE_CONFIG, "application/x-thing", "application/vnd.example.thing"), ("artifact", None)),
    (manifest(mt.OCI_EMPTY, "application/spdx+json", "application/spdx+json"), ("artifact", None)),
    (build_signature_manifest(SUBJECT, [Descriptor(mt.COSIGN_SIMPLESIGNING, D, 1)])[0], ("signature", None)),
    (Index.build([{"mediaType": mt.OCI_MANIFEST, "digest": D, "size": 1}]), ("index", None)),
])
def test_each_kind(node, expected):
    assert classify(node) == expected


def test_the_subject_of_a_referrer_by_its_field_else_by_its_tag():
    sig = build_signature_manifest(SUBJECT, [Descriptor(mt.COSIGN_SIMPLESIGNING, D, 1)])[0]
    assert subject_of(sig, []) == SUBJECT.digest
    hexpart = SUBJECT.digest[7:]
    index = Index.build([])
    assert subject_of(index, [f"sha256-{hexpart}"]) == SUBJECT.digest  # the referrers fallback tag
    assert subject_of(None, ["v1", f"sha256-{hexpart}.sig"]) == SUBJECT.digest  # cosign's signature tag
    assert subject_of(index, ["v1", f"sha256-{hexpart}.att", "sha256-abc"]) is None
