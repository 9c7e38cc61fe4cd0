"""The native tools agent steps use (upstream's "body"): one Toolbox per step execution.

Paradigm affordances are bound to these objects by tool and affordance name
(normcode_core/engine/paradigms/bindings.py); nothing from a plan is exec'd in the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from normcode_core.engine.tools.files import FileSystemTool
from normcode_core.engine.tools.formatter import FormatterTool
from normcode_core.engine.tools.llm import LLMTool, Style
from normcode_core.engine.tools.perception import Perception
from normcode_core.engine.tools.prompt import PromptTool
from normcode_core.engine.tools.scripts import PythonInterpreterTool
from normcode_core.engine.tools.user_input import UserInputTool

if TYPE_CHECKING:
    from normcode_core.engine.step import StepContext


@dataclass
class Toolbox:
    llm: LLMTool
    prompt_tool: PromptTool
    file_system: FileSystemTool
    formatter_tool: FormatterTool
    perception_router: Perception
    python_interpreter: PythonInterpreterTool
    user_input: UserInputTool

    @property
    def base_dir(self) -> str:
        return self.file_system.base_dir


def build_toolbox(ctx: StepContext, *, llm_style: Style = "composition") -> Toolbox:
    files = FileSystemTool(ctx)
    prompts = PromptTool(files)
    perception = Perception(files, prompts)
    return Toolbox(
        llm=LLMTool(ctx.llm, llm_style),
        prompt_tool=prompts,
        file_system=files,
        formatter_tool=FormatterTool(perception),
        perception_router=perception,
        python_interpreter=PythonInterpreterTool(lambda: ctx.scripts, filename=f"<plan script, step {ctx.flow_index}>"),
        user_input=UserInputTool(ctx.ask),
    )


__all__ = ["Toolbox", "build_toolbox"]
