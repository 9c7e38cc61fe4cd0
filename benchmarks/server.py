"""Throughput of NormCode Server over HTTP: completed runs per second of the 3-step `demo` example
plan (idea-to-tagline) with 1, 10 and 50 concurrent clients, and the latency of GET /api/runs/{id}
beside a trivial Starlette endpoint served by the same hypercorn process in the same run.

The server is started fresh (`normcode-server serve`, SQLite, a temporary data dir). The trivial
endpoint comes from a drop-in plugin (`<data_dir>/plugins/bench_ping.py`, hook `extra_routes`),
so both endpoints share the app, the middleware and the event loop. Each client loops:
POST /api/runs, follow GET /api/runs/{id}/stream (SSE) until the server ends it, then GET
/api/runs/{id}; a run counts when it completed. Then, at each concurrency, the same number of
clients hammer GET /api/runs/{id} of a finished run, and the trivial endpoint, for a fixed time each.

    .venv/bin/python benchmarks/server.py [--seconds 10] [--clients 1,10,50] [--json]

Target: >= 50 completed runs/s with SQLite on 2 cores, and no error. The load generator runs on
the same machine and competes with the server for the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PLAN_ID = "idea-to-tagline"
TARGET_RUNS_PER_S = 50.0

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
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def start_server(data_dir: Path, port: int, env_overrides: dict[str, str]) -> subprocess.Popen:
    (data_dir / "plugins").mkdir(parents=True)
    (data_dir / "plugins" / "bench_ping.py").write_text(PING_PLUGIN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NORMCODE_")}
    env.update({"NORMCODE_DATA_DIR": str(data_dir), **env_overrides})
    return subprocess.Popen(
        [str(VENV_BIN / "normcode-server"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


async def wait_ready(client: httpx.AsyncClient, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {process.stderr.read() if process.stderr else ''}")
        try:
            if (await client.get("/ready")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("the server did not become ready")


async def run_client(client: httpx.AsyncClient, stop_at: float, tally: Tally) -> None:
    """Start a run, follow its event stream until the server ends it, then read the run once."""
    while time.monotonic() < stop_at:
        try:
            response = await client.post("/api/runs", json={"plan_id": PLAN_ID, "agent": "demo"})
            tally.requests += 1
            if response.status_code != 200:
                tally.errors.append(f"POST /api/runs {response.status_code}: {response.text[:200]}")
                continue
            run_id = response.json()["run_id"]
            last_event = ""
            async with client.stream("GET", f"/api/runs/{run_id}/stream") as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("event: "):
                        last_event = line[len("event: "):]
            tally.requests += 1
            started = time.perf_counter()
            response = await client.get(f"/api/runs/{run_id}")
            tally.latencies_ms.append((time.perf_counter() - started) * 1000)
            tally.requests += 1
            body = response.json()
            status = body.get("status") if response.status_code == 200 else response.status_code
            if status == "completed" and last_event == "run_completed":
                tally.completed += 1
            else:
                tally.errors.append(f"run {run_id}: status {status}, last event {last_event!r}: {body.get('error')}")
        except httpx.HTTPError as exc:
            tally.errors.append(f"{type(exc).__name__}: {exc}")


async def hammer(client: httpx.AsyncClient, path: str, stop_at: float, tally: Tally) -> None:
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        try:
            response = await client.get(path)
        except httpx.HTTPError as exc:
            tally.errors.append(f"{type(exc).__name__}: {exc}")
            continue
        tally.latencies_ms.append((time.perf_counter() - started) * 1000)
        tally.requests += 1
        if response.status_code != 200:
            tally.errors.append(f"GET {path} {response.status_code}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(base_url: str, clients: int, seconds: float, finished_run: str, server_pid: int) -> dict[str, object]:
    # Idle connections are dropped before the server's keep-alive timeout (5 s) could race a request.
    limits = httpx.Limits(max_connections=2 * clients + 5, max_keepalive_connections=2 * clients + 5, keepalive_expiry=2.0)
    runs, api_get, ping = Tally(), Tally(), Tally()
    short = min(seconds, 5.0)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        started, server_cpu, client_cpu = time.monotonic(), cpu_seconds(server_pid), time.process_time()
        await asyncio.gather(*(run_client(client, started + seconds, runs) for _ in range(clients)))
        elapsed = time.monotonic() - started
        server_cpu, client_cpu = cpu_seconds(server_pid) - server_cpu, time.process_time() - client_cpu
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        stop_at, get_cpu = time.monotonic() + short, cpu_seconds(server_pid)
        await asyncio.gather(*(hammer(client, f"/api/runs/{finished_run}", stop_at, api_get) for _ in range(clients)))
        get_cpu = cpu_seconds(server_pid) - get_cpu
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        stop_at, ping_cpu = time.monotonic() + short, cpu_seconds(server_pid)
        await asyncio.gather(*(hammer(client, "/bench/ping", stop_at, ping) for _ in range(clients)))
        ping_cpu = cpu_seconds(server_pid) - ping_cpu
    return {
        "clients": clients,
        "runs_completed": runs.completed,
        "runs_per_s": runs.completed / elapsed,
        "run_errors": len(runs.errors),
        "server_cpu_ms_per_run": server_cpu * 1000 / max(runs.completed, 1),
        "server_cpu_percent": 100 * server_cpu / elapsed,
        "client_cpu_percent": 100 * client_cpu / elapsed,
        "first_errors": runs.errors[:3],
        "get_after_run_p50_ms": percentile(runs.latencies_ms, 50),
        "get_after_run_p99_ms": percentile(runs.latencies_ms, 99),
        "get_run_p50_ms": percentile(api_get.latencies_ms, 50),
        "get_run_p99_ms": percentile(api_get.latencies_ms, 99),
        "get_run_per_s": api_get.requests / short,
        "ping_p50_ms": percentile(ping.latencies_ms, 50),
        "ping_p99_ms": percentile(ping.latencies_ms, 99),
        "ping_per_s": ping.requests / short,
        "hammer_errors": len(api_get.errors) + len(ping.errors),
        "server_cpu_ms_per_get_run": get_cpu * 1000 / max(api_get.requests, 1),
        "server_cpu_ms_per_ping": ping_cpu * 1000 / max(ping.requests, 1),
    }


async def main_async(args: argparse.Namespace) -> int:
    env = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory(prefix="normcode-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        port = free_port()
        process = start_server(data_dir, port, env)
        base_url = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
                await wait_ready(client, process)
                plans = (await client.get("/api/plans")).json()
                if PLAN_ID not in {p["id"] for p in plans}:
                    raise SystemExit(f"the example plan {PLAN_ID} was not deployed on start")
                warm = (await client.post("/api/runs", json={"plan_id": PLAN_ID, "agent": "demo"})).json()["run_id"]
                while (await client.get(f"/api/runs/{warm}")).json()["status"] not in ("completed", "failed"):
                    await asyncio.sleep(0.05)
            results = []
            for clients in [int(c) for c in args.clients.split(",")]:
                results.append(await measure(base_url, clients, args.seconds, warm, process.pid))
                if not args.json:
                    print_row(results[-1])
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
    print(f"\n{verdict}: best {best:.1f} completed runs/s (target >= {TARGET_RUNS_PER_S:.0f}), {errors} errors", file=sys.stderr)
    return 0 if verdict == "PASS" else 1


def print_row(r: dict[str, object]) -> None:
    if r["clients"] == 1 or not getattr(print_row, "header", False):
        print_row.header = True  # type: ignore[attr-defined]
        print(f"{'clients':>7} {'runs/s':>7} {'errors':>6} | {'GET run p50/p99 ms':>19} {'req/s':>7} |"
              f" {'ping p50/p99 ms':>16} {'req/s':>7} | {'GET run p50/p99 ms under run load':>34}")
    print(f"{r['clients']:>7} {r['runs_per_s']:>7.1f} {r['run_errors']:>6} |"
          f" {r['get_run_p50_ms']:>8.2f} / {r['get_run_p99_ms']:>7.2f} {r['get_run_per_s']:>7.0f} |"
          f" {r['ping_p50_ms']:>7.2f} / {r['ping_p99_ms']:>6.2f} {r['ping_per_s']:>7.0f} |"
          f" {r['get_after_run_p50_ms']:>15.2f} / {r['get_after_run_p99_ms']:>7.2f}")
    print(f"        server CPU {r['server_cpu_percent']:.0f}% ({r['server_cpu_ms_per_run']:.1f} ms per run),"
          f" load generator CPU {r['client_cpu_percent']:.0f}%; server CPU per GET run"
          f" {r['server_cpu_ms_per_get_run']:.2f} ms, per ping {r['server_cpu_ms_per_ping']:.2f} ms")
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
