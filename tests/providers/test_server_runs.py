"""Plans run through the real server with each provider's real SDK against the fake LLM server.

The gold-investment fixture plan has a scripted fake-LLM rule set per scenario; each provider's
agent uses a different one, so every run's results, call counts and token totals can be checked
exactly against the fixture and against what the fake server answered.
"""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx

from normcode_core.plans.package import zip_directory

from .conftest import KEYS
from .fake_servers import FIXTURES_DIR, Fault, FakeLLMServer, usage_of

GOLD = (FIXTURES_DIR / "plans" / "gold-investment-en").resolve()
ID_RE = re.compile(r"%(\{[^}]*\})?[0-9a-f]{3}\(")  # the fixtures' normalization: drop sign ids
FINISHED = {"completed", "failed", "cancelled"}

# agent -> (provider, model = fake-LLM rule set = expected.json scenario, base URL attribute, key variable)
AGENTS = {
    "via-openai": ("openai", "nc-fake-gold-bull-v1", "openai_url", "TEST_OPENAI_KEY"),
    "via-anthropic": ("anthropic", "nc-fake-gold-bear-v1", "url", "TEST_ANTHROPIC_KEY"),
    "via-dashscope": ("dashscope", "nc-fake-gold-neutral-v1", "openai_url", "TEST_DASHSCOPE_KEY"),
}


def _agents_yaml(fake: FakeLLMServer, extra_agents: str = "") -> str:
    lines = ["agents:"]
    for name, (provider, model, url_attr, key_env) in AGENTS.items():
        lines += [f"  {name}:", f"    provider: {provider}", f"    model: {model}",
                  f"    base_url: {getattr(fake, url_attr)}", f"    api_key_env: {key_env}",
                  "    max_concurrency: 2", "    retry_base_delay_s: 0.05"]
    lines += ["  keyless-by-mistake:", "    provider: openai", "    model: gpt-4o",
              "    api_key_env: TEST_UNSET_KEY", "  demo:", "    provider: mock"]
    return "\n".join(lines) + "\n" + extra_agents + "default_agent: demo\n"


def _normalize(value: Any) -> Any:
    if isinstance(value, str):
        return ID_RE.sub(lambda m: "%" + (m.group(1) or "") + "(", value)
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    if isinstance(value, dict):
        return {_normalize(k): _normalize(v) for k, v in value.items()}
    return value


def _scenario(rule: str) -> dict[str, Any]:
    expected = json.loads((GOLD / "expected.json").read_text(encoding="utf-8"))
    return next(s for s in expected["scenarios"] if s["id"] == rule)


def _deploy(http: httpx.Client, plan_dir: Path) -> str:
    archive = io.BytesIO()
    zip_directory(plan_dir, archive)
    response = http.post("/api/plans/deploy-file", files={"plan": ("plan.zip", archive.getvalue(), "application/zip")})
    assert response.status_code == 200, response.text
    return response.json()["plan_id"]


def _wait(http: httpx.Client, run_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = http.get(f"/api/runs/{run_id}").json()
        if run["status"] in FINISHED:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']} after {timeout}s"
        time.sleep(0.1)


def _check_run_against_fixture(http: httpx.Client, run: dict[str, Any], rule: str, fake: FakeLLMServer) -> None:
    scenario = _scenario(rule)
    assert run["status"] == "completed", run
    result = http.get(f"/api/runs/{run['run_id']}/result").json()
    got = {c["name"]: c for c in result["final_concepts"]}
    for want in scenario["final_concepts"]:
        concept = got[want["name"]]
        assert concept["axes"] == want["axes"] and list(concept["shape"]) == want["shape"]
        assert _normalize(concept["tensor"]) == want["tensor_normalized"]
    answered = [r for r in fake.posts() if r.body.get("model") == rule and r.fault is None]
    assert run["usage"]["llm_calls"] == scenario["llm_calls"] == len(answered)
    # Per-run token totals are exactly what the fake server reported for this run's requests.
    assert run["usage"]["input_tokens"] == sum(usage_of(r)[0] for r in answered)
    assert run["usage"]["output_tokens"] == sum(usage_of(r)[1] for r in answered)


def test_plans_run_through_each_provider_with_retries_and_usage_totals(fake_llm, data_dir, start_server):
    (data_dir / "config").mkdir()
    (data_dir / "config" / "agents.yaml").write_text(_agents_yaml(fake_llm), encoding="utf-8")
    # The first requests get a rate limit (with Retry-After) and a server error: runs still complete.
    fake_llm.inject(Fault(status=429, headers={"Retry-After": "1"}), Fault(status=500))
    server = start_server(data_dir, env=KEYS)

    with httpx.Client(base_url=server.url, timeout=30) as http:
        agents = {row["name"]: row for row in http.get("/api/agents").json()["agents"]}
        assert all(agents[name]["available"] for name in AGENTS)
        plan_id = _deploy(http, GOLD)

        missing = http.post("/api/runs", json={"plan_id": plan_id, "agent": "keyless-by-mistake"})
        assert missing.status_code == 422, missing.text
        assert "TEST_UNSET_KEY is not set" in missing.json()["detail"]

        runs = {}
        for name in AGENTS:
            response = http.post("/api/runs", json={"plan_id": plan_id, "agent": name})
            assert response.status_code in (200, 201, 202), response.text
            runs[name] = response.json()["run_id"]
        finished = {name: _wait(http, run_id) for name, run_id in runs.items()}

        for name, (provider, rule, _, key_env) in AGENTS.items():
            assert finished[name]["agent"] == name
            _check_run_against_fixture(http, finished[name], rule, fake_llm)
            sent = [r for r in fake_llm.posts() if r.body.get("model") == rule]
            expected_path = "/v1/messages" if provider == "anthropic" else "/v1/chat/completions"
            assert {r.path for r in sent} == {expected_path}
            for request in sent:
                auth = request.headers.get("x-api-key") or request.headers["authorization"].removeprefix("Bearer ")
                assert auth == KEYS[key_env]
                if provider == "anthropic":
                    assert all(m["role"] != "system" for m in request.body["messages"])

        faulted = [r for r in fake_llm.posts() if r.fault is not None]
        assert [r.fault.status for r in faulted] == [429, 500]
        assert len(fake_llm.posts()) == sum(_scenario(rule)["llm_calls"] for _, rule, _, _ in AGENTS.values()) + 2
        assert fake_llm.max_in_flight <= 2 * len(AGENTS)

    server.stop()
    logs = "\n".join(server.stdout + server.stderr)
    assert "llm_call_retry" in logs  # the retries were logged...
    assert all(key not in logs for key in KEYS.values())  # ...and no key was


def test_the_installed_example_provider_runs_a_plan_through_the_server(
    example_plugin_installed, fake_llm, data_dir, start_server
):
    example_agent = (f"  via-example:\n    provider: example-http\n    model: nc-fake-v1\n"
                     f"    base_url: {fake_llm.openai_url}\n    api_key_env: TEST_OPENAI_KEY\n")
    (data_dir / "config").mkdir()
    (data_dir / "config" / "agents.yaml").write_text(_agents_yaml(fake_llm, example_agent), encoding="utf-8")
    server = start_server(data_dir, env=KEYS)

    with httpx.Client(base_url=server.url, timeout=30) as http:
        plugins = {p["name"]: p for p in http.get("/api/plugins").json()["loaded"]}
        assert plugins["provider_example_http"]["version"] == "0.1.0"
        plan_id = _deploy(http, GOLD)
        run_id = http.post("/api/runs", json={"plan_id": plan_id, "agent": "via-example"}).json()["run_id"]
        run = _wait(http, run_id)
        _check_run_against_fixture(http, run, "nc-fake-v1", fake_llm)
    assert {r.headers["authorization"] for r in fake_llm.posts()} == {f"Bearer {KEYS['TEST_OPENAI_KEY']}"}


def test_a_demo_run_completes_without_any_model(data_dir, start_server, fake_llm):
    (data_dir / "config").mkdir()
    (data_dir / "config" / "agents.yaml").write_text(_agents_yaml(fake_llm), encoding="utf-8")
    server = start_server(data_dir, env=KEYS)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        plan_id = _deploy(http, GOLD)
        run = _wait(http, http.post("/api/runs", json={"plan_id": plan_id}).json()["run_id"])  # default: demo
        assert run["status"] == "completed", run
        assert run["agent"] == "demo" and run["usage"]["llm_calls"] == _scenario("nc-fake-v1")["llm_calls"]
        result = http.get(f"/api/runs/{run['run_id']}/result").json()
        assert "demo-answer-" in json.dumps(result["final_concepts"])
    assert fake_llm.posts() == []
