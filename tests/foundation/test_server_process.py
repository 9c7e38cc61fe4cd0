"""The real server process under hypercorn: env overrides, JSON logs, secrets, signals, readiness."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import VENV_BIN, ServerProcess, StartServer, clean_environ, free_port

OPENAI_SECRET = "sk-proj-NEVERSHOWN0123456789abcdef"
DASHSCOPE_SECRET = "ds-secret-value-9876543210"
API_TOKEN = "api-token-NEVERSHOWN-42"


def run_cli(*args: str, data_dir: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "normcode-server"), *args],
        env=clean_environ(NORMCODE_DATA_DIR=str(data_dir), **(env or {})),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_env_override_shows_in_api_config_without_touching_a_file(start_server: StartServer, data_dir: Path) -> None:
    server = start_server(data_dir, env={"NORMCODE_EXECUTION__MAX_CONCURRENT_RUNS": "4"})
    body = server.get("/api/config").json()
    assert body["settings"]["execution"]["max_concurrent_runs"] == 4
    assert body["sources"]["execution.max_concurrent_runs"] == "env NORMCODE_EXECUTION__MAX_CONCURRENT_RUNS"
    assert body["settings"]["execution"]["default_max_cycles"] == 100
    assert not (data_dir / "config" / "server.yaml").exists()
    assert server.stop() == 0


def test_every_stdout_line_is_json_in_production(start_server: StartServer, data_dir: Path) -> None:
    (data_dir / "plugins").mkdir()
    (data_dir / "plugins" / "noisy_broken.py").write_text("raise ImportError('this plugin is broken')\n")
    server = start_server(data_dir, env={"NORMCODE_ENV": "production", "LOG_LEVEL": "DEBUG"}, entry="hypercorn")
    for path in ("/health", "/ready", "/api/plugins", "/api/config", "/does-not-exist"):
        server.get(path, headers={"X-Request-ID": "req-" + path.strip("/").replace("/", "-")})
    assert server.stop() == 0

    records = []
    for line in server.stdout:
        record = json.loads(line)  # raises on any non-JSON line
        assert isinstance(record, dict), line
        assert {"timestamp", "level", "event", "logger"} <= set(record), line
        records.append(record)
    events = [record["event"] for record in records]
    assert "server_started" in events and "server_stopped" in events
    assert any(r["event"] == "plugin_failed" and r["plugin"] == "noisy_broken" for r in records)
    access = [record for record in records if record["logger"] == "normcode.access"]
    assert {record["path"] for record in access} >= {"/health", "/ready", "/api/plugins", "/does-not-exist"}
    assert {record["request_id"] for record in access} >= {"req-health", "req-does-not-exist"}
    assert all(record["level"] in ("debug", "info", "warning", "error", "critical") for record in records)
    assert any(record["logger"].startswith("hypercorn") for record in records)  # stdlib loggers routed too


def test_a_secret_from_the_environment_appears_in_no_log_and_no_response(start_server: StartServer, data_dir: Path) -> None:
    secrets = (OPENAI_SECRET, DASHSCOPE_SECRET, API_TOKEN)
    env = {
        "OPENAI_API_KEY": OPENAI_SECRET,
        "DASHSCOPE_API_KEY": DASHSCOPE_SECRET,
        "NORMCODE_SERVER__API_TOKEN": API_TOKEN,
        "LOG_LEVEL": "DEBUG",
    }
    server = start_server(data_dir, env=env)
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    bodies = [
        server.get(path, headers=auth).text
        for path in ("/health", "/ready", "/api/config", "/api/plugins", "/api/agents", "/api/nothing")
    ]
    bodies.append(server.get(f"/api/config?token={API_TOKEN}").text)  # the token in a URL is logged redacted
    bodies.append(server.get("/api/config", headers={"Authorization": f"Bearer {OPENAI_SECRET}"}).text)
    assert server.stop() == 0
    config = run_cli("config", data_dir=data_dir, env=env)
    check = run_cli("check", data_dir=data_dir, env=env)
    outputs = bodies + server.stdout + server.stderr + [config.stdout, config.stderr, check.stdout, check.stderr]
    for secret in secrets:
        leaks = [text for text in outputs if secret in text]
        assert leaks == [], f"{secret} leaked: {leaks[:3]}"
    assert any('"api_token": "***"' in body.replace(" ", "").replace('":"', '": "') for body in bodies) or any(
        "***" in body for body in bodies
    )
    assert "server.api_token = \"***\"" in config.stdout


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_gracefully_with_exit_code_0(start_server: StartServer, data_dir: Path, signum: int) -> None:
    server = start_server(data_dir)
    assert server.get("/health").status_code == 200
    server.process.send_signal(signum)
    assert server.process.wait(timeout=30) == 0
    server.stop()
    events = [json.loads(line)["event"] for line in server.stdout]
    assert events.index("server_stopping") < events.index("server_stopped")


@pytest.mark.parametrize(
    ("file_text", "expected"),
    [
        ("execution:\n  max_concurrent_runs: ten\n", "execution.max_concurrent_runs: expected an integer, got 'ten'"),
        ("server: [unclosed\n", "malformed YAML: line 2, column 1: expected ',' or ']'"),
    ],
)
def test_bad_settings_give_one_line_and_exit_code_2(data_dir: Path, file_text: str, expected: str) -> None:
    path = data_dir / "config" / "server.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(file_text)
    for command in (["serve", "--port", str(free_port())], ["check"], ["config"]):
        result = run_cli(*command, data_dir=data_dir)
        assert result.returncode == 2, (command, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (command, result.stderr)
        assert str(path) in lines[0] and expected in lines[0]


def test_bad_env_value_and_unknown_provider_give_one_line_and_exit_code_2(data_dir: Path) -> None:
    result = run_cli("serve", "--port", str(free_port()), data_dir=data_dir, env={"LOG_LEVEL": "chatty"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "normcode-server: invalid settings: env LOG_LEVEL: logging.level: must be one of "
        "DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'CHATTY'"
    )
    agents = data_dir / "config" / "agents.yaml"
    agents.parent.mkdir(parents=True)
    agents.write_text("agents:\n  typo:\n    provider: antropic\n")
    for command in (["serve", "--port", str(free_port())], ["check"]):
        result = run_cli(*command, data_dir=data_dir)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"{agents}: agents.typo.provider: unknown provider 'antropic'" in lines[0]


def test_check_reports_each_broken_plugin_on_one_line(data_dir: Path) -> None:
    plugins = data_dir / "plugins"
    plugins.mkdir()
    (plugins / "first_broken.py").write_text("import missing_dependency_xyz\n")
    (plugins / "second_broken.py").write_text("x = (\n")
    result = run_cli("check", data_dir=data_dir)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert "plugin 'first_broken' (drop_in) failed to load: ModuleNotFoundError" in lines[0]
    assert "plugin 'second_broken' (drop_in) failed to load: SyntaxError" in lines[1]

    shutil.rmtree(plugins)
    result = run_cli("check", data_dir=data_dir)
    assert result.returncode == 0 and result.stdout.startswith("ok: settings valid")


def test_config_prints_each_value_with_its_source(data_dir: Path) -> None:
    result = run_cli("config", data_dir=data_dir, env={"NORMCODE_EXECUTION__CHECKPOINT_FREQUENCY": "9"})
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert "execution.checkpoint_frequency = 9    # env NORMCODE_EXECUTION__CHECKPOINT_FREQUENCY" in lines
    assert any(line.startswith("execution.max_concurrent_runs = 10    # ") and "default-server.yaml" in line for line in lines)
    assert f"data_dir = \"{data_dir}\"    # env NORMCODE_DATA_DIR" in lines


# -- readiness against real failures --------------------------------------------------------------
@pytest.fixture
def small_mount(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of our own, so it can really be made read-only (chmod does not stop root)."""
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}), so a read-only data dir cannot be made")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def remount(mount_point: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount_point)], check=True)


def test_ready_is_503_while_the_data_dir_is_read_only(
    start_server: StartServer, small_mount: Path, tmp_path: Path
) -> None:
    data_dir = small_mount / "data"
    # The database lives elsewhere: a mount with files open for writing cannot be remounted read-only.
    database = f"sqlite:///{tmp_path / 'server.db'}"
    server = start_server(data_dir, env={"NORMCODE_DEFAULT_AGENT": "demo", "NORMCODE_STORAGE__URL": database})
    before = server.get("/ready").json()
    assert before["checks"]["data_dir_writable"]["ok"] is True

    remount(small_mount, "ro")
    try:
        response = server.get("/ready")
        health = server.get("/health")
    finally:
        remount(small_mount, "rw")
    body = response.json()
    assert response.status_code == 503
    assert body["ready"] is False
    assert body["checks"]["data_dir_writable"]["ok"] is False
    assert "Read-only file system" in body["checks"]["data_dir_writable"]["detail"]
    assert "data_dir_writable" in body["detail"]
    assert health.status_code == 200  # liveness stays up

    assert server.get("/ready").json()["checks"]["data_dir_writable"]["ok"] is True
    assert server.stop() == 0


def test_ready_is_503_while_the_database_is_unreachable(start_server: StartServer, data_dir: Path) -> None:
    closed_port = free_port()  # nothing listens there
    url = f"postgresql+psycopg://postgres:pw-NOTSHOWN@127.0.0.1:{closed_port}/test"
    server = start_server(data_dir, env={"NORMCODE_STORAGE__URL": url})
    response = server.get("/ready")
    health = server.get("/health")
    body = response.json()
    assert response.status_code == 503
    assert body["checks"]["storage"]["ok"] is False
    assert "postgresql unavailable" in body["checks"]["storage"]["detail"]
    assert body["checks"]["data_dir_writable"]["ok"] is True
    assert health.status_code == 200 and health.json()["status"] == "degraded"
    assert server.stop() == 0
    assert not [line for line in server.stdout + server.stderr if "pw-NOTSHOWN" in line]
    assert any('"storage_unavailable"' in line for line in server.stdout)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_ready_is_200_when_everything_works(
    start_server: StartServer, data_dir: Path, request: pytest.FixtureRequest, database: str
) -> None:
    env = {"NORMCODE_DEFAULT_AGENT": "demo"}
    if database == "postgresql":
        env["NORMCODE_STORAGE__URL"] = request.getfixturevalue("postgres_url")
    server = start_server(data_dir, env=env)
    server.wait_until_up("/ready", timeout=30)  # the run manager reconciles first
    response = server.get("/ready")
    body = response.json()
    assert response.status_code == 200, body
    assert body["ready"] is True
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["storage"]["detail"] == f"{database} reachable, schema current"
    assert server.get("/health").json()["status"] == "healthy"
    assert server.stop() == 0
