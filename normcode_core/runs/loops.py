"""Event loops on worker threads that executions run on, so the server's own loop stays responsive.

An execution does blocking work between its awaits (its run.db is SQLite: creating, committing
and closing it waits for the disk). On the server's loop that would stall every HTTP request;
here it only delays the runs sharing that worker loop. Each loop runs many executions as tasks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class WorkerLoops:
    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._loops: list[asyncio.AbstractEventLoop] = []
        self._threads: list[threading.Thread] = []
        self._next = itertools.count()

    def start(self) -> None:
        for index in range(self.size):
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(target=_serve, args=(loop, ready), name=f"normcode-runs-{index}", daemon=True)
            thread.start()
            ready.wait()
            self._loops.append(loop)
            self._threads.append(thread)

    def pick(self) -> asyncio.AbstractEventLoop:
        """The loop for a new execution (round robin)."""
        return self._loops[next(self._next) % len(self._loops)]

    @staticmethod
    async def run(loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, T]) -> T:
        """Await `coroutine` running on `loop`; cancelling the caller cancels it there."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, loop))

    @staticmethod
    async def call(loop: asyncio.AbstractEventLoop, function: Callable[..., T], *args: Any) -> T:
        """Call `function(*args)` on `loop`'s thread and await its result (exceptions included)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def invoke() -> None:
            try:
                future.set_result(function(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)

        loop.call_soon_threadsafe(invoke)
        return await asyncio.wrap_future(future)

    def stop(self, timeout: float = 5.0) -> None:
        for loop in self._loops:
            loop.call_soon_threadsafe(loop.stop)
        for thread in self._threads:
            thread.join(timeout)
        for loop in self._loops:
            if not loop.is_running():
                loop.close()
        self._loops.clear()
        self._threads.clear()


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()
