"""The artifact conformance suite: the shipped cases lint clean and pass against the library; the lint
and the runner catch what they claim to (a case cannot pass for the wrong reason)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mdl.artifact_check import Finding
from mdl.conformance import artifacts as suite
from mdl.errors import MdlError
from mdl.spec import mediatypes as mt
from tests.conftest import assert_clean_error

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "conformance" / "artifacts"
D1, D2, D3 = ("sha256:" + c * 32 for c in ("1c", "2d", "3e"))


def test_the_shipped_suite_is_clean():
    assert [str(p) for p in suite.lint(SHIPPED)] == []


def test_every_shipped_test_passes_against_the_library():
    results = suite.run_suite(suite.load_suite(SHIPPED))
    assert len(results) >= 5
    failures = [f"{r.case.id}: {r.test.description}: {r.detail}" for r in results if not r.passed]
    assert failures == []


def test_the_suite_covers_both_formats_signatures_and_references():
    cases = suite.load_suite(SHIPPED)
    assert {c.format for c in cases} >= {"docker"}
    assert any(c.is_reference for c in cases)


# -- a tiny suite of our own, to break on purpose ------------------------------------------------


def manifest(layers=None, config_type=mt.DOCKER_CONFIG_V01) -> dict:
    return {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": config_type, "digest": D3, "size": 100},
            "layers": layers if layers is not None else [{"mediaType": mt.GGUF, "digest": D1, "size": 10}]}


def case(tests, **over) -> dict:
    out = {"description": "Manifest: layers are not empty",
           "spec": {"link": "spec/docker-format.md#31-manifest-rules", "quote": "`layers` MUST NOT be empty"},
           "mediaType": mt.OCI_MANIFEST, "tests": tests}
    return out | over


def write_suite(tmp_path: Path, *cases: dict, name: str = "cases.json") -> Path:
    d = tmp_path / "cases"
    d.mkdir(exist_ok=True)
    (d / name).write_text(json.dumps(list(cases)))
    return d


def run(tmp_path, *cases) -> list[suite.TestResult]:
    return suite.run_suite(suite.load_suite(write_suite(tmp_path, *cases)))


def test_an_invalid_test_passes_only_at_the_named_kind_and_path(tmp_path):
    empty = manifest(layers=[])
    right = {"description": "no layer", "document": empty, "valid": False, "error": {"kind": "schema", "path": "$.layers"}}
    wrong_path = right | {"description": "no layer, wrong path", "error": {"kind": "schema", "path": "$.config"}}
    wrong_kind = right | {"description": "no layer, wrong kind", "error": {"kind": "diff-ids", "path": "$.layers"}}
    accepted = right | {"description": "a valid one said invalid", "document": manifest()}
    results = run(tmp_path, case([right, wrong_path, wrong_kind, accepted]))
    assert [r.passed for r in results] == [True, False, False, False]
    assert "expected [schema] at $.config, got: [schema] $.layers" in results[1].detail
    assert "was accepted" in results[3].detail


def test_a_valid_test_fails_on_any_finding_and_on_a_wrong_normalization(tmp_path):
    said_valid = {"description": "empty said valid", "document": manifest(layers=[]), "valid": True}
    refs = {"description": "References: normalization",
            "spec": {"link": "spec/references.md#2-normalization", "quote": "gets the tag `latest`"},
            "target": "reference",
            "tests": [{"description": "bare", "document": "smollm2", "valid": True,
                       "normalized": "docker.io/library/smollm2:latest"}]}
    results = run(tmp_path, case([said_valid]), refs)
    assert [r.passed for r in results] == [False, False]
    assert "expected valid, got 1 finding(s)" in results[0].detail
    assert "normalized to 'docker.io/ai/smollm2:latest'" in results[1].detail


def test_companions_drive_the_cross_document_rules(tmp_path):
    config = {"config": {"format": "gguf"}, "rootfs": {"type": "rootfs", "diff_ids": [D2]}}
    c = {"description": "Config: diff IDs", "mediaType": mt.DOCKER_CONFIG_V01,
         "spec": {"link": "spec/docker-format.md#41-shape", "quote": "MUST equal `layers[i].digest`"},
         "tests": [{"description": "mismatch", "document": config, "companion": manifest(), "valid": False,
                    "error": {"kind": "diff-ids", "path": "$.rootfs.diff_ids"}},
                   {"description": "alone it is fine", "document": config, "valid": True}]}
    assert [r.passed for r in run(tmp_path, c)] == [True, True]


# -- lint ----------------------------------------------------------------------------------------


def lint(tmp_path, *cases, raw: str | None = None) -> list[str]:
    d = write_suite(tmp_path, *cases)
    if raw is not None:
        (d / "broken.json").write_text(raw)
    return [str(p) for p in suite.lint(d)]


def ok_test() -> dict:
    return {"description": "one layer", "document": manifest(), "valid": True}


def test_lint_accepts_a_clean_suite(tmp_path):
    assert lint(tmp_path, case([ok_test()])) == []


def test_lint_reports_a_file_that_is_not_json_with_its_line(tmp_path):
    problems = lint(tmp_path, case([ok_test()]), raw='[\n {"description": }\n]')
    assert len(problems) == 1 and problems[0].startswith("broken.json: $: not JSON (line 2")


@pytest.mark.parametrize("broken, where", [
    (lambda c: c.pop("spec"), "$[0]"),
    (lambda c: c["tests"][0].update(valid=False), "$[0].tests[0]"),  # invalid without error
    (lambda c: c.update(target="reference"), "$[0]"),  # both a mediaType and a target
    (lambda c: c.update(description="x" * 101), "$[0].description"),
])
def test_lint_applies_the_case_schema(tmp_path, broken, where):
    c = case([ok_test()])
    broken(c)
    problems = lint(tmp_path, c)
    assert problems and all(p.startswith(f"cases.json: {where}") for p in problems), problems


def test_lint_finds_repeated_descriptions(tmp_path):
    problems = lint(tmp_path, case([ok_test(), ok_test()]), case([ok_test()]))
    assert any("test description repeats" in p for p in problems)
    assert any("case description repeats one in cases.json" in p for p in problems)


@pytest.mark.parametrize("spec, problem", [
    ({"link": "spec/nowhere.md#1-x", "quote": "anything at all"}, "no such spec document"),
    ({"link": "spec/docker-format.md#99-nothing", "quote": "anything at all"}, "no heading with that anchor"),
    ({"link": "spec/docker-format.md#31-manifest-rules", "quote": "layers MAY be empty"}, "the quote is not in"),
    # the sentence exists, but in another section
    ({"link": "spec/docker-format.md#32-layer-media-types", "quote": "`layers` MUST NOT be empty"}, "the quote is not in"),
])
def test_lint_resolves_spec_links_and_quotes(tmp_path, spec, problem):
    problems = lint(tmp_path, case([ok_test()], spec=spec))
    assert len(problems) == 1 and problem in problems[0]


def test_lint_refuses_a_media_type_outside_the_table(tmp_path):
    problems = lint(tmp_path, case([ok_test()], mediaType="application/vnd.example.thing+json"))
    assert problems == ["cases.json: Manifest: layers are not empty: media type "
                        "'application/vnd.example.thing+json' is not in schemas/media-types.json"]


def test_loading_a_broken_suite_is_a_clean_error(tmp_path, mdl):
    d = write_suite(tmp_path, case([ok_test()]))
    (d / "x.json").write_text("{}")
    with pytest.raises(MdlError) as e:
        suite.load_suite(d)
    assert e.value.kind == "case-file" and "x.json" in e.value.message
    assert_clean_error(mdl("conformance", "artifacts", "--cases", str(d)), 1, "x.json", "not a case file")


def test_heading_anchors_follow_github():
    assert suite.heading_anchor("3.1 Manifest rules") == "31-manifest-rules"
    assert suite.heading_anchor("3.1 Mapping used by `mdl package --format cncf`") == \
        "31-mapping-used-by-mdl-package---format-cncf"


# -- classification of a real artifact's findings ---------------------------------------------------


def test_findings_map_to_the_case_whose_invalid_test_names_them(tmp_path):
    targeted = case([{"description": "bad layer type", "document": manifest([{"mediaType": "x/y", "digest": D1, "size": 1}]),
                      "valid": False, "error": {"kind": "schema", "path": "$.layers[0].mediaType"}}],
                    description="Manifest: layer types")
    other = case([ok_test()])
    cases = suite.load_suite(write_suite(tmp_path, targeted, other))
    found = [Finding("schema", "$.layers[3].mediaType", "bad"), Finding("blob-missing", "$.layers[1]", "gone")]
    verdicts, unmatched = suite.classify(found, mt.DOCKER_CONFIG_V01, cases)
    assert [(v.case.description, v.passed) for v in verdicts] == [("Manifest: layer types", False),
                                                                  ("Manifest: layers are not empty", True)]
    assert unmatched == [found[1]]
    # a config finding never matches a manifest case, whatever its path
    verdicts, unmatched = suite.classify([Finding("schema", "$.layers[0].mediaType", "x", "config")],
                                         mt.DOCKER_CONFIG_V01, cases)
    assert all(v.passed for v in verdicts) and len(unmatched) == 1


def test_cases_of_another_format_do_not_apply(tmp_path):
    cases = suite.load_suite(write_suite(tmp_path, case([ok_test()], format="modelpack")))
    assert suite.classify([], mt.DOCKER_CONFIG_V01, cases)[0] == []
    assert len(suite.classify([], mt.CNCF_CONFIG, cases)[0]) == 1


def test_the_wheel_layout_finds_the_suite(tmp_path):
    # In a checkout the suite is read from the top-level directory; shutil copies keep it loadable.
    copy = tmp_path / "copy"
    shutil.copytree(SHIPPED, copy)
    assert len(suite.load_suite(copy)) == len(suite.load_suite())


def test_written_cases_apply_only_with_the_written_findings(tmp_path):
    def invalid(kind: str) -> dict:
        return {"description": f"refused as {kind}", "document": manifest(), "valid": False,
                "error": {"kind": kind, "path": "$.layers[0].annotations"}}

    reader = case([ok_test(), invalid("schema")], description="Manifest: annotations read")
    written = case([ok_test(), invalid("layer-annotations"), invalid("schema")], description="Manifest: annotations "
                   "written", profile="written")
    cases = suite.load_suite(write_suite(tmp_path, reader, written))
    assert [v.case.profile for v in suite.classify([], mt.DOCKER_CONFIG_V01, cases)[0]] == ["reader"]
    extra = Finding("layer-annotations", "$.layers[2].annotations", "no title")
    verdicts, unmatched = suite.classify([], mt.DOCKER_CONFIG_V01, cases, written=[extra])
    assert [(v.case.profile, v.findings) for v in verdicts] == [("reader", []), ("written", [extra])]
    assert unmatched == []
    # a reader finding breaks the reader case only: the written report does not count it twice
    read = Finding("schema", "$.layers[1].annotations", "bad")
    verdicts, _ = suite.classify([read], mt.DOCKER_CONFIG_V01, cases, written=[])
    assert [(v.case.profile, v.findings) for v in verdicts] == [("reader", [read]), ("written", [])]
