"""Web UI figures: JavaScript size (gzipped) and time to first screen against a local server.

    python benchmarks/ui.py [--runs 7]

Builds webui/dist when it is missing or stale, starts the real server on a free port with a
temporary data dir holding one deployed fixture plan, and loads pages in Debian's chromium with a
fresh browser context each time (a cold cache). Figures, each beside a baseline from the same run:
  * JavaScript gzipped: all chunks, and the part the first screen loads (entry + preloads); target < 500 KB
  * first screen: navigation start -> the plans list rendered with data from the API, median and
    worst of N cold loads, beside the same browser loading the server's bare /health JSON; target < 1 s
  * plan graph: navigation start -> the graph drawn (lazy chunk + layout), for information
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Browser, sync_playwright

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from normcode_core.plans.package import zip_directory  # noqa: E402
from tests.ui.browser import CHROMIUM_ARGS, BrowserSetupError, ensure_chromium, ensure_webui_built  # noqa: E402

TARGET_JS_KB = 500
TARGET_FIRST_SCREEN_MS = 1000
PLAN = "gold-investment-en"
FIXTURE_PLAN = (REPO_ROOT / ".." / "shared" / "fixtures" / "plans" / PLAN).resolve()


def gzipped_size(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=9))


def js_sizes(dist: Path) -> tuple[int, int]:
    """(all JS, JS the first screen loads: the scripts and modulepreloads index.html names), gzipped."""
    total = sum(gzipped_size(p) for p in (dist / "assets").glob("*.js"))
    html = (dist / "index.html").read_text(encoding="utf-8")
    initial = {m for m in re.findall(r'(?:src|href)="/?(assets/[^"]+\.js)"', html)}
    return total, sum(gzipped_size(dist / name) for name in initial)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(data_dir: Path, dist: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NORMCODE_")}
    environ |= {
        "NORMCODE_DATA_DIR": str(data_dir),
        "NORMCODE_DEFAULT_AGENT": "demo",
        "NORMCODE_SERVER__WEBUI_DIR": str(dist),
        "LOG_LEVEL": "WARNING",
    }
    command = [str(Path(sys.executable).parent / "normcode-server"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, env=environ, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"ui.py: the server exited with {process.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.terminate()
    raise SystemExit("ui.py: the server did not come up within 60 s")


def deploy_plan(url: str) -> None:
    buffer = io.BytesIO()
    zip_directory(FIXTURE_PLAN, buffer)
    response = httpx.post(url + "/api/plans/deploy-file", files={"plan": (f"{PLAN}.zip", buffer.getvalue())}, timeout=30)
    if response.status_code >= 300:
        raise SystemExit(f"ui.py: deploying {PLAN} failed: {response.status_code} {response.text[:300]}")


def time_to(browser: Browser, url: str, ready_js: str) -> float:
    """ms from navigation start until `ready_js` is true, in a fresh context (cold cache)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(url, wait_until="commit")
        return float(page.wait_for_function(f"() => ({ready_js}) && performance.now()", timeout=30_000).json_value())
    finally:
        context.close()


def measure(browser: Browser, url: str, ready_js: str, runs: int) -> list[float]:
    time_to(browser, url, ready_js)  # warm the server's own caches; the browser stays cold
    return [time_to(browser, url, ready_js) for _ in range(runs)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="cold page loads per figure (default 7)")
    args = parser.parse_args()
    try:
        dist = ensure_webui_built()
        chromium = ensure_chromium()
    except BrowserSetupError as exc:
        print(f"ui.py: {exc}", file=sys.stderr)
        return 2

    total_js, initial_js = js_sizes(dist)
    js_ok = total_js < TARGET_JS_KB * 1024
    print(
        f"JavaScript gzipped: {total_js / 1024:.1f} KB in all chunks, {initial_js / 1024:.1f} KB for the first screen "
        f"(lazy graph chunk {(total_js - initial_js) / 1024:.1f} KB); target < {TARGET_JS_KB} KB: {'OK' if js_ok else 'MISSED'}"
    )

    with tempfile.TemporaryDirectory(prefix="nc-ui-bench-") as tmp:
        process, url = start_server(Path(tmp) / "data", dist)
        try:
            deploy_plan(url)
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
                baseline = measure(browser, url + "/health", "document.body && document.body.innerText.includes('status')", args.runs)
                first = measure(browser, url + "/", "document.querySelector('[data-testid=plan-card]')", args.runs)
                graph = measure(browser, f"{url}/#/plans/{PLAN}", "document.querySelectorAll('.react-flow__node').length > 0", args.runs)
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=30)

    first_ok = statistics.median(first) < TARGET_FIRST_SCREEN_MS and max(first) < TARGET_FIRST_SCREEN_MS
    print(
        f"First screen (plans list with data, cold): median {statistics.median(first):.0f} ms, worst {max(first):.0f} ms "
        f"over {args.runs} loads; baseline bare /health page median {statistics.median(baseline):.0f} ms; "
        f"target < {TARGET_FIRST_SCREEN_MS} ms: {'OK' if first_ok else 'MISSED'}"
    )
    print(
        f"Plan graph drawn ({PLAN}, 20 steps, cold): median {statistics.median(graph):.0f} ms, worst {max(graph):.0f} ms"
    )
    return 0 if js_ok and first_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
