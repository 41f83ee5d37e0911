"""The `mdl audit --state` file: records kept as soon as they are put, a line cut short dropped, other
settings kept but not reused, another registry's or a foreign file refused, one audit at a time."""

from __future__ import annotations

import json

import pytest

from mdl.audit.model import Artifact
from mdl.audit.state import AuditState, StateFileError

READER = {"profile": "reader", "deep": False, "key": None}
DEEP = {"profile": "reader", "deep": True, "key": None}
D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


def model(repo: str, digest: str, **kw) -> Artifact:
    return Artifact(repo, digest, kind="docker-model", format="docker", size=10, checked=True, cases=3,
                    signature={"status": "unsigned", "keyed": False, "signatures": [], "error": None, "sources": []},
                    **kw)


def test_a_record_is_on_disk_when_put_returns_and_comes_back_whole(tmp_path):
    path = tmp_path / "audit.state"
    state = AuditState.open(path, "r.example", READER)
    finding = {"kind": "schema", "document": "config", "path": "$.x", "message": "bad", "cases": [
        {"id": "f/c", "spec": "spec/a.md#b", "profile": "reader"}]}
    art = model("a/b", D1, findings=[finding], tags=["v1"], from_state=False)
    state.put(art)
    lines = path.read_text().splitlines()  # written through, before close
    assert json.loads(lines[0]) == {"format": "mdl-audit-state", "version": 1, "registry": "r.example"}
    assert json.loads(lines[1])["record"]["digest"] == D1 and "tags" not in json.loads(lines[1])["record"]
    state.close()
    again = AuditState.open(path, "r.example", READER)
    got = again.get("a/b", D1)
    assert got.record() == art.record() and got.tags == [] and got.findings == [finding]
    assert again.get("a/b", D2) is None and again.get("a/c", D1) is None and len(again) == 1
    again.close()


def test_a_line_cut_short_by_a_crash_is_dropped_and_the_file_repaired(tmp_path):
    path = tmp_path / "s"
    state = AuditState.open(path, "r.example", READER)
    state.put(model("a", D1))
    state.close()
    with open(path, "a") as f:
        f.write('{"settings": {"profile": "reader"}, "record": {"repos')  # killed mid-write
    state = AuditState.open(path, "r.example", READER)
    assert state.get("a", D1) is not None and len(state) == 1
    state.put(model("a", D2))  # appended on a line of its own: the cut line was rewritten away
    state.close()
    assert all(json.loads(line) for line in path.read_text().splitlines())
    state = AuditState.open(path, "r.example", READER)
    assert state.get("a", D2) is not None
    state.close()


def test_a_later_record_replaces_an_earlier_one(tmp_path):
    path = tmp_path / "s"
    state = AuditState.open(path, "r.example", READER)
    art = model("a", D1)
    state.put(art)
    art.signature = dict(art.signature, status="signed", signatures=[D3])
    state.put(art)
    state.close()
    state = AuditState.open(path, "r.example", READER)
    assert state.get("a", D1).signature["status"] == "signed" and len(path.read_text().splitlines()) == 2
    state.close()


def test_records_of_other_settings_are_kept_but_not_reused(tmp_path):
    path = tmp_path / "s"
    state = AuditState.open(path, "r.example", READER)
    state.put(model("a", D1))
    state.close()
    deep = AuditState.open(path, "r.example", DEEP)
    assert deep.get("a", D1) is None and deep.other_settings == 1 and len(deep) == 0
    deep.put(model("a", D1, layers_hashed=True))
    deep.close()
    reader = AuditState.open(path, "r.example", READER)
    assert reader.get("a", D1).layers_hashed is False and reader.other_settings == 1
    reader.close()


def test_compact_drops_what_an_audited_repository_no_longer_has(tmp_path):
    path = tmp_path / "s"
    state = AuditState.open(path, "r.example", READER)
    for repo, digest in (("a", D1), ("a", D2), ("b", D3)):
        state.put(model(repo, digest))
    state.compact({"a"}, {("a", D1)})  # "a" audited whole and D2 was gone; "b" not audited this time
    state.put(model("a", D3))  # still appending after a compaction
    state.close()
    state = AuditState.open(path, "r.example", READER)
    assert [state.get("a", D1) is not None, state.get("a", D2) is None, state.get("b", D3) is not None,
            state.get("a", D3) is not None] == [True, True, True, True]
    state.close()


def test_another_registrys_state_or_a_foreign_file_is_refused(tmp_path):
    path = tmp_path / "s"
    AuditState.open(path, "r.example", READER).close()
    with pytest.raises(StateFileError, match="of an audit of r.example, not of other.example") as e:
        AuditState.open(path, "other.example", READER)
    assert e.value.exit_code == 2 and "--state" in e.value.hint
    foreign = tmp_path / "notes.txt"
    foreign.write_text("my notes\n")
    with pytest.raises(StateFileError, match="not an mdl audit state file"):
        AuditState.open(foreign, "r.example", READER)
    assert foreign.read_text() == "my notes\n"  # left alone


def test_two_audits_never_share_a_state_file(tmp_path):
    path = tmp_path / "s"
    first = AuditState.open(path, "r.example", READER)
    with pytest.raises(StateFileError, match="another audit is using it"):
        AuditState.open(path, "r.example", READER)
    first.close()
    AuditState.open(path, "r.example", READER).close()


def test_a_state_file_in_a_missing_directory_says_so(tmp_path):
    with pytest.raises(StateFileError, match="cannot create its lock"):
        AuditState.open(tmp_path / "nope" / "s", "r.example", READER)
