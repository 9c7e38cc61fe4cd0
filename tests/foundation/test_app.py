"""The app in-process (httpx against the ASGI app, lifespan included): plugins, errors, auth, UI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from normcode_core.app import create_app
from normcode_core.plugins import PluginLoadError
from normcode_core.settings import SettingsError, load_settings

ECHO_PROVIDER_PLUGIN = '''
from normcode_core.agents.types import LLMResponse
from normcode_core.hookspecs import hookimpl

__version__ = "2.5.0"


class EchoAgent:
    def __init__(self, config):
        self.config = config

    async def complete(self, request):
        return LLMResponse(text=request.messages[-1]["content"], model="echo")


class EchoProvider:
    name = "echo"

    def unavailable_reason(self, config):
        return None

    def create_agent(self, config):
        return EchoAgent(config)


@hookimpl
def agent_providers():
    return [EchoProvider()]
'''

CRASHING_ROUTE_PLUGIN = '''
from starlette.routing import Route
from normcode_core.hookspecs import hookimpl


async def crash(request):
    raise RuntimeError("boom: token sk-leakedsecret0123456789 at /srv/private")


@hookimpl
def extra_routes():
    return [Route("/api/crash", crash)]
'''


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@asynccontextmanager
async def serving(data_dir: Path, environ: dict[str, str] | None = None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(load_settings(data_dir, environ=environ or {}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


async def test_plugins_endpoint_lists_builtin_plugins_with_versions_and_hooks(data_dir: Path) -> None:
    async with serving(data_dir) as client:
        body = (await client.get("/api/plugins")).json()
    loaded = {plugin["name"]: plugin for plugin in body["loaded"]}
    assert {"storage_sql", "health_core"} <= set(loaded)
    assert loaded["storage_sql"]["source"] == "entry_point"
    assert loaded["storage_sql"]["hooks"] == ["storage_backend"]
    assert loaded["health_core"]["hooks"] == ["health_checks"]
    assert loaded["storage_sql"]["version"]


async def test_drop_in_plugin_adds_a_provider(data_dir: Path) -> None:
    write(data_dir / "plugins" / "echo_provider.py", ECHO_PROVIDER_PLUGIN)
    write(data_dir / "config" / "agents.yaml", "agents:\n  parrot:\n    provider: echo\n")
    async with serving(data_dir) as client:
        body = (await client.get("/api/plugins")).json()
        state = client.app.state  # type: ignore[attr-defined]
    drop_in = next(plugin for plugin in body["loaded"] if plugin["name"] == "echo_provider")
    assert drop_in == {
        "name": "echo_provider",
        "source": "drop_in",
        "module": "normcode_drop_in_echo_provider",
        "version": "2.5.0",
        "hooks": ["agent_providers"],
    }
    assert "echo" in body["providers"]
    assert "echo" in state.plugins.provider_names()


def test_agent_with_a_provider_nobody_serves_stops_start_up(data_dir: Path) -> None:
    path = write(data_dir / "config" / "agents.yaml", "agents:\n  parrot:\n    provider: echo\n")
    with pytest.raises(SettingsError, match=f"{path}: agents.parrot.provider: unknown provider 'echo'"):
        create_app(load_settings(data_dir, environ={}))


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("import not_a_module_anywhere\n", "ModuleNotFoundError: No module named 'not_a_module_anywhere'"),
        ("def broken(:\n", "SyntaxError"),
        ("raise RuntimeError('plugin refuses to load')\n", "RuntimeError: plugin refuses to load"),
        (
            "from normcode_core.hookspecs import hookimpl\n@hookimpl\ndef not_a_hook():\n    return 1\n",
            "PluginValidationError",
        ),
    ],
)
async def test_broken_plugin_is_reported_not_fatal(data_dir: Path, source: str, error: str) -> None:
    write(data_dir / "plugins" / "broken.py", source)
    async with serving(data_dir) as client:
        body = (await client.get("/api/plugins")).json()
        health = await client.get("/health")
    failure = next(item for item in body["failed"] if item["name"] == "broken")
    assert failure["source"] == "drop_in"
    assert error in failure["error"]
    assert "broken" not in {plugin["name"] for plugin in body["loaded"]}
    assert health.status_code == 200


async def test_plugins_can_be_disabled_by_name(data_dir: Path) -> None:
    write(data_dir / "plugins" / "echo_provider.py", ECHO_PROVIDER_PLUGIN)
    async with serving(data_dir, {"NORMCODE_PLUGINS__DISABLED": "echo_provider,health_core"}) as client:
        body = (await client.get("/api/plugins")).json()
        ready = (await client.get("/ready")).json()
    names = {plugin["name"] for plugin in body["loaded"]}
    assert "echo_provider" not in names and "health_core" not in names
    assert body["disabled"] == ["echo_provider", "health_core"]
    assert "data_dir_writable" not in ready["checks"]  # the disabled plugin's checks are gone too


def test_a_required_plugin_cannot_be_disabled(data_dir: Path) -> None:
    settings = load_settings(data_dir, environ={"NORMCODE_PLUGINS__DISABLED": "storage_sql"})
    with pytest.raises(PluginLoadError, match="required plugin 'storage_sql' cannot be disabled"):
        create_app(settings)


async def test_every_error_is_json_and_500s_leak_nothing(data_dir: Path) -> None:
    write(data_dir / "plugins" / "crashing.py", CRASHING_ROUTE_PLUGIN)
    async with serving(data_dir) as client:
        missing = await client.get("/api/nothing-here")
        wrong_method = await client.delete("/health")
        crash = await client.get("/api/crash")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "detail": "no route for GET /api/nothing-here"}
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "method_not_allowed"
    assert crash.status_code == 500
    assert crash.json() == {"error": "internal_error", "detail": "the server hit an unexpected error; see the server log"}
    assert "sk-leaked" not in crash.text and "/srv/private" not in crash.text


async def test_bearer_token_protects_the_api_only(data_dir: Path) -> None:
    token = "tok-0123456789abcdef"
    async with serving(data_dir, {"NORMCODE_SERVER__API_TOKEN": token}) as client:
        anonymous = await client.get("/api/config")
        wrong = await client.get("/api/config", headers={"Authorization": "Bearer nope"})
        with_header = await client.get("/api/config", headers={"Authorization": f"Bearer {token}"})
        with_query = await client.get(f"/api/plugins?token={token}")
        health = await client.get("/health")
        ready = await client.get("/ready")
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "unauthorized"
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert wrong.status_code == 401
    assert with_header.status_code == 200
    assert with_header.json()["settings"]["server"]["api_token"] == "***"
    assert token not in with_header.text
    assert with_query.status_code == 200
    assert health.status_code == 200 and ready.status_code in (200, 503)


async def test_request_id_is_echoed_or_generated(data_dir: Path) -> None:
    async with serving(data_dir) as client:
        given = await client.get("/health", headers={"X-Request-ID": "abc-123"})
        generated = await client.get("/health")
        hostile = await client.get("/health", headers={"X-Request-ID": "a b\tc"})
    assert given.headers["X-Request-ID"] == "abc-123"
    assert len(generated.headers["X-Request-ID"]) == 32
    assert hostile.headers["X-Request-ID"] != "a b\tc"


async def test_health_reports_the_docker_strategy_fields(data_dir: Path) -> None:
    async with serving(data_dir) as client:
        before = (await client.get("/health")).json()["plans_count"]
        client.app.state.storage.add_plan_version("nc-test-plan", "1", content_hash="h")  # type: ignore[attr-defined]
        body = (await client.get("/health")).json()
    assert body["status"] == "healthy"
    assert body["data_dir"] == str(data_dir)
    assert body["plans_count"] == before + 1
    assert body["active_runs"] == 0
    assert body["version"]
    for name in ("plans", "provisions", "runs", "config"):
        assert (data_dir / name).is_dir()  # the data dir layout is created on start


async def test_ready_lists_every_check_by_name(data_dir: Path) -> None:
    async with serving(data_dir, {"NORMCODE_DEFAULT_AGENT": "demo"}) as client:
        response = await client.get("/ready")
    body = response.json()
    assert set(body["checks"]) >= {
        "data_dir_exists", "data_dir_writable", "storage", "agents", "plan_registry", "execution_manager",
    }
    for name in ("data_dir_exists", "data_dir_writable", "storage", "plan_registry"):
        assert body["checks"][name]["ok"] is True, body
    assert (response.status_code == 200) == all(check["ok"] for check in body["checks"].values())


async def test_ready_names_agents_whose_key_is_missing(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    async with serving(data_dir, {"NORMCODE_DEFAULT_AGENT": "demo"}) as client:
        agents_check = (await client.get("/ready")).json()["checks"]["agents"]
    assert agents_check["ok"] is True  # demo is usable
    assert "gpt-4o" in agents_check["detail"] and "OPENAI_API_KEY" in agents_check["detail"]


async def test_web_ui_is_served_with_single_page_fallback(data_dir: Path, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    write(dist / "index.html", "<!doctype html><title>NormCode</title>")
    write(dist / "assets" / "app.js", "console.log('ui')")
    async with serving(data_dir, {"NORMCODE_SERVER__WEBUI_DIR": str(dist), "NORMCODE_SERVER__API_TOKEN": "tok-secret-1"}) as client:
        index = await client.get("/")
        asset = await client.get("/assets/app.js")
        deep_link = await client.get("/runs/some-run-id")
        api_missing = await client.get("/api/unknown", headers={"Authorization": "Bearer tok-secret-1"})
    assert index.status_code == 200 and "NormCode" in index.text
    assert asset.status_code == 200 and "console.log" in asset.text
    assert deep_link.status_code == 200 and "NormCode" in deep_link.text
    assert api_missing.status_code == 404 and api_missing.json()["error"] == "not_found"


async def test_no_web_ui_route_without_a_build(data_dir: Path, tmp_path: Path) -> None:
    async with serving(data_dir, {"NORMCODE_SERVER__WEBUI_DIR": str(tmp_path / "absent")}) as client:
        response = await client.get("/")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
