"""LLM calls as plans make them: the exact messages, and the reply handling.

Every call is `[system, user]` with temperature 0 and goes through `ctx.llm` (recorded and
replayed by the runtime; no SDK here). Two request styles exist because upstream had two
clients and prompts were tuned against both:

* `composition` (paradigm steps): system "You are a helpful assistant."; when JSON output is
  requested and the prompt does not mention "json", "\\n\\nYour response must be valid JSON."
  is appended, and the JSON part of the reply is extracted.
* `legacy` (the older imperative/judgement sequences): same system message; the JSON suffix is
  "\\n\\nYour response must be in JSON format." and the reply is returned unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from normcode_core.agents.types import LLMRequest, LLMResponse

SYSTEM_MESSAGE = "You are a helpful assistant."
JSON_SUFFIX = {
    "composition": "\n\nYour response must be valid JSON.",
    "legacy": "\n\nYour response must be in JSON format.",
}
_FENCED_JSON = re.compile(r"```(?:json)?\s*\n?(.*?)\n?\s*```", re.DOTALL)

Style = Literal["composition", "legacy"]


def build_request(prompt: str, *, style: Style, json_output: bool = False, system: str = SYSTEM_MESSAGE) -> LLMRequest:
    text = str(prompt)
    if json_output and "json" not in text.lower():
        text += JSON_SUFFIX[style]
    return LLMRequest(
        messages=({"role": "system", "content": system}, {"role": "user", "content": text}),
        json_mode=json_output,
        temperature=0.0,
    )


def extract_json_text(text: str) -> str:
    """The JSON part of a reply: as is when it starts like JSON, else a fenced block, else the
    outermost {...} or [...] span, else the stripped text."""
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        return stripped
    fenced = _FENCED_JSON.search(stripped)
    if fenced:
        return fenced.group(1).strip()
    for opening, closing in (("{", "}"), ("[", "]")):
        start = stripped.find(opening)
        if start != -1:
            end = stripped.rfind(closing)
            if end > start:
                return stripped[start : end + 1]
    return stripped


class LLMTool:
    def __init__(self, call: Callable[[LLMRequest], Awaitable[LLMResponse]], style: Style = "composition") -> None:
        self._call = call
        self.style: Style = style

    async def generate(
        self,
        prompt: Any,
        system_message: str = SYSTEM_MESSAGE,
        response_format: dict[str, Any] | None = None,
        **_ignored: Any,
    ) -> str:
        json_output = bool(response_format and response_format.get("type") == "json_object")
        request = build_request(str(prompt), style=self.style, json_output=json_output, system=system_message)
        response = await self._call(request)
        text = response.text or ""
        if json_output and self.style == "composition":
            text = extract_json_text(text)
        return text
