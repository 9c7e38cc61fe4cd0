"""Script provisions: scripts a step generates may be missing at validation; script output is kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from normcode_core.engine import load_plan
from normcode_core.engine.execution import Execution
from normcode_core.engine.plan import PlanInvalid, validate_plan

from .helpers import concept, write_plan
from .test_legacy_and_failures import step


def _python_plan(root: Path, sequence: str, files: dict[str, str] | None = None) -> Path:
    plan = write_plan(
        root,
        [
            concept("{n}", is_ground_concept=True, reference_data=["%(7)"]),
            concept("{script}", is_ground_concept=True, reference_data=["%{script_location}(provisions/odd.py)"]),
            concept("<odd>", type="<>", is_final_concept=True),
            concept("::(is odd)", type="::({})", is_ground_concept=True, reference_data=["::(is odd)"]),
        ],
        [step("1", sequence, "<odd>", "::(is odd)", ["{n}", "{script}"], {"value_order": {"{n}": 1, "{script}": 2}, "condition": True})],
        files or {},
    )
    return plan.root


def test_a_script_the_step_generates_may_be_missing(tmp_path: Path) -> None:
    assert validate_plan(_python_plan(tmp_path / "gen", "judgement_python")) == []


def test_a_missing_script_that_is_only_read_is_still_rejected(tmp_path: Path) -> None:
    with pytest.raises(PlanInvalid):
        _python_plan(tmp_path / "read", "judgement_in_composition")
    problems = validate_plan(tmp_path / "read")
    assert any(p.entry == "{script}" and "provision file not found: provisions/odd.py" in p.message for p in problems), problems


async def test_script_output_goes_to_the_run_directory_log(tmp_path: Path) -> None:
    script = "import sys\nprint('hello from the script')\nprint('to stderr', file=sys.stderr)\nresult = int(input_1) % 2 == 1\n"
    root = _python_plan(tmp_path / "pkg", "judgement_python", {"provisions/odd.py": script})
    outcome = await Execution(load_plan(root), tmp_path / "run").run()
    assert outcome.status == "completed", outcome.error
    log = (tmp_path / "run" / "scripts.log").read_text()
    assert "hello from the script" in log and "to stderr" in log
