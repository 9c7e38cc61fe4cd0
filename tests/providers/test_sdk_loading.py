"""Provider plugins load without importing their SDKs (seconds and megabytes each): an SDK is
imported only when an agent of that provider is created."""

from __future__ import annotations

import json
import subprocess
import sys

CHECK = """
import json, sys
from normcode_core.agents import AgentConfig
from normcode_core.plugins import PluginManager

def imported():
    return {name: name in sys.modules for name in ("openai", "anthropic")}

manager = PluginManager()
manager.load_entry_points()
after_load = imported()
providers = {p.name: p for group in manager.hook.agent_providers() for p in group}
providers["anthropic"].create_agent(AgentConfig(name="c", provider="anthropic", model="m", api_key_env="X"))
print(json.dumps({"after_load": after_load, "after_create": imported()}))
"""


def test_sdks_are_imported_only_when_an_agent_needs_them():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["after_load"] == {"openai": False, "anthropic": False}
    assert out["after_create"] == {"openai": False, "anthropic": True}
