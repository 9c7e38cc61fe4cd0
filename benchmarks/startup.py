"""Start-up time and idle memory of NormCode Server, beside a bare Starlette app under hypercorn.

Measures, for each of N fresh starts: the time from process start to the first 200 from /ready
(and from /health), then the resident memory (RSS) after idling a moment. Both servers are single
processes served by hypercorn.asyncio on 127.0.0.1, started the same way in the same run.

    .venv/bin/python benchmarks/startup.py [--repeat 3] [--env NAME=VALUE ...]

Targets: ready in under 1.5 s, idle RSS under 90 MB.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
READY_TARGET_S = 1.5
RSS_TARGET_MB = 90.0

BARE_APP = """
import asyncio
from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def ok(request):
    return JSONResponse({"ready": True})

app = Starlette(routes=[Route("/ready", ok), Route("/health", ok)])
config = Config()
config.bind = ["127.0.0.1:%d"]
config.accesslog = None
asyncio.run(serve(app, config))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def status_of(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used: a figure machine load barely changes."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(command: list[str], port: int, env: dict[str, str], timeout: float = 30.0) -> dict[str, float | str]:
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    health_s = ready_s = ready_cpu_s = float("nan")
    last_ready_status = None
    try:
        deadline = started + timeout
        while time.perf_counter() < deadline and process.poll() is None:
            if health_s != health_s and status_of(base + "/health") == 200:  # nan check
                health_s = time.perf_counter() - started
            last_ready_status = status_of(base + "/ready")
            if last_ready_status == 200:
                ready_s = time.perf_counter() - started
                ready_cpu_s = cpu_s(process.pid)
                break
            time.sleep(0.005)
        time.sleep(1.0)  # idle a moment so lazily started tasks have run
        rss = rss_mb(process.pid) if process.poll() is None else float("nan")
        note = "" if ready_s == ready_s else f"/ready never 200 (last status {last_ready_status})"
        if process.poll() is not None:
            note = f"exited with {process.returncode}: {process.stderr.read().decode()[-300:]}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return {"ready_s": ready_s, "health_s": health_s, "cpu_s": ready_cpu_s, "rss_mb": rss, "note": note}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for NormCode Server, e.g. NORMCODE_PLUGINS__DISABLED=provider_openai")
    args = parser.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.env)

    base_env = {k: v for k, v in os.environ.items() if not k.startswith("NORMCODE_") and k not in ("PORT", "LOG_LEVEL")}
    results: dict[str, list[dict[str, float | str]]] = {"normcode-server": [], "bare starlette": []}
    with tempfile.TemporaryDirectory(prefix="nc-bench-") as scratch:
        for attempt in range(args.repeat):
            # Alternate the two so machine load affects both alike.
            port = free_port()
            data_dir = Path(scratch) / f"data-{attempt}"
            env = dict(base_env, NORMCODE_DATA_DIR=str(data_dir), NORMCODE_ENV="production", NORMCODE_DEFAULT_AGENT="demo", **extra_env)
            command = [str(VENV_BIN / "normcode-server"), "serve", "--host", "127.0.0.1", "--port", str(port)]
            results["normcode-server"].append(measure(command, port, env))

            port = free_port()
            results["bare starlette"].append(measure([sys.executable, "-c", BARE_APP % port], port, base_env))

    print(f"start-up over {args.repeat} fresh starts each (medians): wall time to the first 200 from /health and")
    print("/ready, CPU seconds the process used until /ready answered 200, and RSS after idling 1 s")
    print(f"load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall times stretch with load)")
    print(f"{'server':<18}{'health s':>10}{'ready s':>10}{'cpu s':>10}{'RSS MB':>10}")
    for name, runs in results.items():
        health = statistics.median(float(r["health_s"]) for r in runs)
        ready = statistics.median(float(r["ready_s"]) for r in runs)
        cpu = statistics.median(float(r["cpu_s"]) for r in runs)
        rss = statistics.median(float(r["rss_mb"]) for r in runs)
        print(f"{name:<18}{health:>10.3f}{ready:>10.3f}{cpu:>10.3f}{rss:>10.1f}")
        for note in {str(r["note"]) for r in runs if r["note"]}:
            print(f"  note: {note}")
    ours = results["normcode-server"]
    ready = statistics.median(float(r["ready_s"]) for r in ours)
    rss = statistics.median(float(r["rss_mb"]) for r in ours)
    verdict_ready = "ok" if ready < READY_TARGET_S else "MISSED"
    verdict_rss = "ok" if rss < RSS_TARGET_MB else "MISSED"
    print(f"targets: ready < {READY_TARGET_S} s: {verdict_ready}; idle RSS < {RSS_TARGET_MB:.0f} MB: {verdict_rss}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
