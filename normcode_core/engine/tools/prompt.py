"""Prompt templates: `$name` placeholders filled with `string.Template.safe_substitute`.

Exact prompt text matters (plans were tuned against it): dict and list values are inserted as
JSON (non-ASCII kept), everything else through `str()`, and unknown placeholders stay as they are.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from string import Template
from typing import Any

from normcode_core.engine.tools.files import FileSystemTool

# Templates known by name when no file of that name exists (upstream offers the same two).
BUILTIN_TEMPLATES = {
    "translation": "Translate concept to natural name: ${output}",
    "instruction_with_buffer_record": "Use record '${record}' to act on imperative: ${impmerative}",
}


def template_values(variables: dict[str, Any]) -> dict[str, Any]:
    """Values as they appear in a prompt: containers as JSON text."""
    return {
        key: json.dumps(value, ensure_ascii=False, default=str) if isinstance(value, (dict, list)) else value
        for key, value in variables.items()
    }


def fill(template: str, variables: dict[str, Any]) -> str:
    """Plain substitution (values through `str()`), for the legacy generation helpers."""
    return Template(str(template)).safe_substitute(variables)


class PromptTool:
    def __init__(self, files: FileSystemTool) -> None:
        self._files = files

    def read(self, template_name: Any) -> Template:
        """The template stored at `template_name` (plan-relative), or a built-in one."""
        result = self._files.read(template_name) if isinstance(template_name, str) else None
        if result and result.get("status") == "success":
            return Template(result["content"])
        if template_name in BUILTIN_TEMPLATES:
            return Template(BUILTIN_TEMPLATES[template_name])
        raise FileNotFoundError(f"Template file '{template_name}' not found")

    def create_template_function(self, template: Template | str) -> Callable[..., str]:
        """A function filling `template` from one dict argument or from keyword arguments."""
        compiled = template if isinstance(template, Template) else Template(str(template))

        def fill_template(*args: Any, **kwargs: Any) -> str:
            if args:
                if len(args) != 1 or not isinstance(args[0], dict):
                    raise ValueError(f"template_fn expects a single dict as positional arg, got {len(args)} args")
                variables = args[0]
            else:
                variables = kwargs
            return str(compiled.safe_substitute(template_values(variables)))

        return fill_template
