"""Small data helpers that paradigms compose: dict access, sign wrapping, reply parsing."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from string import Template
from typing import Any

from normcode_core.engine.tools.perception import Perception

_CODE_BLOCK = re.compile(r"```(?:python|py|json)?\n(.*?)\n```", re.DOTALL)
_USED_INPUT = re.compile(r"\$\{?(input_\d+)\}?")
_CONTENT_KEYS = ("content", "data", "text", "body")
_TRUE_WORDS = ("true", "yes", "1", "correct", "affirmative", "continue", "proceed")


def clean_code(raw: Any) -> str:
    """The first fenced code block of a reply (python/py/json or bare), else the stripped text."""
    if not isinstance(raw, str):
        return ""
    blocks = _CODE_BLOCK.findall(raw)
    return blocks[0].strip() if blocks else raw.strip()


def parse_reply(raw: Any) -> Any:
    """A reply parsed as JSON, else as a Python dict literal, else an error dict."""
    if not isinstance(raw, str) or not raw.strip():
        return {"error": "Invalid input: received empty or non-string response for parsing."}
    text = raw.replace("\\'", "'")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        value = ast.literal_eval(text)
        if isinstance(value, dict):
            return value
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    return {"raw_response": raw, "error": "Failed to parse response as JSON or Python dict"}


def reply_boolean(raw: Any) -> bool:
    """A yes/no reading of free text: true when it contains a yes-word, else false."""
    if not isinstance(raw, str):
        return raw if isinstance(raw, bool) else False
    text = raw.strip().lower()
    return any(word in text for word in _TRUE_WORDS)


class FormatterTool:
    def __init__(self, perception: Perception) -> None:
        self._perception = perception

    clean_code = staticmethod(clean_code)
    parse = staticmethod(parse_reply)

    @property
    def parse_boolean(self) -> Callable[[Any], bool]:
        return reply_boolean

    @staticmethod
    def get(dictionary: Any, key: Any, default: Any = None) -> Any:
        return dictionary.get(key, default)

    def wrap(self, data: Any, type: str | None = None) -> str:
        """A new sign holding `str(data)`; `type="literal"` means no norm."""
        return self._perception.encode(data, None if type == "literal" else type)

    def wrap_list(self, data_list: Any, type: str | None = None) -> Any:
        if not isinstance(data_list, (list, tuple)):
            return data_list
        return [self.wrap(item, type) for item in data_list]

    @staticmethod
    def collect_script_inputs(all_inputs: Any) -> dict[str, Any]:
        """The `input_N` entries, JSON text decoded (other text stays text)."""
        if not isinstance(all_inputs, dict):
            return {}
        collected: dict[str, Any] = {}
        for key, value in all_inputs.items():
            if not key.startswith("input_"):
                continue
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except (json.JSONDecodeError, ValueError, RecursionError):
                    pass
            collected[key] = value
        return collected

    @staticmethod
    def create_template_function(template: str) -> Callable[[dict[str, Any]], str]:
        def fill(variables: dict[str, Any]) -> str:
            return Template(template).safe_substitute(variables)

        return fill

    @staticmethod
    def create_substitute_function(template_key: str) -> Callable[[dict[str, Any]], str]:
        def fill(variables: dict[str, Any]) -> str:
            if template_key not in variables:
                raise ValueError(f"'{template_key}' not found in vars")
            rest = {k: v for k, v in variables.items() if k != template_key}
            return Template(str(variables[template_key])).safe_substitute(rest)

        return fill

    @staticmethod
    def create_smart_substitute_function(template_key: str, combine_to_key: str) -> Callable[[dict[str, Any]], str]:
        """Like `create_substitute_function`, and inputs the template does not use are bundled
        as `<file_N ...>` blocks under `combine_to_key`."""

        def fill(variables: dict[str, Any]) -> str:
            if template_key not in variables:
                raise ValueError(f"'{template_key}' not found in vars")
            template = str(variables[template_key])
            rest = {k: v for k, v in variables.items() if k != template_key}
            used = set(_USED_INPUT.findall(template))
            parts = []
            for number, key in enumerate(sorted(k for k in rest if k.startswith("input_") and k not in used), 1):
                parts.append(_file_block(number, rest[key]))
            if parts:
                rest[combine_to_key] = "\n\n".join(parts)
            else:
                rest.setdefault(combine_to_key, "")
            return Template(template).safe_substitute(rest)

        return fill


def _file_block(number: int, value: Any) -> str:
    tag = f"file_{number}"
    if not isinstance(value, dict):
        return f"<{tag}>\n{value}\n</{tag}>"
    content = None
    attributes = {}
    for key, item in value.items():
        if key in _CONTENT_KEYS:
            content = str(item)
        else:
            attributes[key] = str(item)
    attribute_text = "".join(f' {k}="{v}"' for k, v in attributes.items())
    if content is None:
        return f"<{tag}{attribute_text} />"
    return f"<{tag}{attribute_text}>\n{content}\n</{tag}>"
