"""Input dicts for the older sequences (imperative, *_direct, *_python, imperative_input).

These predate perception: signs are unwrapped by position of their parentheses, a few sign
kinds become instructions (`{%{prompt_location}: ...}` ...), several items of one element are
joined into readable text ("4, 2, and 2"), and the keys differ per sequence family. Each
`InputStyle` below is one family's rules.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from normcode_core.engine.reference import Reference, cross_product, element_action
from normcode_core.engine.step import ConceptValue
from normcode_core.engine.tools import Toolbox
from normcode_core.engine.tools.perception import INSTRUCTION_PREFIX, instruction

_TYPED_SIGN = re.compile(r"^%\{(.+?)\}(.*?)\((.+)\)$", re.DOTALL)

Resolver = Literal["python", "direct", "strip", "strip_prompt_marker", "strip_prompt_content"]
Keys = Literal["python", "direct", "inputs", "prompt_marker", "user_input"]


@dataclass(frozen=True)
class InputStyle:
    resolver: Resolver
    keys: Keys
    selectors: bool = True  # `value_selectors` with `source_concept` are honoured
    all_values_without_order: bool = False  # no value_order: every value concept, in order
    by_name: bool = False  # values looked up by name (a repeated name gives its last value)


PYTHON = InputStyle("python", "python")
DIRECT = InputStyle("direct", "direct")
PLAIN = InputStyle("strip", "inputs", all_values_without_order=True)
JUDGEMENT = InputStyle("strip", "inputs", selectors=False, all_values_without_order=True, by_name=True)
JUDGEMENT_DIRECT = InputStyle("strip_prompt_marker", "prompt_marker", selectors=False, all_values_without_order=True, by_name=True)
USER_INPUT = InputStyle("strip_prompt_content", "user_input", selectors=False, all_values_without_order=True, by_name=True)


def _payload_literal(element: Any) -> Any:
    if isinstance(element, str) and element.startswith("%"):
        opening, closing = element.find("("), element.rfind(")")
        if opening > 0 and closing == len(element) - 1:
            content = element[opening + 1 : closing]
            try:
                return ast.literal_eval(content)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                return content
    return element


def _selector(selector: dict[str, Any]) -> Callable[[Any], Any]:
    index, key = selector.get("index"), selector.get("key")

    def select(element: Any) -> Any:
        value = _payload_literal(element)
        if index is not None and isinstance(value, list) and len(value) > index:
            value = value[index]
        if key is not None and isinstance(value, dict):
            value = value.get(key)
        return value

    return select


def _ordered(values: list[ConceptValue], interpretation: dict[str, Any], style: InputStyle) -> list[Reference]:
    available = [v for v in values if v.reference is not None]
    order = interpretation.get("value_order")
    if not order:
        return [v.reference for v in available] if style.all_values_without_order else []
    ordered_names = [name for name, _ in sorted(order.items(), key=lambda item: item[1])]
    if style.by_name:
        by_name = {v.name: v.reference for v in available}
        return [by_name[name] for name in ordered_names if name in by_name]
    selectors = interpretation.get("value_selectors") or {}
    used = [False] * len(available)
    chosen: list[Reference] = []
    for name in ordered_names:
        selector = selectors.get(name) if style.selectors else None
        wanted = selector["source_concept"] if selector and "source_concept" in selector else name
        for i, value in enumerate(available):
            if not used[i] and value.name == wanted:
                used[i] = True
                reference = value.reference
                if wanted != name:
                    reference = element_action(_selector(selector), [reference.copy()])
                chosen.append(reference)
                break
    return chosen


def _split_sign(item: str) -> tuple[str, str] | None:
    """(wrapper text between % and '(', payload) when the item looks like a sign."""
    opening, closing = item.find("("), item.rfind(")")
    if opening > 0 and closing == len(item) - 1:
        return item[1:opening], item[opening + 1 : closing]
    return None


def _resolve(item: Any, style: InputStyle, tools: Toolbox) -> Any:
    if not isinstance(item, str) or not item.startswith("%"):
        return item
    if style.resolver == "direct":
        return _resolve_direct(item, tools)
    parts = _split_sign(item)
    if parts is None:
        return item
    wrapper, content = parts
    if style.resolver == "python":
        if wrapper == "{memorized_parameter}":
            result = tools.file_system.read_memorized_value(content)
            return result.get("content") if result.get("status") == "success" else result.get("message")
        if wrapper in ("{script_location}", "{generated_script_path}"):
            return instruction("script_location", content)
        if wrapper in ("{prompt_location}", "{prompt_template}"):
            return instruction("prompt_location", content)
        return content
    if wrapper == "{prompt}" and style.resolver == "strip_prompt_marker":
        return "{%{prompt}: " + _read_text(content, tools) + "}"
    if wrapper == "{prompt}" and style.resolver == "strip_prompt_content":
        return _read_text(content, tools)
    return content


def _resolve_direct(item: str, tools: Toolbox) -> Any:
    if not item.startswith("%{"):
        return item
    match = _TYPED_SIGN.match(item)
    if not match:
        return item
    wrapper, _id, content = match.groups()
    if wrapper == "memorized_parameter":
        result = tools.file_system.read_memorized_value(content)
        return result.get("content") if result.get("status") == "success" else result.get("message")
    if wrapper == "prompt":
        return instruction("prompt_template", _read_text(content, tools, "Content"))
    if wrapper == "file_location":
        return _read_text(content, tools, "Content")
    if wrapper in ("script_location", "generated_script_path"):
        return instruction("script_location", content)
    if wrapper == "prompt_location":
        return instruction("prompt_location", content)
    return content


def _read_text(location: str, tools: Toolbox, what: str = "Prompt") -> str:
    result = tools.file_system.read(location)
    if result.get("status") == "success":
        return result["content"]
    return f"ERROR: {what} file not found at location: {tools.file_system.resolve_path(location)}"


def readable(items: list[Any]) -> str:
    """"a", "a, and b", "a, b, and c"."""
    if not items:
        return ""
    if len(items) == 1:
        return str(items[0])
    if len(items) == 2:
        return f"{items[0]}, and {items[1]}"
    return ", ".join(map(str, items[:-1])) + f", and {items[-1]}"


def _flatten(element: Any) -> list[Any]:
    flat: list[Any] = []

    def walk(item: Any) -> None:
        if isinstance(item, list):
            for sub in item:
                walk(sub)
        elif isinstance(item, dict):
            for sub in item.values():
                walk(sub)
        else:
            flat.append(item)

    walk(element)
    return flat


def _process(element: Any, style: InputStyle, tools: Toolbox) -> Any:
    resolved = [_resolve(item, style, tools) for item in _flatten(element)]
    if style.resolver in ("python", "direct") and any(
        isinstance(item, str) and item.startswith(INSTRUCTION_PREFIX) for item in resolved
    ):
        return resolved
    return readable(resolved)


_SPECIAL = {
    "python": ("prompt_location", "script_location"),
    "direct": ("prompt_template", "prompt_location", "script_location"),
}


def _to_dict(combination: list[Any], style: InputStyle) -> dict[str, Any]:
    if style.keys == "user_input":
        result: dict[str, Any] = {}
        if combination:
            result["prompt_text"] = str(combination[0])
            for number, value in enumerate(combination[1:], 1):
                result[f"context_{number}"] = value
        return result
    if style.keys == "inputs":
        return {f"input_{number}": value for number, value in enumerate(combination, 1)}
    result = {}
    inputs: list[Any] = []
    if style.keys == "prompt_marker":
        for value in combination:
            if isinstance(value, str) and value.startswith("{%{prompt}: ") and value.endswith("}"):
                result["prompt_template"] = value[len("{%{prompt}: ") : -1]
            else:
                inputs.append(value)
    else:
        spread: list[Any] = []
        for value in combination:
            if isinstance(value, list):
                spread.extend(value)
            else:
                spread.append(value)
        for value in spread:
            key = next(
                (k for k in _SPECIAL[style.keys] if isinstance(value, str) and value.startswith("{%{" + k + "}: ") and value.endswith("}")),
                None,
            )
            if key is None:
                inputs.append(value)
            else:
                result[key] = value[len("{%{" + key + "}: ") : -1]
    if style.keys == "direct" and len(inputs) == 1:
        result["input"] = inputs[0]
    else:
        for number, value in enumerate(inputs, 1):
            result[f"input_{number}"] = value
    return result


def build_legacy_inputs(
    values: list[ConceptValue], interpretation: dict[str, Any], style: InputStyle, tools: Toolbox
) -> Reference | None:
    ordered = _ordered(values, interpretation, style)
    if not ordered:
        return None
    processed = [element_action(lambda e: _process(e, style, tools), [reference]) for reference in ordered]
    return element_action(lambda combination: _to_dict(combination, style), [cross_product(processed)])
