"""Loading and validation: every problem is reported with file, entry and field; zip packages."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from normcode_core.engine.plan import PlanInvalid, load_plan, validate_plan

from .conftest import FIXTURE_PLANS
from .plans import concept, copy_fixture, ground, inference, write_package

CLI = Path(sys.executable).parent / "normcode-server"


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURE_PLANS.iterdir()))
def test_every_fixture_plan_is_valid(name: str) -> None:
    assert validate_plan(FIXTURE_PLANS / name) == []


def test_null_flags_mean_false_and_only_once_defaults_true_for_loops(tmp_path: Path) -> None:
    plan = load_plan(copy_fixture("gold-investment-en", tmp_path / "gold"))
    assert plan.final_concepts() == [":<:({investment decision})"]  # 40 of 41 concepts say null
    loop = next(i for i in load_plan(copy_fixture("derivation-iter8", tmp_path / "d")).inferences if i.sequence == "looping")
    assert loop.start_without_value_only_once and loop.start_without_function_only_once
    assert loop.start_without_support_reference_only_once
    assert "workspace" not in loop.working_interpretation  # runtime leftovers dropped


def _broken_plan(root: Path) -> Path:
    concepts = [
        ground("{a}", ["%{script_location}(provisions/scripts/missing.py)"]),
        ground("{abs}", ["%{file_location}(/etc/passwd)"]),
        ground("{esc}", ["%{prompt_location}(../../outside.md)"]),
        concept("{b}"),
        concept("{c}"),
        concept("{d}", type="not-a-type"),
        ground("f", ["f"], type="::({})"),
    ]
    inferences = [
        inference("1", "assigning", "{b}", "f", ["{c}"], {"syntax": {"marker": "."}}),
        inference("1.1", "grouping", "{c}", "f", ["{b}"], {"syntax": {"marker": "in"}}, start_with_support_reference_only=True),
        inference("1.2", "teleporting", "{d}", "f", ["{nowhere}"]),
        inference("1.2", "assigning", "{d}", "{ghost}", ["{a}"]),
    ]
    return write_package(root, concepts, inferences)


def test_validation_lists_every_problem_with_its_location(tmp_path: Path) -> None:
    problems = validate_plan(_broken_plan(tmp_path / "broken"))
    text = [str(p) for p in problems]
    assert any(p.file == "concept_repo.json" and p.entry == "{a}" and "provision file not found" in p.message for p in problems), text
    assert any(p.entry == "{abs}" and "absolute path" in p.message for p in problems), text
    assert any(p.entry == "{esc}" and "escapes" in p.message for p in problems), text
    assert any(p.entry == "{d}" and p.field == "type" for p in problems), text
    assert any(p.entry == "1.2" and p.field == "inference_sequence" and "teleporting" in p.message for p in problems), text
    assert any(p.entry == "1.2" and p.field == "value_concepts" and "{nowhere}" in p.message for p in problems), text
    assert any(p.entry == "1.2" and p.field == "function_concept" and "{ghost}" in p.message for p in problems), text
    assert any(p.entry == "1.2" and "duplicate flow index" in p.message for p in problems), text
    with pytest.raises(PlanInvalid) as raised:
        load_plan(tmp_path / "broken")
    assert len(raised.value.problems) == len(problems)


def test_dependency_cycles_are_reported_unless_a_start_flag_breaks_them(tmp_path: Path) -> None:
    concepts = [concept("{x}"), concept("{y}"), ground("f", ["f"], type="::({})")]
    cyclic = [
        inference("1", "assigning", "{x}", "f", ["{y}"], {"syntax": {"marker": ".", "assign_source": "{y}"}}),
        inference("2", "assigning", "{y}", "f", ["{x}"], {"syntax": {"marker": ".", "assign_source": "{x}"}}),
    ]
    [problem] = validate_plan(write_package(tmp_path / "cyclic", concepts, cyclic))
    assert "dependency cycle: 1 -> 2 -> 1" in problem.message
    cyclic[0]["start_without_value"] = True
    assert validate_plan(write_package(tmp_path / "broken-by-flag", concepts, cyclic)) == []


def test_manifest_paths_must_stay_inside(tmp_path: Path) -> None:
    plan = copy_fixture("add-combination", tmp_path / "plan")
    manifest = json.loads((plan / "manifest.json").read_text())
    manifest["entry"]["concepts"] = "../elsewhere.json"
    manifest["provisions"] = {"paradigms": "/abs/dir"}
    (plan / "manifest.json").write_text(json.dumps(manifest))
    messages = [str(p) for p in validate_plan(plan)]
    assert any("manifest.json:entry:concepts: path escapes the package" in m for m in messages), messages
    assert any("manifest.json:provisions:paradigms: absolute path" in m for m in messages), messages


def test_zip_packages_load_and_unsafe_archives_are_refused(tmp_path: Path) -> None:
    source = copy_fixture("gold-investment-en", tmp_path / "gold")
    archive = tmp_path / "gold.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in source.rglob("*"):
            if path.is_file():
                zf.write(path, Path("gold") / path.relative_to(source))  # zipped with its folder
    plan = load_plan(archive)
    assert plan.name == "gold-investment-en" and len(plan.inferences) == 20
    extracted = plan.root
    del plan
    import gc

    gc.collect()
    assert not extracted.exists()  # the extraction is removed with the plan
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escape.txt", "x")
    [problem] = validate_plan(evil)
    assert "escapes" in problem.message
    (tmp_path / "notzip.zip").write_text("nope")
    assert "directory or a .zip" in str(validate_plan(tmp_path / "notzip.zip")[0])
    assert "no such file" in str(validate_plan(tmp_path / "absent")[0])


def test_cli_validate_prints_problems_and_exit_codes(tmp_path: Path) -> None:
    ok = subprocess.run([str(CLI), "plan", "validate", str(FIXTURE_PLANS / "gold-investment-en")], capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: gold-investment-en")
    bad = subprocess.run([str(CLI), "plan", "validate", str(_broken_plan(tmp_path / "b"))], capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert "inference_repo.json:1.2:inference_sequence: unknown sequence type 'teleporting'" in bad.stdout
    as_json = subprocess.run([str(CLI), "plan", "validate", "--json", str(tmp_path / "b")], capture_output=True, text=True, check=False)
    assert json.loads(as_json.stdout)["valid"] is False


def test_cli_run_exit_codes(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE_PLANS / "paradigm-exp-5.3-ask", tmp_path / "ask")
    waiting = subprocess.run([str(CLI), "plan", "run", str(tmp_path / "ask"), "--out", str(tmp_path / "o.json"), "--quiet"],
                             capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    assert waiting.returncode == 3, waiting.stderr
    assert "waiting for input" in waiting.stderr
    assert json.loads((tmp_path / "o.json").read_text())["status"] == "waiting_input"
    invalid = subprocess.run([str(CLI), "plan", "run", str(tmp_path / "absent")], capture_output=True, text=True, check=False)
    assert invalid.returncode == 2 and "invalid plan" in invalid.stderr
    answered = subprocess.run([str(CLI), "plan", "run", str(tmp_path / "ask"), "--input-answer", "yes"],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    assert answered.returncode == 0, answered.stderr
    result = json.loads(answered.stdout)
    assert result["status"] == "completed" and result["final_concepts"][0]["tensor"][0].endswith("(yes)")
    assert "[cycle 1] 1" in answered.stderr  # one progress line per step
