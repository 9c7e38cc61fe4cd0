"""The script worker: a real child process per sandbox, limits enforced, the server unharmed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from normcode_core.engine.sandbox import Opaque, ScriptFailure, ScriptSandbox

ECHO = "def main(input_1=None, body=None):\n    return input_1\n"


@pytest.fixture
async def sandbox(tmp_path: Path):
    box = ScriptSandbox(tmp_path / "run", timeout_s=5, memory_mb=256)
    yield box
    await box.aclose()


async def test_function_style_values_round_trip(sandbox: ScriptSandbox) -> None:
    value = {"a": [1, 2.5, None, True], "t": (1, "x"), 3: {"nested"}, "b": b"\x00\xff"}
    outcome = await sandbox.call_function(ECHO, {"input_1": value})
    assert not outcome.raised
    assert outcome.value == value
    assert type(outcome.value["t"]) is tuple


async def test_body_is_offered_only_to_functions_that_accept_it(sandbox: ScriptSandbox) -> None:
    with_body = "def main(input_1=None, body=None):\n    return type(body).__name__ + ':' + body.base_dir\n"
    without = "def main(input_1=None):\n    return 'fine'\n"
    kwargs = "def main(**kwargs):\n    return sorted(kwargs)\n"
    assert (await sandbox.call_function(with_body, {"input_1": 1})).value == f"WorkerBody:{sandbox.cwd}"
    assert (await sandbox.call_function(without, {"input_1": 1})).value == "fine"
    assert (await sandbox.call_function(kwargs, {"input_1": 1})).value == ["body", "input_1"]


async def test_script_exceptions_are_reported_not_raised(sandbox: ScriptSandbox) -> None:
    outcome = await sandbox.call_function("def main(input_1):\n    return input_1.strip()\n", {"input_1": {"k": 1}})
    assert outcome.raised
    assert outcome.error_type == "AttributeError"
    assert outcome.message == "'dict' object has no attribute 'strip'"
    missing = await sandbox.call_function("x = 1\n", {})
    assert missing.raised and missing.message == "Function 'main' not found in the provided script."


async def test_exec_style_reads_global_result(sandbox: ScriptSandbox) -> None:
    outcome = await sandbox.exec_script("result = input_1 + '!'\n", {"input_1": "4, 2"})
    assert outcome.value == "4, 2!" and outcome.has_result
    nothing = await sandbox.exec_script("x = 1\n", {})
    assert not nothing.has_result


async def test_each_call_gets_fresh_globals(sandbox: ScriptSandbox) -> None:
    counter = "count = 0\ndef main():\n    global count\n    count += 1\n    return count\n"
    assert [(await sandbox.call_function(counter, {})).value for _ in range(3)] == [1, 1, 1]


async def test_worker_is_reused_across_calls(sandbox: ScriptSandbox) -> None:
    pid = await sandbox.worker_pid()
    for i in range(20):
        assert (await sandbox.call_function(ECHO, {"input_1": i})).value == i
    assert await sandbox.worker_pid() == pid
    assert sandbox.workers_started == 1
    assert pid != os.getpid()


async def test_working_directory_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-must-not-leak")
    box = ScriptSandbox(tmp_path / "work", timeout_s=5)
    try:
        script = (
            "import os\n"
            "def main():\n"
            "    open('made-by-script.txt', 'w').write('x')\n"
            "    return [os.getcwd(), os.environ.get('OPENAI_API_KEY')]\n"
        )
        outcome = await box.call_function(script, {})
        assert outcome.value == [str(tmp_path / "work"), None]
        assert (tmp_path / "work" / "made-by-script.txt").read_text() == "x"
    finally:
        await box.aclose()


async def test_print_and_input_do_not_disturb_the_protocol(sandbox: ScriptSandbox) -> None:
    script = "def main():\n    print('noise ' * 1000)\n    try:\n        return input()\n    except EOFError:\n        return 'eof'\n"
    assert (await sandbox.call_function(script, {})).value == "eof"


async def test_timeout_kills_the_worker_and_the_next_call_works(tmp_path: Path) -> None:
    box = ScriptSandbox(tmp_path, timeout_s=0.5)
    try:
        first_pid = await box.worker_pid()
        with pytest.raises(ScriptFailure) as failure:
            await box.call_function("def main():\n    while True:\n        pass\n", {})
        assert failure.value.kind == "timeout"
        with pytest.raises(ProcessLookupError):
            os.kill(first_pid, 0)
        assert (await box.call_function(ECHO, {"input_1": "after"})).value == "after"
        assert box.workers_started == 2
    finally:
        await box.aclose()


async def test_memory_limit(tmp_path: Path) -> None:
    box = ScriptSandbox(tmp_path, timeout_s=10, memory_mb=200)
    try:
        with pytest.raises(ScriptFailure) as failure:
            await box.call_function("def main():\n    return len(bytearray(600 * 1024 * 1024))\n", {})
        assert failure.value.kind == "memory"
        assert (await box.call_function("def main():\n    return len(bytearray(10 * 1024 * 1024))\n", {})).value == 10485760
    finally:
        await box.aclose()


@pytest.mark.parametrize(
    ("script", "kind"),
    [
        ("import os\ndef main():\n    os._exit(3)\n", "crashed"),
        ("import ctypes\ndef main():\n    ctypes.string_at(0)\n", "crashed"),
        ("import sys\ndef main():\n    sys.exit(2)\n", "escaped"),
    ],
)
async def test_a_crashing_script_fails_only_its_call(sandbox: ScriptSandbox, script: str, kind: str) -> None:
    with pytest.raises(ScriptFailure) as failure:
        await sandbox.call_function(script, {})
    assert failure.value.kind == kind
    assert (await sandbox.call_function(ECHO, {"input_1": "still here"})).value == "still here"


async def test_unusual_results_keep_their_printed_form(sandbox: ScriptSandbox) -> None:
    script = "class Thing:\n    def __str__(self):\n        return 'thing!'\n    def __repr__(self):\n        return 'Thing()'\ndef main():\n    return {'x': Thing()}\n"
    value = (await sandbox.call_function(script, {})).value
    assert isinstance(value["x"], Opaque)
    assert str(value) == "{'x': Thing()}" and str(value["x"]) == "thing!"
    circular = "def main():\n    a = []\n    a.append(a)\n    return a\n"
    with pytest.raises(ScriptFailure):
        await sandbox.call_function(circular, {})


async def test_closed_sandbox_refuses_calls(tmp_path: Path) -> None:
    box = ScriptSandbox(tmp_path)
    await box.call_function(ECHO, {"input_1": 1})
    await box.aclose()
    with pytest.raises(ScriptFailure):
        await box.call_function(ECHO, {"input_1": 1})


def test_the_worker_dies_with_the_engine(tmp_path: Path) -> None:
    """A looping script must not outlive a killed server."""
    import subprocess
    import sys
    import time

    engine = (
        "import asyncio, os, sys\n"
        "from normcode_core.engine.sandbox import ScriptSandbox\n"
        "async def main():\n"
        f"    box = ScriptSandbox({str(tmp_path)!r}, timeout_s=60)\n"
        "    print(await box.worker_pid(), flush=True)\n"
        "    asyncio.ensure_future(box.call_function('def main():\\n    while True: pass\\n', {}))\n"
        "    await asyncio.sleep(0.3)\n"
        "    os._exit(0)\n"
        "asyncio.run(main())\n"
    )
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", engine], cwd=root, capture_output=True, text=True, timeout=30, check=True)
    worker = int(done.stdout.split()[0])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(worker, 9)
    raise AssertionError("the script worker survived its engine")


# -- spare workers (spares.py) ------------------------------------------------------------------

WHERE = (
    "import os, sys\n"
    "def main(input_1=None):\n"
    "    print('hello from', os.getcwd())\n"
    "    return [os.getpid(), os.getcwd(), os.environ.get('HOME')]\n"
)


def _wait_gone(pid: int, seconds: float = 5.0) -> bool:
    import time

    from normcode_core.engine.sandbox.spares import SPARES

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        SPARES.reap()
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def spares():
    from normcode_core.engine.sandbox.spares import SPARES

    SPARES.configure(1)
    yield SPARES
    SPARES.configure(0)
    SPARES.close()


async def test_a_spare_worker_serves_one_run_in_that_runs_directory(tmp_path: Path, spares) -> None:
    spare_pid = spares._spares[0][1].pid
    first = ScriptSandbox(tmp_path / "a", timeout_s=5, log_path=tmp_path / "a.log")
    second = ScriptSandbox(tmp_path / "b", timeout_s=5, log_path=tmp_path / "b.log")
    try:
        pid_a, cwd_a, home_a = (await first.call_function(WHERE, {})).value
        assert pid_a == spare_pid  # the booted spare, not a new interpreter
        assert cwd_a == home_a == str(tmp_path / "a")
        assert spares._spares == []  # the replacement waits for the run to end: no CPU taken from it
        pid_b, cwd_b, _ = (await second.call_function(WHERE, {})).value
        assert pid_b != pid_a and cwd_b == str(tmp_path / "b")  # runs never share a worker
        assert (await first.call_function(WHERE, {})).value[0] == pid_a
    finally:
        await first.aclose()
        await second.aclose()
    assert len(spares._spares) == 1 and spares._spares[0][1].pid not in (pid_a, pid_b)  # booting for the next run
    assert (tmp_path / "a.log").read_text().strip() == f"hello from {tmp_path / 'a'}\nhello from {tmp_path / 'a'}"
    assert (tmp_path / "b.log").read_text().strip() == f"hello from {tmp_path / 'b'}"
    assert _wait_gone(pid_a) and _wait_gone(pid_b)


async def test_memory_limit_applies_to_a_spare(tmp_path: Path, spares) -> None:
    box = ScriptSandbox(tmp_path, timeout_s=10, memory_mb=200)
    try:
        with pytest.raises(ScriptFailure) as caught:
            await box.call_function("def main():\n    return len(bytearray(400 * 1024 * 1024))\n", {})
        assert caught.value.kind == "memory"
    finally:
        await box.aclose()


async def test_closing_kills_a_busy_worker_without_waiting(tmp_path: Path) -> None:
    import asyncio
    import time

    box = ScriptSandbox(tmp_path, timeout_s=60)
    pid = await box.worker_pid()
    pending = asyncio.ensure_future(box.call_function("def main():\n    while True: pass\n", {}))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await box.aclose()
    assert time.monotonic() - started < 0.5
    with pytest.raises(ScriptFailure):
        await pending
    assert _wait_gone(pid)
