"""Fixtures shared by every test area: paths, free ports, clean environments, PostgreSQL schemas,
and the real server started as a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = (REPO_ROOT / ".." / "shared" / "fixtures").resolve()
VENV_BIN = Path(sys.executable).parent
POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

# Variables that change settings; tests start from an environment without them.
_SETTINGS_VARIABLES = ("PORT", "LOG_LEVEL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "DASHSCOPE_API_KEY")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_environ(**overrides: str) -> dict[str, str]:
    """os.environ without NORMCODE_* and the other settings variables, plus `overrides`."""
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("NORMCODE_") and name not in _SETTINGS_VARIABLES
    }
    environ.update(overrides)
    return environ


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


def postgres_listening() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose tables live in a fresh schema, dropped afterwards."""
    if not postgres_listening():
        pytest.skip("nothing listens on 127.0.0.1:5432, so the PostgreSQL variant cannot run")
    import sqlalchemy as sa

    schema = f"nc_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


class ServerProcess:
    """The real server in a subprocess on a free port, with its stdout and stderr collected by line."""

    def __init__(self, command: list[str], env: Mapping[str, str], port: int, cwd: Path = REPO_ROOT) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.process = subprocess.Popen(
            command,
            env=dict(env),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._readers = [
            threading.Thread(target=self._collect, args=(self.process.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._collect, args=(self.process.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _collect(stream: object, lines: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.append(line.rstrip("\n"))

    def wait_until_up(self, path: str = "/health", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._join_readers()
                raise AssertionError(
                    f"server exited with {self.process.returncode}\nstdout:\n"
                    + "\n".join(self.stdout[-40:])
                    + "\nstderr:\n"
                    + "\n".join(self.stderr[-40:])
                )
            try:
                if httpx.get(self.url + path, timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server did not answer {path} within {timeout}s; stderr: {self.stderr[-20:]}")

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **kwargs)  # type: ignore[arg-type]

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for exit, return the exit code (kill if it does not stop in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._join_readers()
        return self.process.returncode

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(timeout=5)


StartServer = Callable[..., ServerProcess]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """start_server(data_dir, env={...}, entry="cli"|"hypercorn") -> a running ServerProcess."""
    started: list[ServerProcess] = []

    def start(data_dir: Path, env: Mapping[str, str] | None = None, entry: str = "cli", wait: bool = True) -> ServerProcess:
        port = free_port()
        environ = clean_environ(NORMCODE_DATA_DIR=str(data_dir), **(env or {}))
        if entry == "hypercorn":
            command = [str(VENV_BIN / "hypercorn"), "normcode_core.app:app", "--bind", f"127.0.0.1:{port}"]
        else:
            command = [str(VENV_BIN / "normcode-server"), "serve", "--host", "127.0.0.1", "--port", str(port)]
        server = ServerProcess(command, environ, port)
        started.append(server)
        if wait:
            server.wait_until_up()
        return server

    yield start
    for server in started:
        server.stop()
