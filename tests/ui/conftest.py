"""Browser-test fixtures: Debian's chromium (installed if missing), the built web UI (rebuilt when
its sources changed), one real server per test module, and a page that fails its test on any
console error."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from tests.conftest import ServerProcess, VENV_BIN, clean_environ, free_port
from tests.ui.browser import CHROMIUM_ARGS, WEBUI_DIST, BrowserSetupError, ensure_chromium, ensure_webui_built

WIDE = {"width": 1400, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    try:
        executable = ensure_chromium()
    except BrowserSetupError as exc:
        pytest.fail(str(exc))
    instance = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
    yield instance
    instance.close()


@pytest.fixture(scope="session")
def webui_dist() -> Path:
    try:
        return ensure_webui_built()
    except BrowserSetupError as exc:
        pytest.fail(str(exc))


def start_ui_server(data_dir: Path, **env: str) -> ServerProcess:
    port = free_port()
    environ = clean_environ(
        NORMCODE_DATA_DIR=str(data_dir),
        NORMCODE_DEFAULT_AGENT="demo",
        NORMCODE_SERVER__WEBUI_DIR=str(WEBUI_DIST),
        **env,
    )
    command = [str(VENV_BIN / "normcode-server"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = ServerProcess(command, environ, port)
    server.wait_until_up()
    return server


@pytest.fixture(scope="module")
def ui_server(webui_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The real server with a fresh data dir, serving the built UI; `demo` is the default agent."""
    server = start_ui_server(tmp_path_factory.mktemp("ui-data"))
    yield server
    server.stop()


class ConsoleErrors:
    """Console errors and uncaught exceptions of a page. Tests that provoke an error on purpose
    (a rejected upload answered 422, a refused token answered 401) name it with `allow`."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self._allowed: list[re.Pattern[str]] = []

    def allow(self, pattern: str) -> None:
        self._allowed.append(re.compile(pattern))

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.messages.append(f"console.error: {message.text} ({message.location.get('url', '')})")

    def on_page_error(self, error: Exception) -> None:
        self.messages.append(f"uncaught: {error}")

    def unexpected(self) -> list[str]:
        return [m for m in self.messages if not any(p.search(m) for p in self._allowed)]


@pytest.fixture
def console_errors() -> ConsoleErrors:
    return ConsoleErrors()


@pytest.fixture
def page(browser: Browser, console_errors: ConsoleErrors) -> Iterator[Page]:
    """A fresh browser context (so a fresh sessionStorage) at wide-screen size."""
    context = browser.new_context(viewport=WIDE)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    tab.on("console", console_errors.on_console)
    tab.on("pageerror", console_errors.on_page_error)
    yield tab
    context.close()
    unexpected = console_errors.unexpected()
    assert not unexpected, "the page logged errors:\n" + "\n".join(unexpected)
