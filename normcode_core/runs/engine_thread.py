"""The thread executions run on: an event loop of its own, so the server's loop stays responsive.

An execution does blocking work between its awaits (its run.db is SQLite: creating, committing
and closing it waits for the disk). On the server's loop that would stall every HTTP request;
here it only delays other executions. One thread, not a pool: the GIL would make more threads
pure overhead, and CPython 3.11 builds ASTs with interpreter-wide state that two threads can
corrupt (gh-106905: "AST constructor recursion depth mismatch"), while the engine parses literals
with `ast` all the time. So everything that runs engine code (loading and validating plans
included) runs here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class EngineThread:
    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=_serve, args=(loop, ready), name="normcode-engine", daemon=True)
        self._thread.start()
        ready.wait()
        self.loop = loop

    def is_current(self) -> bool:
        return threading.current_thread() is self._thread

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Await `coroutine` running on the engine loop; cancelling the caller cancels it there."""
        assert self.loop is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self.loop))

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """Await `function(*args)` called on the engine thread (its exception included)."""
        return await asyncio.wrap_future(self._submit(function, *args))

    def call_blocking(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` on the engine thread, for code on other worker threads (never the server loop)."""
        if self.is_current() or self.loop is None:
            return function(*args)
        return self._submit(function, *args).result()

    def call_soon(self, function: Callable[..., Any], *args: Any) -> None:
        """Fire and forget `function(*args)` on the engine thread."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(function, *args)

    def _submit(self, function: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        assert self.loop is not None
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def invoke() -> None:
            try:
                future.set_result(function(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(invoke)
        return future

    def stop(self, timeout: float = 5.0) -> None:
        loop, thread = self.loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()
        self.loop = self._thread = None


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()
