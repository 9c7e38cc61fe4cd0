"""Compositions: a list of steps run in order over a context dict, as one async function.

Each step has `output_key`, `function` (a callable, or any other value used as the result),
`params` (`{param: context_key}`; `__positional__` passes the value positionally),
`literal_params` (constant keyword arguments) and an optional `condition`
(`{"key": context_key, "operator": "is_true" | "is_false"}`) that skips the step when false.
The function's input dict is `__initial_input__`; the result is `context[return_key]`, or the
last value written when no return key is given.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

INITIAL_INPUT = "__initial_input__"
POSITIONAL = "__positional__"


class CompositionError(Exception):
    pass


def _condition_holds(condition: dict[str, Any], context: dict[str, Any]) -> bool:
    key, operator = condition.get("key"), condition.get("operator")
    if key not in context:
        raise CompositionError(f"Condition failed: Key '{key}' not found in context.")
    if operator == "is_true":
        return bool(context[key])
    if operator == "is_false":
        return not bool(context[key])
    raise CompositionError(f"Unsupported operator in condition: {operator}")


def compose(plan: list[dict[str, Any]], return_key: str | None = None) -> Callable[[Any], Awaitable[Any]]:
    if not isinstance(plan, list):
        raise CompositionError("a composition plan must be a list of steps")

    async def composed(initial_input: Any) -> Any:
        if not isinstance(initial_input, dict):
            raise TypeError("The initial input for a plan-based composition must be a dictionary.")
        context: dict[str, Any] = {INITIAL_INPUT: initial_input}
        for position, step in enumerate(plan):
            output_key = step.get("output_key", f"step_{position}_result")
            if "condition" in step and not _condition_holds(step["condition"], context):
                continue
            function = step.get("function")
            if callable(function):
                args: list[Any] = []
                kwargs = dict(step.get("literal_params") or {})
                for name, context_key in (step.get("params") or {}).items():
                    if context_key not in context:
                        raise CompositionError(
                            f"Execution failed: Key '{context_key}' not found in context for step producing '{output_key}'."
                        )
                    if name == POSITIONAL:
                        args.append(context[context_key])
                    else:
                        kwargs[name] = context[context_key]
                result = function(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
            else:
                result = function
            context[output_key] = result
        if return_key:
            if return_key not in context:
                raise CompositionError(f"Specified return_key '{return_key}' not found in execution context.")
            return context[return_key]
        return next(reversed(context.values()), None)

    return composed
