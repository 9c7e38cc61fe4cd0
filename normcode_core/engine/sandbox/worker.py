"""The script worker: a child process that runs plan scripts for one run.

Started as `python worker.py PARENT_PID`, possibly long before a run needs it (spares.py). It
reads request frames on its stdin and answers on its stdout. The first frame binds it to one run
and is not answered: {"op": "setup", "cwd", "memory_mb", "log": path | "-" (keep stderr) | null}.
Then file descriptors 0 and 1 are moved out of the way, so that a script's print() goes to the
run's log and input() sees EOF.

Requests:  {"op": "function", "id", "code_id", "code"?, "filename", "function", "params", "body"}
           {"op": "exec", "id", "code_id", "code"?, "filename", "globals"}
Answers:   {"id", "status": "ok", "value"} | {"id", "status": "raised", "error_type", "message",
           "traceback"} | {"id", "status": "failed", "error_type", "message", "traceback"}
"raised" is an ordinary exception from the script (the engine may turn it into a value, as
upstream does); "failed" means the script escaped the call (SystemExit, MemoryError, ...),
which always fails the step.
"""

import builtins
import importlib.util
import json
import os
import select
import sys
import time
import traceback
import types

_CO_VARKEYWORDS = 0x08  # inspect.CO_VARKEYWORDS (inspect costs ~6 ms of start-up)
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
    sys.path.pop(0)  # scripts must not import engine modules by accident

_spec = importlib.util.spec_from_file_location("_normcode_sandbox_codec", _HERE / "codec.py")
codec = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(codec)


class WorkerFileSystem:
    """What `body.file_system` offers to scripts: paths relative to the run directory."""

    def __init__(self, base_dir: str) -> None:
        self.base_dir = base_dir

    def resolve_path(self, path: str) -> str:
        candidate = Path(path)
        return str(candidate if candidate.is_absolute() else Path(self.base_dir) / candidate)

    def exists(self, location: str) -> bool:
        return Path(self.resolve_path(location)).exists()

    def read(self, location: str) -> dict:
        target = Path(self.resolve_path(location))
        if not target.exists():
            return {"status": "error", "message": f"File not found at {target}"}
        try:
            return {"status": "success", "content": target.read_text(encoding="utf-8", errors="replace")}
        except Exception as exc:  # noqa: BLE001 - reported to the script as a value
            return {"status": "error", "message": str(exc)}

    def save(self, content, location: str) -> dict:
        if content is None:
            return {"status": "error", "message": f"Content cannot be None. Failed to save to {location}."}
        target = Path(self.resolve_path(location))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps(content, indent=2, ensure_ascii=False) if isinstance(content, (list, dict)) else content
            target.write_text(text, encoding="utf-8")
            return {"status": "success", "location": str(target)}
        except Exception as exc:  # noqa: BLE001 - reported to the script as a value
            return {"status": "error", "message": str(exc)}

    def write(self, path: str, content) -> dict:
        return self.save(content, path)


class WorkerBody:
    """The `body` argument scripts may ask for; only the file system crosses into the worker."""

    def __init__(self, base_dir: str) -> None:
        self.base_dir = base_dir
        self.file_system = WorkerFileSystem(base_dir)


_compiled: dict = {}
_READ_CHUNK = 64 * 1024  # below malloc's mmap threshold: a larger buffer costs an mmap per read
_BUSY_S = 0.0003


def _code_object(request: dict):
    code_id = request["code_id"]
    if "code" in request:
        _compiled[code_id] = compile(request["code"], request.get("filename") or "<script>", "exec")
    return _compiled[code_id]


_accepts_body_cache: dict = {}


def _accepts_body(function) -> bool:
    key = getattr(function, "__code__", None)
    if key is not None and key in _accepts_body_cache:
        return _accepts_body_cache[key]
    if isinstance(function, types.FunctionType) and not hasattr(function, "__wrapped__"):
        code = function.__code__  # a plain function: read its code object, no `inspect` import
        names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        accepts = "body" in names or bool(code.co_flags & _CO_VARKEYWORDS)
        _accepts_body_cache[key] = accepts
        return accepts
    import inspect  # other callables; costs ~6 ms of start-up, so only when needed

    try:
        parameters = inspect.signature(function).parameters.values()
        accepts = any(p.name == "body" or p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters)
    except (TypeError, ValueError):
        accepts = False
    if key is not None:
        _accepts_body_cache[key] = accepts
    return accepts


def _run_function(request: dict, body: WorkerBody):
    namespace: dict = {}
    exec(_code_object(request), namespace)  # noqa: S102 - running plan scripts is this process's job
    name = request["function"]
    if name not in namespace:
        raise NameError(f"Function '{name}' not found in the provided script.")
    function = namespace[name]
    if not callable(function):
        raise TypeError(f"'{name}' is not a callable function.")
    params = dict(codec.decode(request["params"]))
    if request.get("body") and "body" not in params and _accepts_body(function):
        params["body"] = body
    return function(**params)


def _run_exec(request: dict):
    namespace = dict(codec.decode(request["globals"]))
    namespace["__builtins__"] = builtins
    exec(_code_object(request), namespace)  # noqa: S102 - legacy exec-style plan scripts
    if "result" in namespace:
        return {"has_result": True, "result": namespace["result"]}
    return {"has_result": False}


def _error(request: dict, status: str, exc: BaseException) -> dict:
    return {
        "id": request.get("id"),
        "status": status,
        "error_type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-8000:],
    }


def _handle(request: dict, body: WorkerBody) -> dict:
    try:
        if request["op"] == "function":
            value = _run_function(request, body)
        elif request["op"] == "exec":
            value = _run_exec(request)
        elif request["op"] == "ping":
            value = os.getpid()
        else:
            raise ValueError(f"unknown op {request['op']!r}")
    except MemoryError as exc:
        return _error(request, "failed", exc)
    except Exception as exc:  # noqa: BLE001 - any error of the script is its result
        return _error(request, "raised", exc)
    except BaseException as exc:  # noqa: BLE001 - SystemExit, KeyboardInterrupt... from the script
        return _error(request, "failed", exc)
    try:
        return {"id": request.get("id"), "status": "ok", "value": codec.encode(value)}
    except BaseException as exc:  # noqa: BLE001 - e.g. a self-referencing result
        return _error(request, "failed", exc)


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the engine process dies, even while a script loops."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _limit_memory(memory_mb: int) -> None:
    if memory_mb <= 0:
        return
    import resource

    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


class _FrameReader:
    """Frames from a raw file descriptor, reading large chunks to keep system calls few."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()

    def next(self):
        while True:
            if len(self.buffer) >= 4:
                size = codec.unpack_header(bytes(self.buffer[:4]))
                if len(self.buffer) >= 4 + size:
                    body = bytes(self.buffer[4 : 4 + size])
                    del self.buffer[: 4 + size]
                    return codec.unpack_body(body)
            chunk = self._read()
            if not chunk:
                return None
            self.buffer += chunk

    def _read(self) -> bytes:
        # Engines send a run's next call soon after an answer: polling for it a moment before
        # blocking saves the process wake-up, which costs more than the call itself.
        deadline = time.perf_counter() + _BUSY_S
        while time.perf_counter() < deadline and not select.select([self.fd], [], [], 0)[0]:
            pass
        return os.read(self.fd, _READ_CHUNK)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _bind_to_run(setup: dict) -> WorkerBody:
    """Apply the setup frame: the run's cwd, HOME, log and memory limit."""
    if setup.get("op") != "setup":
        raise SystemExit("sandbox worker: the first frame must be the setup frame")
    os.chdir(setup["cwd"])
    os.environ["HOME"] = setup["cwd"]
    log = setup.get("log")
    if log != "-":
        target = os.open(log or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(target, 2)
        os.close(target)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    _limit_memory(int(setup.get("memory_mb") or 0))
    return WorkerBody(os.getcwd())


def main() -> None:
    parent = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    _die_with_parent()
    if parent and os.getppid() != parent:
        return  # the engine died before the death signal was armed
    requests = _FrameReader(os.dup(0))
    answers = os.dup(1)
    setup = requests.next()
    if setup is None:
        return  # an unused spare, released
    body = _bind_to_run(setup)
    while True:
        request = requests.next()
        if request is None:
            return
        answer = _handle(request, body)
        try:
            frame = codec.pack(answer)
        except Exception as exc:  # noqa: BLE001 - an unencodable value fails the step, not the worker
            frame = codec.pack(_error(request, "failed", exc))
        sys.stdout.flush()
        sys.stderr.flush()
        _write_all(answers, frame)


if __name__ == "__main__":
    main()
