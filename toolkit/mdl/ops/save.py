"""`mdl save`: a model, with its signatures, written as an OCI layout directory or tar.

Both are a copy (`content.copy.copy_model`) from the store into a layout side (`layout.dir`,
`layout.tar`); saving into an existing directory adds to it when it is a layout and refuses anything
else. The layout's index names the model by every tag it has in the store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..content.copy import copy_model
from ..content.transfer import NoProgress, Progress
from ..errors import ReferenceFormatError
from ..layout.dir import LayoutDir
from ..layout.tar import TarTarget
from ..layout.common import is_tar_path
from ..model_check import refuse_partial
from ..reference import parse_reference
from ..signing.cosign import local_signature_names
from ..store import LayoutStore
from ..store.sides import StoreSource


@dataclass
class SaveResult:
    digest: str
    output: str
    format: str  # "dir" or "tar"
    names: list[str]  # the ref.name annotations written (empty: the model has no tag)
    blobs: int  # blobs in the layout for this model, manifest included
    size: int  # their bytes


def save_model(store: LayoutStore, reference: str, output: str | os.PathLike | BinaryIO, *, force: bool = False,
               progress: Progress | None = None, concurrency: int = 4) -> SaveResult:
    """Write the model `reference` names (tag, ID or digest) as an OCI layout: a directory, or a tar
    when `output` ends in .tar or is a writable binary stream. Its signatures travel with it
    (spec/signing.md). A model pulled partially is refused (it lacks layers)."""
    progress = progress if progress is not None else NoProgress()
    digest = store.resolve(reference)
    manifest = store.manifest(digest)
    refuse_partial(store, reference, digest, manifest, "to save it", roles=None)
    names = _names_for(store, reference, digest)
    blobs = {d.digest: d for d in manifest.blob_descriptors()}
    size = manifest.size + sum(d.size for d in blobs.values())
    signatures = [(store.manifest(d), name) for name, d in local_signature_names(store, digest)]
    source = StoreSource(store)
    stream = output if hasattr(output, "write") else None
    out = None if stream is not None else Path(output)  # type: ignore[arg-type]
    if out is None or is_tar_path(out):
        # one blob at a time: the tar's bytes are deterministic
        with TarTarget(out, force=force, stream=stream) as tar:  # type: ignore[arg-type]
            copy_model(source, tar, manifest, names, concurrency=1, progress=progress)
            for sig, name in signatures:
                copy_model(source, tar, sig, [name], concurrency=1)
            tar.close()
        return SaveResult(digest, str(out or "<stream>"), "tar", names, 1 + len(blobs), size)
    target = LayoutDir(out)
    target.create()
    copy_model(source, target, manifest, names, concurrency=concurrency, progress=progress)
    for sig, name in signatures:
        copy_model(source, target, sig, [name], concurrency=concurrency)
    return SaveResult(digest, str(out), "dir", names, 1 + len(blobs), size)


def _names_for(store: LayoutStore, reference: str, digest: str) -> list[str]:
    """Every tag of the model, the one `reference` names first (when it named a tag, not an ID)."""
    tags = store.tags_of(digest)
    try:
        given = str(parse_reference(reference))
    except ReferenceFormatError:
        given = None
    return sorted(tags, key=lambda t: t != given)
