"""`mdl list`: the models in the local store, one row per tag, like `docker model ls`. A model pulled
partially (`mdl pull --include`) says so after its size."""

from __future__ import annotations

from ..reference import parse_reference
from ..summary import summarize
from .common import JSON_OPTION, ago, open_store, print_json, print_table, short_id


def command(json_output: bool = JSON_OPTION) -> None:
    """List the models in the local store."""
    store = open_store()
    records = store.models()
    summaries = [(summarize(store, m.digest), m.partial) for m in records]
    if json_output:
        print_json([s.as_dict() | {"config": None, "partial": partial} for s, partial in summaries])
        return
    rows = []
    for s, partial in summaries:
        size = (s.size or "") + (" (partial)" if partial else "")
        for name in [parse_reference(t).familiar() for t in s.tags] or ["<none>"]:
            rows.append([name, s.parameters or "", s.quantization or "", s.architecture or "",
                         short_id(s.digest), ago(s.created), size])
    print_table(["MODEL NAME", "PARAMETERS", "QUANTIZATION", "ARCHITECTURE", "MODEL ID", "CREATED", "SIZE"], rows)
