"""Spare script workers: interpreters started ahead of need.

Starting Python takes tens of milliseconds, which a run's first script call would otherwise wait
for. The server keeps `execution.spare_script_workers` workers booted and idle; a run takes one,
and a replacement boots when a run releases its worker (booting during the run would take CPU
from it). A spare serves exactly one run (runs never share a worker):
it learns that run's working directory, memory limit and log from its first frame (worker.py).
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

WORKER_PATH = Path(__file__).resolve().parent / "worker.py"

# How long a released worker may take to exit by itself before it is killed.
RETIRE_GRACE_S = 2.0

# Environment variables a script may see; everything else (API keys, tokens) stays in the server.
_ENV_ALLOWLIST = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SYSTEMROOT", "VIRTUAL_ENV")


def spawn(python: str = sys.executable) -> subprocess.Popen[bytes]:
    """Start a worker process; it waits for its setup frame before running anything."""
    env = {key: os.environ[key] for key in _ENV_ALLOWLIST if key in os.environ}
    env.update({"PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1"})
    process = subprocess.Popen(
        [python, str(WORKER_PATH), str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=None,  # ours until the setup frame points it at the run's log
        cwd="/",
        env=env,
        bufsize=0,
        close_fds=True,
        start_new_session=True,  # so a kill also ends whatever the script spawned
    )
    os.set_blocking(process.stdin.fileno(), False)
    os.set_blocking(process.stdout.fileno(), False)
    return process


class SpareWorkers:
    """Up to `size` booted, unused workers per interpreter path (size 0: none kept)."""

    def __init__(self, size: int = 0) -> None:
        self.size = size
        self._spares: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._retired: list[tuple[float, subprocess.Popen[bytes]]] = []
        self._lock = threading.Lock()

    def configure(self, size: int, python: str = sys.executable) -> None:
        """Keep `size` spares from now on (started now)."""
        self.size = max(0, int(size))
        self.fill(python)

    def take(self, python: str = sys.executable) -> subprocess.Popen[bytes]:
        """A worker for one run: a waiting spare when there is one, else a newly started one."""
        taken = None
        with self._lock:
            for entry in list(self._spares):
                entry_python, process = entry
                if process.poll() is not None:
                    self._spares.remove(entry)
                    _discard(process)
                elif entry_python == python and taken is None:
                    self._spares.remove(entry)
                    taken = process
        # No replacement yet: a booting interpreter would take CPU from the run that just started;
        # `retire` (the end of a run) starts it.
        return taken if taken is not None else spawn(python)

    def fill(self, python: str = sys.executable) -> None:
        self.reap()
        with self._lock:
            while sum(1 for p, _ in self._spares if p == python) < self.size:
                self._spares.append((python, spawn(python)))

    def retire(self, process: subprocess.Popen[bytes], python: str = sys.executable) -> None:
        """A run is done with its worker: end its input (an idle worker then exits), reap it later
        (the run does not wait for the process to go), and boot the spare for the next run."""
        _close_pipes(process)
        with self._lock:
            self._retired.append((time.monotonic() + RETIRE_GRACE_S, process))
        self.fill(python)

    def reap(self) -> None:
        """Collect retired workers that have exited; kill those past their grace period."""
        now = time.monotonic()
        with self._lock:
            retired, self._retired = self._retired, []
        for deadline, process in retired:
            if process.poll() is None and now > deadline:
                kill_group(process)
            if process.poll() is None:
                with self._lock:
                    self._retired.append((deadline, process))

    def close(self) -> None:
        with self._lock:
            spares, self._spares = self._spares, []
            retired, self._retired = self._retired, []
        for _, process in [*spares, *retired]:
            _discard(process)


def _close_pipes(process: subprocess.Popen[bytes]) -> None:
    for stream in (process.stdin, process.stdout):
        try:
            stream.close()  # end of input: an idle worker exits by itself
        except OSError:
            pass


def kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the worker leads its own session: its children too
    except (ProcessLookupError, PermissionError):
        try:
            process.kill()
        except ProcessLookupError:
            pass


def _discard(process: subprocess.Popen[bytes]) -> None:
    _close_pipes(process)
    try:
        process.wait(timeout=1)
    except subprocess.TimeoutExpired:
        kill_group(process)
        process.wait()


SPARES = SpareWorkers()
atexit.register(SPARES.close)
