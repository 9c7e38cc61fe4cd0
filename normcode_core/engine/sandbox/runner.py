"""ScriptSandbox: the engine side of the long-lived script worker of one run.

One worker process per run, taken when the run starts (a booted spare, see spares.py, or a
new one) and reused for every later call (a fresh interpreter per step would dominate the
cost of script-heavy plans). Each call
still runs the script text in fresh globals, as upstream does.

Calls are pipelined: concurrent steps write their requests at once and the worker answers
them in order, so many script steps share a few process wake-ups. The worker runs one script
at a time; the timeout of a call counts from the moment the worker starts it. A call that
times out, hits the memory limit, kills the worker or escapes with SystemExit raises
`ScriptFailure`; the worker is replaced, and calls queued behind it (not started yet) are sent
to the new worker.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import os
import select
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import codec, spares

# A lone call polls the pipe this long before yielding to the event loop: most script calls
# take well under a millisecond, and an event-loop round trip costs more than that.
_SPIN_S = 0.002
# The first part of that polls without sleeping: being woken up by the kernel costs more than a
# small script call takes.
_BUSY_S = 0.0002

# Pipe reads stay below malloc's mmap threshold (128 KiB): a 1 MiB read buffer costs an
# mmap/mremap/munmap per read, which was most of a small call's round trip.
_READ_CHUNK = 64 * 1024


class ScriptFailure(Exception):
    """A script call that could not complete: timeout, memory limit, crash or exit."""

    def __init__(self, kind: str, message: str, details: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.details = details


@dataclass(frozen=True)
class ScriptOutcome:
    """The result of a call that completed; `raised` means the script raised an exception."""

    value: Any = None
    raised: bool = False
    error_type: str = ""
    message: str = ""
    traceback: str = ""
    has_result: bool = True  # exec style only: whether the script set the global `result`


@dataclass
class _Call:
    request: dict[str, Any]
    code: str
    code_id: str
    filename: str
    future: asyncio.Future[dict[str, Any]]
    started: float | None = None  # when the worker began it (it was at the head of the queue)


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    known_code: set[str] = field(default_factory=set)
    inflight: deque[_Call] = field(default_factory=deque)
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)
    writing: bool = False
    watchdog: asyncio.TimerHandle | None = None


class ScriptSandbox:
    def __init__(
        self,
        cwd: str | os.PathLike[str],
        *,
        timeout_s: float = 60.0,
        memory_mb: int = 1024,
        log_path: str | os.PathLike[str] | None = None,  # "-": this process's stderr
        python: str = sys.executable,
    ) -> None:
        self.cwd = Path(cwd)
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.log_path: Path | str | None = "-" if log_path == "-" else (Path(log_path) if log_path else None)
        self.python = python
        self.calls = 0
        self.workers_started = 0
        self._worker: _Worker | None = None
        self._ids = itertools.count(1)
        self._closed = False

    # -- public API ------------------------------------------------------------------------

    async def call_function(
        self,
        code: str,
        params: dict[str, Any],
        *,
        function_name: str = "main",
        filename: str = "<script>",
        offer_body: bool = True,
    ) -> ScriptOutcome:
        """Run `code` in fresh globals, then `function_name(**params)` (plus `body=` if accepted)."""
        request = {"op": "function", "function": function_name, "params": codec.encode(params), "body": offer_body}
        return await self._call(request, code, filename)

    async def exec_script(self, code: str, globals_: dict[str, Any], *, filename: str = "<script>") -> ScriptOutcome:
        """Run `code` with `globals_` as its globals; the value is the global `result` afterwards."""
        outcome = await self._call({"op": "exec", "globals": codec.encode(globals_)}, code, filename)
        if outcome.raised:
            return outcome
        value = outcome.value or {}
        return ScriptOutcome(value=value.get("result"), has_result=bool(value.get("has_result")))

    def start(self) -> None:
        """Start the worker now (its interpreter start-up then overlaps the run's first steps)."""
        if not self._closed:
            self._ensure_worker()

    async def worker_pid(self) -> int:
        """Start the worker if needed and return its process id (tests and diagnostics)."""
        return self._ensure_worker().process.pid

    async def aclose(self) -> None:
        """Release the worker without waiting for it: an idle one exits at the end of its input,
        a busy one is killed; either is reaped later (spares.py), off the run's path."""
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is None:
            return
        self._detach(worker)
        busy = False
        for call in worker.inflight:
            busy = True
            if not call.future.done():
                call.future.set_exception(ScriptFailure("closed", "the script sandbox of this run was closed"))
        if busy:
            spares.kill_group(worker.process)
        spares.SPARES.retire(worker.process, self.python)

    # -- calls -----------------------------------------------------------------------------

    async def _call(self, request: dict[str, Any], code: str, filename: str) -> ScriptOutcome:
        if self._closed:
            raise ScriptFailure("closed", "the script sandbox of this run is closed")
        call = _Call(
            request={**request, "id": next(self._ids), "filename": filename},
            code=code,
            code_id=_code_id(code),
            filename=filename,
            future=asyncio.get_running_loop().create_future(),
        )
        self.calls += 1
        worker = self._ensure_worker()
        self._send(worker, call)
        if len(worker.inflight) == 1:
            self._spin(worker)
        answer = await call.future
        return self._outcome(answer, filename)

    def _send(self, worker: _Worker, call: _Call) -> None:
        request = {**call.request, "code_id": call.code_id}
        if call.code_id not in worker.known_code:
            request["code"] = call.code
            worker.known_code.add(call.code_id)  # later frames may rely on it: frames run in order
        worker.inflight.append(call)
        if len(worker.inflight) == 1:
            call.started = time.monotonic()
            self._arm_watchdog(worker)
        worker.outbox += codec.pack(request)
        self._flush(worker)

    def _flush(self, worker: _Worker) -> None:
        fd = worker.process.stdin.fileno()
        try:
            while worker.outbox:
                written = os.write(fd, worker.outbox)
                del worker.outbox[:written]
        except BlockingIOError:
            if not worker.writing:
                worker.writing = True
                asyncio.get_running_loop().add_writer(fd, self._flush, worker)
            return
        except OSError:
            self._worker_died(worker)
            return
        if worker.writing:
            worker.writing = False
            asyncio.get_running_loop().remove_writer(fd)

    def _spin(self, worker: _Worker) -> None:
        """Poll briefly for the answer of a lone call without yielding to the event loop."""
        fd = worker.process.stdout.fileno()
        deadline = time.monotonic() + _SPIN_S
        busy_until = time.monotonic() + _BUSY_S
        while worker is self._worker and worker.inflight and not worker.outbox:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                return
            ready, _, _ = select.select([fd], [], [], 0 if now < busy_until else remaining)
            if ready:
                self._readable(worker)

    def _readable(self, worker: _Worker) -> None:
        try:
            chunk = os.read(worker.process.stdout.fileno(), _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._worker_died(worker)
            return
        worker.inbox += chunk
        while len(worker.inbox) >= 4:
            size = codec.unpack_header(bytes(worker.inbox[:4]))
            if len(worker.inbox) < 4 + size:
                break
            answer = codec.unpack_body(bytes(worker.inbox[4 : 4 + size]))
            del worker.inbox[: 4 + size]
            self._answered(worker, answer)

    def _answered(self, worker: _Worker, answer: dict[str, Any]) -> None:
        call = worker.inflight.popleft()
        if answer.get("id") != call.request["id"]:
            self._worker_died(worker, reason="answered out of order")
            return
        if not call.future.done():
            call.future.set_result(answer)
        if worker.inflight:
            worker.inflight[0].started = time.monotonic()
        self._arm_watchdog(worker)

    # -- failures --------------------------------------------------------------------------

    def _arm_watchdog(self, worker: _Worker) -> None:
        if worker.watchdog is not None:
            worker.watchdog.cancel()
            worker.watchdog = None
        if worker.inflight:
            head = worker.inflight[0]
            delay = max(0.0, (head.started or time.monotonic()) + self.timeout_s - time.monotonic())
            worker.watchdog = asyncio.get_running_loop().call_later(delay, self._timed_out, worker, head)

    def _timed_out(self, worker: _Worker, head: _Call) -> None:
        if worker is not self._worker or not worker.inflight or worker.inflight[0] is not head:
            return
        message = f"script {head.filename} did not finish within {self.timeout_s:g} s"
        self._replace(worker, ScriptFailure("timeout", message))

    def _worker_died(self, worker: _Worker, reason: str | None = None) -> None:
        if worker is not self._worker:
            return
        returncode = self._stop(worker)
        head = worker.inflight[0] if worker.inflight else None
        name = head.filename if head else "<script>"
        detail = reason or _describe_exit(returncode)
        self._replace(worker, ScriptFailure("crashed", f"script {name} killed its worker ({detail})"), stopped=True)

    def _replace(self, worker: _Worker, failure: ScriptFailure, stopped: bool = False) -> None:
        """Fail the running call; calls queued behind it never started and go to a new worker."""
        if not stopped:
            self._stop(worker)
        self._worker = None
        pending = list(worker.inflight)
        worker.inflight.clear()
        if pending and not pending[0].future.done():
            pending[0].future.set_exception(failure)
        waiting = [call for call in pending[1:] if not call.future.done()]
        if waiting and not self._closed:
            fresh = self._ensure_worker()
            for call in waiting:
                self._send(fresh, call)

    def _stop(self, worker: _Worker) -> int | None:
        self._detach(worker)
        if worker.process.poll() is None:
            spares.kill_group(worker.process)
        returncode = worker.process.wait()
        for stream in (worker.process.stdin, worker.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        return returncode

    def _detach(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        if worker.watchdog is not None:
            worker.watchdog.cancel()
            worker.watchdog = None
        if not worker.process.stdout.closed:
            loop.remove_reader(worker.process.stdout.fileno())
        if worker.writing and not worker.process.stdin.closed:
            loop.remove_writer(worker.process.stdin.fileno())
            worker.writing = False

    def _outcome(self, answer: dict[str, Any], filename: str) -> ScriptOutcome:
        status = answer.get("status")
        if status == "ok":
            return ScriptOutcome(value=codec.decode(answer.get("value")))
        error_type = answer.get("error_type", "Error")
        message = answer.get("message", "")
        details = answer.get("traceback", "")
        if status == "raised":
            return ScriptOutcome(raised=True, error_type=error_type, message=message, traceback=details)
        if error_type == "MemoryError":
            raise ScriptFailure("memory", f"script {filename} exceeded the {self.memory_mb} MB memory limit", details)
        raise ScriptFailure("escaped", f"script {filename} ended abnormally: {error_type}: {message}", details)

    # -- the worker process ----------------------------------------------------------------

    def _ensure_worker(self) -> _Worker:
        if self._worker is not None:
            return self._worker
        self.cwd.mkdir(parents=True, exist_ok=True)
        log: str | None = None
        if self.log_path == "-":
            log = "-"  # keep ours
        elif self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = str(self.log_path)
        process = spares.SPARES.take(self.python)
        worker = _Worker(process)
        # The first frame binds the worker to this run; it is never answered (frames run in order,
        # so a failed setup shows as the worker exiting before the first call's answer).
        worker.outbox += codec.pack({"op": "setup", "cwd": str(self.cwd), "memory_mb": self.memory_mb, "log": log})
        asyncio.get_running_loop().add_reader(process.stdout.fileno(), self._readable, worker)
        self._worker = worker
        self.workers_started += 1
        self._flush(worker)
        return worker


@functools.lru_cache(maxsize=256)
def _code_id(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "worker gone"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"
