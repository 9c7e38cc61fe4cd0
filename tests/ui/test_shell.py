"""What every page shares: the health indicator, the API token prompt, phone and wide layouts,
keyboard reachability, and no console errors on any page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import ServerProcess
from tests.ui.conftest import PHONE, WIDE, ConsoleErrors, start_ui_server
from tests.ui.helpers import package_bytes, screenshot

TOKEN = "s3cret-ui-token"


def test_health_and_readiness_are_visible(page: Page, ui_server: ServerProcess) -> None:
    health = ui_server.get("/health").json()
    ready = ui_server.get("/ready").json()
    page.goto(ui_server.url + "/")
    indicator = page.locator(".health-button")
    expect(indicator).to_contain_text("Ready" if ready["ready"] else "Not ready")
    indicator.click()
    details = page.locator("#health-details")
    expect(details).to_contain_text(health["version"])
    for name in ready["checks"]:
        expect(details).to_contain_text(name)
    screenshot(page, "health")
    page.keyboard.press("Escape")
    expect(details).to_have_count(0)


@pytest.fixture(scope="module")
def token_server(webui_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_ui_server(tmp_path_factory.mktemp("ui-token-data"), NORMCODE_SERVER__API_TOKEN=TOKEN)
    response = httpx.post(
        server.url + "/api/plans/deploy-file",
        files={"plan": ("ask.zip", package_bytes("paradigm-exp-5.3-ask"))},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code < 300, response.text
    yield server
    server.stop()


def test_the_ui_asks_for_the_api_token_once_and_keeps_it_for_the_session(
    page: Page, token_server: ServerProcess, console_errors: ConsoleErrors
) -> None:
    console_errors.allow(r"status of 401")
    page.goto(token_server.url + "/")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("API token required")
    screenshot(page, "token-prompt")

    dialog.get_by_label("Token").fill("wrong-token")
    dialog.get_by_role("button", name="Continue").click()
    expect(dialog).to_contain_text("The token was rejected")

    dialog.get_by_label("Token").fill(TOKEN)
    dialog.get_by_role("button", name="Continue").click()
    expect(dialog).to_have_count(0)
    expect(page.locator("[data-testid=plan-card]", has_text="paradigm-exp-5.3-ask")).to_be_visible()

    # Kept for the session: a reload (and other pages, and the event stream) need no new prompt.
    page.reload()
    expect(page.locator("[data-testid=plan-card]", has_text="paradigm-exp-5.3-ask")).to_be_visible()
    page.goto(token_server.url + "/#/plans/paradigm-exp-5.3-ask/run")
    page.get_by_role("button", name="Start run").click()
    expect(page.get_by_test_id("question")).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("stream-state")).to_contain_text("live")
    expect(page.get_by_test_id("event-log").locator(".event[data-type=question_asked]")).to_have_count(1)
    expect(page.get_by_role("dialog")).to_have_count(0)


@pytest.fixture(scope="module")
def run_id(ui_server: ServerProcess) -> str:
    response = httpx.post(
        ui_server.url + "/api/plans/deploy-file", files={"plan": ("gold.zip", package_bytes("gold-investment-en"))}
    )
    assert response.status_code < 300, response.text
    started = httpx.post(ui_server.url + "/api/runs", json={"plan_id": "gold-investment-en", "agent": "demo"})
    assert started.status_code < 300, started.text
    return started.json()["run_id"]


# Each page, and what shows that it has finished loading.
PAGES = {
    "plans": ("/#/plans", ["[data-testid=plan-card]"]),
    "plan-graph": ("/#/plans/gold-investment-en", [".react-flow__node"]),
    "launch": ("/#/plans/gold-investment-en/run", ["form.launch-form"]),
    "runs": ("/#/runs", ["[data-testid=runs-table]"]),
    "run": (
        "/#/runs/{run_id}",
        ["[data-testid=result]", ".event[data-type=run_completed]", ".step-node.state-completed"],
    ),
}


@pytest.mark.parametrize("viewport_name", ["phone", "wide"])
def test_every_page_fits_the_screen_without_errors(
    browser: Browser, ui_server: ServerProcess, run_id: str, viewport_name: str, console_errors: ConsoleErrors
) -> None:
    viewport = PHONE if viewport_name == "phone" else WIDE
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(60_000)
    tab = context.new_page()
    tab.on("console", console_errors.on_console)
    tab.on("pageerror", console_errors.on_page_error)
    try:
        for name, (path, ready_selectors) in PAGES.items():
            tab.goto(ui_server.url + path.format(run_id=run_id))
            for selector in ready_selectors:
                tab.wait_for_selector(selector)
            overflow = tab.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {viewport['width']}px"
            screenshot(tab, f"{name}-{viewport_name}")
    finally:
        context.close()
    assert not console_errors.unexpected(), console_errors.unexpected()


def test_the_main_controls_are_reachable_by_keyboard(page: Page, ui_server: ServerProcess, run_id: str) -> None:
    page.goto(ui_server.url + "/")
    expect(page.locator("[data-testid=plan-card]").first).to_be_visible()
    reached: list[str] = []
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("(document.activeElement.innerText || document.activeElement.getAttribute('aria-label') || '').trim()"))
    for control in ("Plans", "Runs", "Choose a .zip file", "Run", "Graph", "Delete"):
        assert control in reached, f"{control!r} is not reachable with Tab; reached {reached}"

    # Keyboard only: from the plans page to a plan's launcher.
    page.goto(ui_server.url + "/")
    run_link = page.locator("[data-testid=plan-card]", has_text="gold-investment-en").get_by_role("link", name="Run", exact=True)
    run_link.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Start a run of gold-investment-en")).to_be_visible()
    page.get_by_label("Agent").focus()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Max cycles")).to_be_focused()
