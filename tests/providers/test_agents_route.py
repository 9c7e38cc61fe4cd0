"""GET /api/agents on the real app (in-process over ASGI, lifespan included)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from normcode_core.app import create_app
from normcode_core.settings import load_settings

from .conftest import KEYS

AGENTS_YAML = """
agents:
  demo:
    provider: mock
    description: Deterministic demo agent
  gpt:
    provider: openai
    model: gpt-4o-mini
    api_key_env: TEST_OPENAI_KEY
  claude:
    provider: anthropic
    model: claude-test
    api_key_env: TEST_ANTHROPIC_KEY
    max_concurrency: 3
default_agent: claude
"""


async def test_lists_every_agent_with_availability_reason_and_default(data_dir: Path, monkeypatch):
    monkeypatch.delenv("TEST_OPENAI_KEY", raising=False)
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", KEYS["TEST_ANTHROPIC_KEY"])
    (data_dir / "config").mkdir()
    (data_dir / "config" / "agents.yaml").write_text(AGENTS_YAML, encoding="utf-8")
    app = create_app(load_settings(data_dir, environ={}))

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get("/api/agents")
            models = await client.get("/api/models")

    assert response.status_code == 200
    body = response.json()
    assert body["default_agent"] == "claude"
    rows = {row["name"]: row for row in body["agents"]}
    assert {"demo", "gpt", "claude"} <= set(rows)
    assert rows["claude"] == {**rows["claude"], "provider": "anthropic", "model": "claude-test",
                              "available": True, "reason": None, "default": True, "max_concurrency": 3}
    assert rows["gpt"]["available"] is False and "TEST_OPENAI_KEY is not set" in rows["gpt"]["reason"]
    assert rows["demo"] == {**rows["demo"], "provider": "mock", "available": True, "default": False,
                            "description": "Deterministic demo agent"}
    assert KEYS["TEST_ANTHROPIC_KEY"] not in response.text

    upstream_shape = {row["id"]: row for row in models.json()}
    assert upstream_shape["demo"]["is_mock"] is True and upstream_shape["gpt"]["is_mock"] is False
    assert upstream_shape["gpt"]["available"] is False


@pytest.mark.parametrize("path", ["/api/agents", "/api/models"])
async def test_requires_the_api_token_when_one_is_set(data_dir: Path, path: str):
    app = create_app(load_settings(data_dir, environ={"NORMCODE_SERVER__API_TOKEN": "t0ken-for-tests"}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            denied = await client.get(path)
            allowed = await client.get(path, headers={"Authorization": "Bearer t0ken-for-tests"})
    assert denied.status_code == 401 and allowed.status_code == 200
