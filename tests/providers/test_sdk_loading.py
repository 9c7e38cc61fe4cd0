"""Provider plugins load without importing their SDKs (seconds each); start-up warms the ones in use."""

from __future__ import annotations

import json
import subprocess
import sys

CHECK = """
import json, sys, threading, types
from normcode_core.agents import AgentConfig
from normcode_core.plugins import PluginManager

manager = PluginManager()
manager.load_entry_points()
loaded = {name: name in sys.modules for name in ("openai", "anthropic")}
settings = types.SimpleNamespace(agents={"c": AgentConfig(name="c", provider="anthropic", model="m")})
for impl in manager.hook.startup.get_hookimpls():
    impl.function(app_state=types.SimpleNamespace(settings=settings))
for thread in threading.enumerate():
    if thread.name.startswith("import-"):
        thread.join(timeout=60)
print(json.dumps({"after_load": loaded, "after_startup": {n: n in sys.modules for n in ("openai", "anthropic")}}))
"""


def test_sdks_are_imported_only_for_providers_in_use():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["after_load"] == {"openai": False, "anthropic": False}
    assert out["after_startup"] == {"openai": False, "anthropic": True}
