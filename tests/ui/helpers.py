"""Helpers for the browser tests: fixture packages zipped on the fly, a proxy that can drop every
open connection (to prove the live view reconnects), and drag-and-drop of a file onto the page."""

from __future__ import annotations

import base64
import io
import socket
import threading
from pathlib import Path

from playwright.sync_api import Page

from normcode_core.plans.package import zip_directory

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = (REPO_ROOT / ".." / "shared" / "fixtures").resolve()
FIXTURE_PLANS = FIXTURES / "plans"
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"


def package_bytes(plan_name: str) -> bytes:
    buffer = io.BytesIO()
    zip_directory(FIXTURE_PLANS / plan_name, buffer)
    return buffer.getvalue()


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"ui-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def drop_file(page: Page, selector: str, file_name: str, content: bytes) -> None:
    """Drags a file onto `selector` the way a browser does: dragover, then drop with a DataTransfer."""
    transfer = page.evaluate_handle(
        """([name, encoded]) => {
            const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "application/zip" }));
            return transfer;
        }""",
        [file_name, base64.b64encode(content).decode("ascii")],
    )
    page.dispatch_event(selector, "dragenter", {"dataTransfer": transfer})
    page.dispatch_event(selector, "dragover", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


class DroppingProxy:
    """A TCP proxy on 127.0.0.1 in front of the server. `drop_all()` cuts every open connection,
    as a flaky network or a restarting load balancer would, while new connections keep working."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self.connections = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
                self.connections += 1
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def drop_all(self) -> int:
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        return len(sockets) // 2

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.drop_all()
