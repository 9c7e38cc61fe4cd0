"""Plan scripts, run in the run's sandbox worker (never in the server process).

Two calling conventions, as upstream:

* function style: the script text is executed in fresh globals and `main(**params)` is called
  (`body=` added when `main` accepts it). A script that raises does not fail the step: the
  value becomes `{'status': 'error', 'message': str(exc)}`, which plans depend on.
* exec style (legacy): the text runs with the inputs as globals; the value is the global
  `result` (`{'status': 'warning', ...}` when it sets none, an error dict when it raises).

A script that cannot complete (timeout, memory limit, killed worker, SystemExit) raises
ScriptFailure, which fails the step and the run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from normcode_core.engine.sandbox import ScriptSandbox

NO_RESULT = {"status": "warning", "message": "No 'result' variable found in script."}


class PythonInterpreterTool:
    def __init__(self, sandbox_provider: Callable[[], ScriptSandbox], *, filename: str = "<script>") -> None:
        self._sandbox_provider = sandbox_provider
        self.filename = filename

    async def function_execute(self, script_code: Any, function_name: str, function_params: Any) -> Any:
        try:
            params = dict(function_params or {})
        except (TypeError, ValueError) as exc:
            return {"status": "error", "message": str(exc)}
        if not isinstance(script_code, str):
            return {"status": "error", "message": "exec() arg 1 must be a string, bytes or code object"}
        outcome = await self._sandbox_provider().call_function(
            script_code, {str(k): v for k, v in params.items()}, function_name=function_name, filename=self.filename
        )
        if outcome.raised:
            return {"status": "error", "message": outcome.message}
        return outcome.value

    def create_function_executor(self, script_code: Any, function_name: str) -> Callable[[Any], Awaitable[Any]]:
        async def execute_function(function_params: Any) -> Any:
            return await self.function_execute(script_code, function_name, function_params)

        return execute_function

    async def execute(self, script_code: Any, inputs: dict[str, Any]) -> Any:
        if not isinstance(script_code, str):
            return {"status": "error", "message": "exec() arg 1 must be a string, bytes or code object"}
        outcome = await self._sandbox_provider().exec_script(script_code, dict(inputs), filename=self.filename)
        if outcome.raised:
            return {"status": "error", "message": outcome.message}
        return outcome.value if outcome.has_result else dict(NO_RESULT)
