"""Native implementations of the tool affordances paradigms name.

A paradigm's `call_code` is never executed. It only says which implementation is meant:

* `result = tool.NAME` hands out the native tool function NAME (looked up by tool and NAME);
* any other form is a call, bound by tool and affordance name to the function below; constant
  keyword arguments written in the call (`interaction_type='multi_file_input'`) are read with
  `ast` (literals only) and passed along with the step's params.

An affordance with no native implementation is a clear error naming it.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from normcode_core.engine.paradigms.composition import compose
from normcode_core.engine.paradigms.loader import Affordance, ParadigmError
from normcode_core.engine.tools import Toolbox

Binding = Callable[[Toolbox, dict[str, Any]], Any]

_REFERENCE_FORM = re.compile(r"^\s*(?:import json\s*\n\s*)?result\s*=\s*(tool|json)\.(\w+)\s*$")


def _identity(value: Any) -> Any:
    return value


# `result = tool.NAME`: the tool function handed to the composition.
REFERENCES: dict[tuple[str, str], Binding] = {
    ("formatter_tool", "get"): lambda t, p: t.formatter_tool.get,
    ("formatter_tool", "wrap"): lambda t, p: t.formatter_tool.wrap,
    ("formatter_tool", "wrap_list"): lambda t, p: t.formatter_tool.wrap_list,
    ("formatter_tool", "parse"): lambda t, p: t.formatter_tool.parse,
    ("formatter_tool", "clean_code"): lambda t, p: t.formatter_tool.clean_code,
    ("formatter_tool", "collect_script_inputs"): lambda t, p: t.formatter_tool.collect_script_inputs,
    ("formatter_tool", "parse_boolean"): lambda t, p: t.formatter_tool.parse_boolean,
    ("formatter_tool", "create_template_function"): lambda t, p: t.formatter_tool.create_template_function,
    ("formatter_tool", "loads"): lambda t, p: json.loads,  # `import json; result = json.loads`
    ("file_system", "read"): lambda t, p: t.file_system.read,
    ("file_system", "exists"): lambda t, p: t.file_system.exists,
    ("file_system", "save"): lambda t, p: t.file_system.save,
    ("file_system", "write"): lambda t, p: t.file_system.write,
    ("file_system", "save_from_dict"): lambda t, p: t.file_system.save_from_dict,
    ("file_system", "resolve_path"): lambda t, p: t.file_system.resolve_path,
    ("prompt_tool", "read"): lambda t, p: t.prompt_tool.read,
    ("prompt_tool", "create_template_function"): lambda t, p: t.prompt_tool.create_template_function,
    ("llm", "generate"): lambda t, p: t.llm.generate,
    ("perception_router", "perceive"): lambda t, p: t.perception_router.perceive,
    ("perception_router", "strip_sign"): lambda t, p: t.perception_router.strip_sign,
    ("python_interpreter", "function_execute"): lambda t, p: t.python_interpreter.function_execute,
    ("python_interpreter", "execute"): lambda t, p: t.python_interpreter.execute,
}

# Any other call form, by tool and affordance name.
CALLS: dict[tuple[str, str], Binding] = {
    ("composition_tool", "compose"): lambda t, p: compose(p["plan"], p.get("return_key")),
    ("formatter_tool", "get_value"): lambda t, p: p["dictionary"].get(p["key"]),
    ("formatter_tool", "extract_content"): lambda t, p: p["data"]["content"],
    ("formatter_tool", "identity"): lambda t, p: _identity,
    ("formatter_tool", "create_template_function"): lambda t, p: t.formatter_tool.create_template_function(p["template"]),
    ("formatter_tool", "create_substitute_function"): lambda t, p: t.formatter_tool.create_substitute_function(
        template_key=p["template_key"]
    ),
    ("formatter_tool", "create_smart_substitute_function"): lambda t, p: t.formatter_tool.create_smart_substitute_function(
        template_key=p["template_key"], combine_to_key=p["combine_to_key"]
    ),
    ("file_system", "read"): lambda t, p: t.file_system.read(p["filepath"] if "filepath" in p else p["location"]),
    ("file_system", "read_now"): lambda t, p: t.file_system.read(p["path"]),
    ("prompt_tool", "read_now"): lambda t, p: t.prompt_tool.read(p["template_name"]),
    ("prompt_tool", "create_template_function"): lambda t, p: t.prompt_tool.create_template_function(template=p["template"]),
    ("perception_router", "perceive"): lambda t, p: t.perception_router.perceive(p["token"]),
    ("perception_router", "strip_sign"): lambda t, p: t.perception_router.strip_sign(p["token"]),
    ("python_interpreter", "create_function_executor"): lambda t, p: t.python_interpreter.create_function_executor(
        script_code=p["script_code"] if "script_code" in p else p["script"], function_name=p["function_name"]
    ),
    ("user_input", "create_input_function"): lambda t, p: t.user_input.create_input_function(
        prompt_key=p.get("prompt_key", "prompt_text")
    ),
    ("user_input", "create_interaction"): lambda t, p: t.user_input.create_interaction(**p),
    ("user_input", "create_text_editor_function"): lambda t, p: t.user_input.create_text_editor_function(
        prompt_key=p.get("prompt_key", "prompt_text"), initial_text_key=p.get("initial_text_key", "initial_text")
    ),
}


@lru_cache(maxsize=1024)
def _call_shape(call_code: str) -> tuple[str | None, tuple[tuple[str, Any], ...], bool]:
    """(referenced name or None, constant keyword arguments, whether it passes **params)."""
    match = _REFERENCE_FORM.match(call_code)
    if match:
        return match.group(2), (), False
    try:
        tree = ast.parse(call_code)
    except SyntaxError:
        return None, (), False
    literals: list[tuple[str, Any]] = []
    spreads_params = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg is None:
                    spreads_params = True
                elif isinstance(keyword.value, ast.Constant):
                    literals.append((keyword.arg, keyword.value.value))
    return None, tuple(literals), spreads_params


def bind(affordance: Affordance, toolbox: Toolbox, params: dict[str, Any]) -> Any:
    """Run one affordance natively with the step's resolved params."""
    referenced, literals, _ = _call_shape(affordance.call_code)
    if referenced is not None:
        binding = REFERENCES.get((affordance.tool, referenced))
        if binding is None:
            raise ParadigmError(
                f"affordance {affordance.qualified}: tool function {affordance.tool}.{referenced} is not supported"
            )
        return binding(toolbox, params)
    binding = CALLS.get((affordance.tool, affordance.name))
    if binding is None:
        raise ParadigmError(f"affordance {affordance.qualified} has no native implementation")
    try:
        return binding(toolbox, {**dict(literals), **params})
    except KeyError as exc:
        raise ParadigmError(f"affordance {affordance.qualified}: missing parameter {exc}") from exc
