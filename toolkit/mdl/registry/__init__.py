"""The remote store: a repository on an OCI registry as a copy source and target (docs/architecture.md).

`client.py` speaks HTTP (TLS, auth challenges, retries, redirects), `errors.py` maps unexpected answers
to errors, `auth.py` answers challenges, `credentials.py` finds and stores credentials as Docker does,
`repository.py` moves manifests and blobs, verifying what it sends, `blobstream.py` streams a pulled
blob, `referrers.py` keeps the referrers API and its fallback tag, and `open.py` opens a repository.
oras-py is not used: docs/notes.md §2 says why.

The package itself imports none of these: a command that never reaches a registry does not load
requests and its TLS stack. Import from the module (`mdl.registry.open.open_repository`, ...).
"""
