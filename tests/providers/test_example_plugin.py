"""examples/provider-plugin, installed with pip, is found through its entry point and used."""

from __future__ import annotations

import json
import subprocess
import sys

from .fake_servers import Fault, reply_for

# Runs in a fresh interpreter: the one running pytest started before the package was installed.
USE_THE_PLUGIN = """
import asyncio, json, sys
from types import SimpleNamespace
from normcode_core.agents import AgentConfig, AgentRegistry, LLMRequest
from normcode_core.plugins import PluginManager

manager = PluginManager()
manager.load_entry_points()
config = AgentConfig(name="local", provider="example-http", model="nc-fake-v1", base_url=sys.argv[1],
                     api_key_env="EXAMPLE_TEST_KEY", extra={"retry_base_delay_s": 0.05})
registry = AgentRegistry(SimpleNamespace(agents={"local": config}, default_agent="local"), manager)
response = asyncio.run(registry.get().complete(LLMRequest(messages=tuple(json.loads(sys.argv[2])))))
print(json.dumps({
    "plugins": [info.as_dict() for info in manager.loaded],
    "status": registry.status(),
    "text": response.text,
    "attempts": response.attempts,
    "tokens": [response.input_tokens, response.output_tokens],
}))
"""


def test_the_installed_example_provider_is_discovered_and_used(example_plugin_installed, fake_llm):
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "What is 2+2?"}]
    fake_llm.inject(Fault(status=503))  # the server's retries wrap third-party providers too

    result = subprocess.run(
        [sys.executable, "-c", USE_THE_PLUGIN, fake_llm.openai_url, json.dumps(messages)],
        capture_output=True, text=True, timeout=120, cwd="/",
        env={"PATH": "/usr/bin:/bin", "EXAMPLE_TEST_KEY": "sk-test-example-42"},
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])

    plugin = next(p for p in out["plugins"] if p["name"] == "provider_example_http")
    assert plugin == {**plugin, "source": "entry_point", "module": "normcode_provider_example",
                      "version": "0.1.0", "hooks": ["agent_providers"]}
    [row] = out["status"]
    assert row["provider"] == "example-http" and row["available"] is True
    assert out["text"] == reply_for("nc-fake-v1", messages)[0]
    assert out["attempts"] == 2 and all(t > 0 for t in out["tokens"])
    posts = fake_llm.posts()
    assert len(posts) == 2
    assert posts[-1].headers["authorization"] == "Bearer sk-test-example-42"
    assert posts[-1].body["messages"] == messages
