"""Signatures in cosign's key-based "simple signing" format (spec/signing.md).

A signature is a payload (JSON naming the model's manifest digest and repository) signed with ECDSA
P-256 over SHA-256 of its exact bytes. The payload is a layer of a signature manifest (an OCI image
manifest, `artifactType` cosign's, `subject` the model) tagged `sha256-<hex>.sig`; each signature is
one layer, so a second key adds a layer. The manifest is also registered as a referrer of the model
(`registry/referrers.py`).

Verification trusts only the payload bytes and the signature over them: the manifest that carries
them (its `subject`, its tag) is only where to look. The local store keeps signature manifests as
index entries named `<repo>:sha256-<hex>.sig`, so a verified pull can be verified again offline.

Modules: `errors` (one kind per way signing fails), `keys` (generate, load, sign and check bytes),
`cosign` (the payload, the signature manifest, its tags), `policy` (which signatures pass).
Signing and verifying against a registry or the store is orchestration: `mdl.ops.sign`,
`mdl.ops.signatures`.
"""
