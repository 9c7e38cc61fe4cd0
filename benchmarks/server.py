"""Throughput of NormCode Server over HTTP: completed runs per second of the 3-step `demo` example
plan (idea-to-tagline) with 1, 10 and 50 concurrent clients, and the latency of GET /api/runs/{id}
beside a trivial Starlette endpoint served by the same hypercorn process in the same run.

The server is started fresh (`normcode-server serve`, default settings, SQLite, a temporary data
dir). The trivial endpoint comes from a drop-in plugin (`<data_dir>/plugins/bench_ping.py`, hook
`extra_routes`), so both endpoints share the app, its middleware and the event loop.

Each client, on its own keep-alive connection, loops: POST /api/runs, follow
GET /api/runs/{id}/stream (SSE) until the server ends it, then GET /api/runs/{id}; a run counts
when it completed. Then, at each concurrency, as many clients hammer GET /api/runs/{id} of a
finished run, and then the trivial endpoint, for a fixed time each. The load generator is a
minimal HTTP/1.1 client (not httpx) because it shares the machine's two cores with the server.

    .venv/bin/python benchmarks/server.py [--seconds 10] [--clients 1,10,50] [--env NAME=VALUE] [--json]

Target: >= 50 completed runs/s with SQLite on 2 cores, and no error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PLAN_ID = "idea-to-tagline"
TARGET_RUNS_PER_S = 50.0
RUN_BODY = json.dumps({"plan_id": PLAN_ID, "agent": "demo"}).encode()

PING_PLUGIN = '''
"""Benchmark-only drop-in plugin: a trivial endpoint to compare the API against."""
from starlette.responses import JSONResponse
from starlette.routing import Route

from normcode_core.hookspecs import hookimpl


async def ping(request):
    return JSONResponse({"ok": True})


@hookimpl
def extra_routes():
    return [Route("/bench/ping", ping, methods=["GET"])]
'''


class HttpError(Exception):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection: just enough for JSON requests and chunked SSE."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _send(self, method: str, path: str, body: bytes = b"") -> asyncio.StreamReader:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        assert self.reader is not None
        return self.reader

    async def _head(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
        status_line = await reader.readline()
        if not status_line:
            self.close()
            raise HttpError("the server closed the connection")
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), headers

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        reader = await self._send(method, path, body)
        status, headers = await self._head(reader)
        if headers.get("transfer-encoding") == "chunked":
            data = b"".join([chunk async for chunk in self._chunks(reader)])
        else:
            data = await reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, data

    async def stream_lines(self, path: str) -> AsyncIterator[str]:
        reader = await self._send("GET", path)
        status, headers = await self._head(reader)
        if status != 200 or headers.get("transfer-encoding") != "chunked":
            raise HttpError(f"GET {path}: {status}")
        pending = b""
        async for chunk in self._chunks(reader):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode("utf-8")

    @staticmethod
    async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                return
            chunk = await reader.readexactly(size)
            await reader.readline()
            yield chunk

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Tally:
    completed: int = 0
    errors: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    requests: int = 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(data_dir: Path, port: int, env_overrides: dict[str, str]) -> subprocess.Popen:
    (data_dir / "plugins").mkdir(parents=True)
    (data_dir / "plugins" / "bench_ping.py").write_text(PING_PLUGIN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NORMCODE_")}
    env.update({"NORMCODE_DATA_DIR": str(data_dir), **env_overrides})
    return subprocess.Popen(
        [str(VENV_BIN / "normcode-server"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


async def wait_ready(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {process.stderr.read() if process.stderr else ''}")
        connection = Connection(port)
        try:
            if (await connection.request("GET", "/ready"))[0] == 200:
                return
        except (OSError, HttpError):
            pass
        finally:
            connection.close()
        await asyncio.sleep(0.1)
    raise SystemExit("the server did not become ready")


async def run_client(port: int, stop_at: float, tally: Tally) -> None:
    """Start a run, follow its event stream until the server ends it, then read the run once."""
    connection = Connection(port)
    try:
        while time.monotonic() < stop_at:
            try:
                status, body = await connection.request("POST", "/api/runs", RUN_BODY)
                tally.requests += 1
                if status != 200:
                    tally.errors.append(f"POST /api/runs {status}: {body[:200]!r}")
                    continue
                run_id = json.loads(body)["run_id"]
                last_event = ""
                async for line in connection.stream_lines(f"/api/runs/{run_id}/stream"):
                    if line.startswith("event: "):
                        last_event = line[len("event: "):]
                tally.requests += 1
                started = time.perf_counter()
                status, body = await connection.request("GET", f"/api/runs/{run_id}")
                tally.latencies_ms.append((time.perf_counter() - started) * 1000)
                tally.requests += 1
                run = json.loads(body) if status == 200 else {}
                if run.get("status") == "completed" and last_event == "run_completed":
                    tally.completed += 1
                else:
                    tally.errors.append(f"run {run_id}: {run.get('status', status)}, last event {last_event!r}: {run.get('error')}")
            except (OSError, HttpError, ValueError, asyncio.IncompleteReadError) as exc:
                tally.errors.append(f"{type(exc).__name__}: {exc}")
                connection.close()
    finally:
        connection.close()


async def hammer(port: int, path: str, stop_at: float, tally: Tally) -> None:
    connection = Connection(port)
    try:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                status, _body = await connection.request("GET", path)
            except (OSError, HttpError, asyncio.IncompleteReadError) as exc:
                tally.errors.append(f"{type(exc).__name__}: {exc}")
                connection.close()
                continue
            tally.latencies_ms.append((time.perf_counter() - started) * 1000)
            tally.requests += 1
            if status != 200:
                tally.errors.append(f"GET {path} {status}")
    finally:
        connection.close()


async def measure(port: int, clients: int, seconds: float, finished_run: str, server_pid: int) -> dict[str, object]:
    runs, api_get, ping = Tally(), Tally(), Tally()
    started, server_cpu, client_cpu = time.monotonic(), cpu_seconds(server_pid), time.process_time()
    await asyncio.gather(*(run_client(port, started + seconds, runs) for _ in range(clients)))
    elapsed = time.monotonic() - started
    server_cpu, client_cpu = cpu_seconds(server_pid) - server_cpu, time.process_time() - client_cpu

    short = min(seconds, 5.0)
    stop_at, get_cpu = time.monotonic() + short, cpu_seconds(server_pid)
    await asyncio.gather(*(hammer(port, f"/api/runs/{finished_run}", stop_at, api_get) for _ in range(clients)))
    get_cpu = cpu_seconds(server_pid) - get_cpu
    stop_at, ping_cpu = time.monotonic() + short, cpu_seconds(server_pid)
    await asyncio.gather(*(hammer(port, "/bench/ping", stop_at, ping) for _ in range(clients)))
    ping_cpu = cpu_seconds(server_pid) - ping_cpu
    return {
        "clients": clients,
        "runs_completed": runs.completed,
        "runs_per_s": runs.completed / elapsed,
        "run_errors": len(runs.errors),
        "first_errors": runs.errors[:3] + api_get.errors[:2] + ping.errors[:2],
        "server_cpu_percent": 100 * server_cpu / elapsed,
        "server_cpu_ms_per_run": server_cpu * 1000 / max(runs.completed, 1),
        "load_generator_cpu_percent": 100 * client_cpu / elapsed,
        "get_run_after_run_p50_ms": percentile(runs.latencies_ms, 50),
        "get_run_after_run_p99_ms": percentile(runs.latencies_ms, 99),
        "get_run_p50_ms": percentile(api_get.latencies_ms, 50),
        "get_run_p99_ms": percentile(api_get.latencies_ms, 99),
        "get_run_per_s": api_get.requests / short,
        "server_cpu_ms_per_get_run": get_cpu * 1000 / max(api_get.requests, 1),
        "ping_p50_ms": percentile(ping.latencies_ms, 50),
        "ping_p99_ms": percentile(ping.latencies_ms, 99),
        "ping_per_s": ping.requests / short,
        "server_cpu_ms_per_ping": ping_cpu * 1000 / max(ping.requests, 1),
        "hammer_errors": len(api_get.errors) + len(ping.errors),
    }


async def finish_one_run(port: int) -> str:
    connection = Connection(port)
    try:
        _status, body = await connection.request("GET", "/api/plans")
        if PLAN_ID not in {plan["id"] for plan in json.loads(body)}:
            raise SystemExit(f"the example plan {PLAN_ID} was not deployed on start")
        run_id = json.loads((await connection.request("POST", "/api/runs", RUN_BODY))[1])["run_id"]
        while json.loads((await connection.request("GET", f"/api/runs/{run_id}"))[1])["status"] not in ("completed", "failed"):
            await asyncio.sleep(0.05)
        return run_id
    finally:
        connection.close()


async def main_async(args: argparse.Namespace) -> int:
    env = dict(item.split("=", 1) for item in args.env)
    results = []
    with tempfile.TemporaryDirectory(prefix="normcode-bench-") as tmp:
        port = free_port()
        process = start_server(Path(tmp) / "data", port, env)
        try:
            await wait_ready(port, process)
            finished_run = await finish_one_run(port)
            for clients in [int(c) for c in args.clients.split(",")]:
                results.append(await measure(port, clients, args.seconds, finished_run, process.pid))
                if not args.json:
                    print_row(results[-1], first=len(results) == 1)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    if args.json:
        print(json.dumps(results, indent=2))
    best = max(r["runs_per_s"] for r in results)
    errors = sum(r["run_errors"] + r["hammer_errors"] for r in results)
    verdict = "PASS" if best >= TARGET_RUNS_PER_S and errors == 0 else "FAIL"
    print(f"\n{verdict}: best {best:.1f} completed runs/s (target >= {TARGET_RUNS_PER_S:.0f}), {errors} errors",
          file=sys.stderr)
    return 0 if verdict == "PASS" else 1


def print_row(r: dict[str, object], first: bool) -> None:
    if first:
        print(f"{'clients':>7} {'runs/s':>7} {'errors':>6} | {'GET run p50/p99 ms':>19} {'req/s':>6} |"
              f" {'ping p50/p99 ms':>16} {'req/s':>6} | {'GET run during runs p50/p99':>28}")
    print(f"{r['clients']:>7} {r['runs_per_s']:>7.1f} {r['run_errors']:>6} |"
          f" {r['get_run_p50_ms']:>8.2f} / {r['get_run_p99_ms']:>7.2f} {r['get_run_per_s']:>6.0f} |"
          f" {r['ping_p50_ms']:>7.2f} / {r['ping_p99_ms']:>6.2f} {r['ping_per_s']:>6.0f} |"
          f" {r['get_run_after_run_p50_ms']:>17.2f} / {r['get_run_after_run_p99_ms']:>7.2f}")
    print(f"        server CPU {r['server_cpu_percent']:.0f}% ({r['server_cpu_ms_per_run']:.1f} ms per run; "
          f"{r['server_cpu_ms_per_get_run']:.2f} ms per GET run, {r['server_cpu_ms_per_ping']:.2f} ms per ping), "
          f"load generator CPU {r['load_generator_cpu_percent']:.0f}%")
    for error in r["first_errors"]:  # type: ignore[union-attr]
        print(f"        error: {error}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the run workload per level")
    parser.add_argument("--clients", default="1,10,50", help="comma-separated concurrency levels")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra server settings")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
