"""The `dashscope` agent provider: Qwen models through DashScope's OpenAI-compatible endpoint."""

from __future__ import annotations

from typing import ClassVar

from normcode_core.hookspecs import hookimpl
from plugins.provider_openai import OpenAIProvider

DASHSCOPE_BASE_URL = "https://dashscope.aliyuncs.com/compatible-mode/v1"


class DashScopeProvider(OpenAIProvider):
    name: ClassVar[str] = "dashscope"
    key_env: ClassVar[str] = "DASHSCOPE_API_KEY"
    default_base_url: ClassVar[str | None] = DASHSCOPE_BASE_URL


@hookimpl
def agent_providers() -> list[OpenAIProvider]:
    return [DashScopeProvider()]
