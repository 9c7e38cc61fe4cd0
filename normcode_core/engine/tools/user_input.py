"""Human input: every interaction becomes a question to the run (`ctx.ask`), which moves the
run to `waiting_input` until an answer arrives; no thread blocks. The answer text is the value,
unchanged (upstream returned its text the same way, e.g. "Default response")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

AskCall = Callable[[dict[str, Any]], Awaitable[str]]

# upstream interaction types -> the question kinds of StepContext.ask
_KINDS = {
    "simple_text": "text",
    "validated_text": "text",
    "confirm": "confirm",
    "text_editor": "edit",
    "multi_file_input": "files",
}


class UserInputTool:
    def __init__(self, ask: AskCall) -> None:
        self._ask = ask

    def create_interaction(self, **config: Any) -> Callable[..., Awaitable[str]]:
        """An async function taking keyword arguments; the prompt is under `prompt_key`."""
        prompt_key = config.get("prompt_key", "prompt_text")
        interaction_type = config.get("interaction_type", "simple_text")

        async def interact(**kwargs: Any) -> str:
            question: dict[str, Any] = {
                "prompt": _text(kwargs.get(prompt_key, "Enter input: ")),
                "kind": _KINDS.get(interaction_type, "text"),
            }
            if interaction_type == "text_editor":
                question["initial_text"] = _text(kwargs.get(config.get("initial_text_key", "initial_text"), ""))
            if interaction_type == "confirm" and config.get("default") is not None:
                question["default"] = bool(config["default"])
            return await self._ask(question)

        return interact

    def create_input_function(self, prompt_key: str = "prompt_text") -> Callable[..., Awaitable[str]]:
        return self.create_interaction(interaction_type="simple_text", prompt_key=prompt_key)

    def create_text_editor_function(
        self, prompt_key: str = "prompt_text", initial_text_key: str = "initial_text"
    ) -> Callable[..., Awaitable[str]]:
        return self.create_interaction(
            interaction_type="text_editor", prompt_key=prompt_key, initial_text_key=initial_text_key
        )

    def create_legacy_input_function(self, prompt_key: str = "prompt_text") -> Callable[..., Awaitable[str]]:
        """The older calling convention: one dict argument with the prompt and `context_*` entries."""

        async def ask_with_context(variables: dict[str, Any] | None = None) -> str:
            variables = variables or {}
            prompt = _text(variables.get(prompt_key, "Enter input: "))
            context = {k: v for k, v in variables.items() if str(k).startswith("context_")}
            if context:
                prompt = prompt + "\n" + "\n".join(f"{k}: {v}" for k, v in context.items())
            return await self._ask({"prompt": prompt, "kind": "text"})

        return ask_with_context


def _text(value: Any) -> str:
    return "" if value is None else str(value)
