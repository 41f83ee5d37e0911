"""Signatures in both of cosign's key-based forms, and OpenSSF model signing (spec/signing.md).

- The bundle (cosign v3): an in-toto statement naming the model's manifest digest, in a DSSE envelope
  signed with ECDSA P-256, in a Sigstore bundle; the bundle is the one layer of a referrer manifest
  (`subject` the model), found through the referrers API or the `sha256-<hex>` fallback index.
- The legacy "simple signing" form (cosign v2, and v3 with `--new-bundle-format=false`): a payload
  naming the digest and repository, signed over its exact bytes, as a layer of the manifest tagged
  `sha256-<hex>.sig`; each signature is one layer, so a second key adds a layer.
- OpenSSF model signing: a bundle over a statement listing every file of the model with its sha256
  (the layer digest), a referrer too, and written as `model.sig` beside extracted files.

Verification trusts only signed bytes: the manifests and tags that carry them only say where to look.
The local store keeps the signature manifest that verified as an index entry named
`<repo>:sha256-<hex>.sig` (whichever form it is), so a verified pull can be verified again offline.

Modules: `errors` (one kind per way signing fails), `keys` (generate, load, sign and check bytes;
`cosign_key` reads cosign's encrypted key), `cosign` (the legacy payload and manifest), `bundle`
(DSSE, bundles, statements, the referrer manifest), `modelsig` (the model-signing statement),
`policy` (which signatures pass). Signing and verifying against a registry or the store is
orchestration: `mdl.ops.sign`, `mdl.ops.signatures`.
"""
