"""Perception: turning signs (`%{norm}id(payload)`) into the objects they denote, and back.

`perceive` reads what a sign points at: a `file_location` is read through the file tool, a
`prompt_location` becomes a `{%{prompt_template}: ...}` instruction for the next step, script
and save locations become similar instructions, and anything else is parsed as a Python
literal when it is one. `encode` makes new signs; ids come from the id source of the element
being computed (see `sign_ids`), so reruns give identical values.
"""

from __future__ import annotations

import ast
import contextvars
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from normcode_core.engine.signs import SignIds, parse_sign, strip_sign, wrap
from normcode_core.engine.step import PathOutsidePlan
from normcode_core.engine.tools.files import FileSystemTool
from normcode_core.engine.tools.prompt import PromptTool

# Instructions produced by perception, consumed when inputs are formatted into a dict.
SPECIAL_KEYS = {
    "prompt_template": "{%{prompt_template}: ",
    "prompt_location": "{%{prompt_location}: ",
    "script_location": "{%{script_location}: ",
    "save_path": "{%{save_path}: ",
    "save_dir": "{%{save_dir}: ",
}
INSTRUCTION_PREFIX = "{%{"
_PLAIN_INT = re.compile(r"[ \t]*-?(?:0|[1-9][0-9]*)\Z")

_current_ids: contextvars.ContextVar[Callable[[], str] | None] = contextvars.ContextVar("sign_ids", default=None)


@contextmanager
def sign_ids(ids: SignIds) -> Iterator[None]:
    """Use `ids` (sequentially) for every sign made in this block of this task."""
    token = _current_ids.set(ids.next)
    try:
        yield
    finally:
        _current_ids.reset(token)


def next_sign_id() -> str:
    source = _current_ids.get()
    if source is None:
        raise RuntimeError("a sign was made outside of an element computation (no id source)")
    return source()


def instruction(key: str, content: Any) -> str:
    return f"{{%{{{key}}}: {content}}}"


class Perception:
    def __init__(self, files: FileSystemTool, prompts: PromptTool) -> None:
        self._files = files
        self._prompts = prompts

    @staticmethod
    def encode(content: Any, norm: str | None = None) -> str:
        return wrap(content, next_sign_id(), norm)

    @staticmethod
    def strip_sign(token: Any) -> Any:
        return strip_sign(token)

    def perceive(self, token: Any, _body: Any = None) -> Any:
        sign = parse_sign(token)
        if sign is None:
            return token
        norm, content = sign.norm, sign.payload
        if norm == "file_location":
            result = self._files.read(content)
            if result.get("status") == "success":
                return result.get("content", "")
            return result.get("message", f"ERROR: Failed to read {content}")
        if norm == "prompt_location":
            try:
                return instruction("prompt_template", self._prompts.read(content).template)
            except (OSError, UnicodeError) as exc:  # upstream turns this into an error text value
                return f"ERROR: Failed to perceive prompt '{content}': {exc}"
        if norm == "prompt":
            # the payload is a template file when such a file exists, else the template itself
            try:
                is_file = self._files.exists(content)
            except PathOutsidePlan:
                is_file = False
            if is_file:
                result = self._files.read(content)
                content = result.get("content", content)
            return instruction("prompt_template", content)
        if norm == "memorized_parameter":
            result = self._files.read_memorized_value(content)
            return result.get("content") if result.get("status") == "success" else result.get("message")
        if norm in ("script_location", "generated_script_path"):
            return instruction("script_location", content)
        if norm == "save_path":
            return instruction("save_path", content)
        if norm == "save_dir":
            return instruction("save_dir", content)
        if isinstance(content, str) and _PLAIN_INT.match(content):
            return int(content)  # what literal_eval gives, without parsing an AST (the common case)
        try:
            return ast.literal_eval(content)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return content

    def transform(self, token: Any, selector: dict[str, Any]) -> Any:
        """A value selector's perception options: strip the sign, branch into variants, re-wrap."""
        current = strip_sign(token) if selector.get("strip_wrapper", False) else token
        branch = selector.get("branch")
        if branch and isinstance(branch, dict):
            raw = strip_sign(current)
            return {
                key: raw if norm == "NULL" else self.perceive(self.encode(raw, norm))
                for key, norm in branch.items()
            }
        new_wrapper = selector.get("new_wrapper")
        if new_wrapper and current is not None:
            return self.encode(strip_sign(current), new_wrapper)
        return current
