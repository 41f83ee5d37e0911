"""The store's models as the runner's APIs list them: summaries, familiar names, which ones it serves."""

from __future__ import annotations

from ..timestamps import unix_time
from ..errors import MdlError
from ..reference import parse_reference
from ..spec import mediatypes as mt
from ..summary import summarize


def summaries(store) -> list:
    out = []
    for record in store.models():
        try:
            out.append(summarize(store, record.digest))
        except MdlError:
            continue  # a damaged model is not listed; `mdl verify` says what is wrong
    return out


def summary_of(store, name: str):
    return summarize(store, store.resolve(name))


def familiar(tag: str) -> str:
    """`docker.io/ai/tiny:latest` -> `ai/tiny:latest`, as Docker shows it; a digest stays as it is."""
    if tag.startswith("sha256:"):
        return tag
    try:
        return parse_reference(tag).familiar()
    except MdlError:
        return tag


def is_gguf(summary) -> bool:
    """Whether llama.cpp can serve the model: its format, or a layer's media type or file name, is GGUF."""
    if (summary.format or "").lower() == "gguf":
        return True
    for d in summary.manifest.layers:
        if d.media_type == mt.GGUF:
            return True
        path = next((v for k, v in (d.annotations or {}).items() if k in mt.FILEPATH_KEYS), "")
        if path.lower().endswith(".gguf"):
            return True
    return False


def docker_model(summary) -> dict:
    """A model as Docker's `GET /models` shows it."""
    config = summary.config.get("config") if isinstance(summary.config, dict) else None
    return {"id": summary.digest, "tags": [familiar(t) for t in summary.tags],
            "created": unix_time(summary.created), "config": config}
