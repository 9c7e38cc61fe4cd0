"""Native tools: file access limits, prompt filling and the exact LLM request text."""

from __future__ import annotations

from pathlib import Path
from string import Template

import pytest

from normcode_core.agents.types import LLMRequest, LLMResponse
from normcode_core.engine.step import PathOutsidePlan
from normcode_core.engine.tools import build_toolbox
from normcode_core.engine.tools.formatter import clean_code, parse_reply
from normcode_core.engine.tools.llm import build_request, extract_json_text
from normcode_core.engine.tools.prompt import PromptTool

from .helpers import single_step_plan, step_context


@pytest.fixture
def plan(tmp_path: Path):
    return single_step_plan(tmp_path / "pkg", files={"provisions/data/a.txt": "hello", "provisions/prompts/p.md": "Say $input_1"})


def test_reads_resolve_inside_the_package(plan) -> None:
    files = build_toolbox(step_context(plan)).file_system
    assert files.read("provisions/data/a.txt") == {"status": "success", "content": "hello"}
    assert files.read(f"{plan.root}/provisions/data/a.txt")["content"] == "hello"
    missing = files.read("provisions/data/none.txt")
    assert missing == {"status": "error", "message": f"File not found at {plan.root}/provisions/data/none.txt"}
    assert files.exists("provisions/data/a.txt") and not files.exists("provisions/data/none.txt")


@pytest.mark.parametrize("location", ["../outside.txt", "/etc/passwd", "provisions/../../x"])
def test_paths_outside_the_package_fail_the_step(plan, location: str) -> None:
    files = build_toolbox(step_context(plan)).file_system
    with pytest.raises(PathOutsidePlan):
        files.read(location)
    with pytest.raises(PathOutsidePlan):
        files.save("x", location)


def test_writes_go_to_the_workspace_and_report_the_given_base(plan, tmp_path: Path) -> None:
    workspace = tmp_path / "artifacts"
    workspace.mkdir()
    files = build_toolbox(step_context(plan, workspace=workspace, base_dir_for_paths="/reported/base")).file_system
    result = files.save({"k": "ü"}, "provisions/out/result.json")
    assert result == {"status": "success", "location": "/reported/base/provisions/out/result.json"}
    assert (workspace / "provisions/out/result.json").read_text() == '{\n  "k": "ü"\n}'
    assert not (plan.root / "provisions/out").exists()
    # the workspace copy now shadows the package for reads
    assert files.read("provisions/out/result.json")["status"] == "success"


def test_save_reports_errors_as_values(plan) -> None:
    files = build_toolbox(step_context(plan)).file_system
    assert files.save(None, "a.txt")["status"] == "error"
    assert files.save("text", None) == {
        "status": "error",
        "message": "expected str, bytes or os.PathLike object, not NoneType",
    }
    assert files.save(5, "a.txt") == {"status": "error", "message": "write() argument must be str, not int"}


def test_prompt_templates_fill_containers_as_json(plan) -> None:
    tools = build_toolbox(step_context(plan))
    template = tools.prompt_tool.read("provisions/prompts/p.md")
    fill = tools.prompt_tool.create_template_function(template)
    assert fill({"input_1": {"a": "é", "b": [1, None]}}) == 'Say {"a": "é", "b": [1, null]}'
    assert fill(input_1="plain", other=1) == "Say plain"
    assert PromptTool(tools.file_system).create_template_function(Template("$a $missing"))({"a": 1}) == "1 $missing"
    with pytest.raises(FileNotFoundError):
        tools.prompt_tool.read("provisions/prompts/none.md")


def test_llm_requests_match_upstream_text() -> None:
    plain = build_request("Tell me", style="composition")
    assert plain.messages == (
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Tell me"},
    )
    assert plain.temperature == 0.0 and not plain.json_mode
    assert build_request("Tell me", style="composition", json_output=True).messages[1]["content"] == (
        "Tell me\n\nYour response must be valid JSON."
    )
    assert build_request("Tell me", style="legacy", json_output=True).messages[1]["content"] == (
        "Tell me\n\nYour response must be in JSON format."
    )
    # a prompt that mentions JSON gets no suffix
    assert build_request("Answer in JSON", style="legacy", json_output=True).messages[1]["content"] == "Answer in JSON"


async def test_generate_goes_through_the_context(plan) -> None:
    seen: list[LLMRequest] = []

    async def llm(request: LLMRequest) -> LLMResponse:
        seen.append(request)
        return LLMResponse(text='Sure: ```json\n{"answer": 1}\n```', model="m")

    tools = build_toolbox(step_context(plan, llm=llm))
    assert await tools.llm.generate("p") == 'Sure: ```json\n{"answer": 1}\n```'
    assert await tools.llm.generate("p", response_format={"type": "json_object"}) == '{"answer": 1}'
    assert len(seen) == 2


def test_reply_parsing() -> None:
    assert extract_json_text('noise {"a": 1} tail') == '{"a": 1}'
    assert clean_code("```python\nx = 1\n```") == "x = 1"
    assert clean_code("  plain  ") == "plain"
    assert parse_reply('{"result": true}') == {"result": True}
    assert parse_reply("{'result': True}") == {"result": True}
    assert parse_reply("nope")["error"] == "Failed to parse response as JSON or Python dict"
    assert parse_reply("")["error"].startswith("Invalid input")


async def test_user_input_becomes_a_question(plan) -> None:
    questions: list[dict] = []

    async def ask(question: dict) -> str:
        questions.append(question)
        return "an answer"

    tools = build_toolbox(step_context(plan, ask=ask))
    confirm = tools.user_input.create_interaction(interaction_type="confirm", default=True)
    assert await confirm(prompt_text="Sure?") == "an answer"
    editor = tools.user_input.create_text_editor_function()
    assert await editor(prompt_text="Edit", initial_text="draft") == "an answer"
    legacy = tools.user_input.create_legacy_input_function()
    assert await legacy({"prompt_text": "Name?", "context_1": "c"}) == "an answer"
    assert questions == [
        {"prompt": "Sure?", "kind": "confirm", "default": True},
        {"prompt": "Edit", "kind": "edit", "initial_text": "draft"},
        {"prompt": "Name?\ncontext_1: c", "kind": "text"},
    ]
