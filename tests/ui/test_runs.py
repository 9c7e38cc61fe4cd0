"""Run launcher, live run view, human input, results and run history in a real browser against
the real server running real plans with the `demo` agent."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import ServerProcess
from tests.ui.conftest import ConsoleErrors
from tests.ui.helpers import FIXTURE_PLANS, DroppingProxy, package_bytes, screenshot

RUN_TIMEOUT_MS = 60_000
RUN_URL = re.compile(r"#/runs/([^/?]+)$")


@pytest.fixture(scope="module", autouse=True)
def deployed(ui_server: ServerProcess) -> None:
    for name in ("gold-investment-en", "paradigm-exp-5.3-ask"):
        response = httpx.post(ui_server.url + "/api/plans/deploy-file", files={"plan": (f"{name}.zip", package_bytes(name))})
        assert response.status_code < 300, response.text


def _start_from_launcher(page: Page, base_url: str, plan_id: str) -> str:
    page.goto(f"{base_url}/#/plans/{plan_id}/run")
    agent = page.get_by_label("Agent")
    expect(agent).to_have_value("demo")
    screenshot(page, f"launch-{plan_id}")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(RUN_URL)
    match = RUN_URL.search(page.url)
    assert match
    return match.group(1)


def _wait_for_status(page: Page, server: ServerProcess, run_id: str, status: str) -> None:
    """Wait until the page shows the run in `status`; on failure say what the server thinks."""
    try:
        expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", status, timeout=RUN_TIMEOUT_MS)
    except AssertionError as exc:
        run = server.get(f"/api/runs/{run_id}").json()
        raise AssertionError(f"run {run_id} is not {status} on the page; server says {run['status']}: {run.get('error')}") from exc


def _event_seqs(page: Page) -> list[int]:
    return [int(s) for s in page.locator("[data-testid=event-log] .event").evaluate_all("els => els.map(e => e.dataset.seq)")]


def test_a_run_started_from_the_launcher_finishes_live_and_shows_its_result(page: Page, ui_server: ServerProcess) -> None:
    inferences = json.loads((FIXTURE_PLANS / "gold-investment-en" / "inference_repo.json").read_text())
    run_id = _start_from_launcher(page, ui_server.url, "gold-investment-en")

    _wait_for_status(page, ui_server, run_id, "completed")
    log = page.get_by_test_id("event-log")
    expect(log.locator(".event[data-type=run_completed]")).to_have_count(1)
    expect(log.locator(".event[data-type=llm_call]").first).to_be_visible()

    # The graph is coloured from the stream: every step ran.
    expect(page.locator(".react-flow__node")).to_have_count(len(inferences))
    expect(page.locator(".step-node.state-completed")).to_have_count(len(inferences))
    expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")

    # The result on the page is the server's result.
    result = ui_server.get(f"/api/runs/{run_id}/result").json()
    panel = page.get_by_test_id("result")
    for concept in result["final_concepts"]:
        expect(panel).to_contain_text(concept["name"])
        for cell in json.dumps(concept["tensor"]).strip("[]").split(","):
            expect(panel).to_contain_text(json.loads(cell.strip()) if cell.strip().startswith('"') else cell.strip())

    # A step's details in the run view carry what happened: its value and its LLM calls.
    llm_step = log.locator(".event[data-type=llm_call] .flow-index").first.inner_text()
    page.locator(f".react-flow__node[data-id='{llm_step}']").click()
    details = page.get_by_test_id("step-details")
    expect(details).to_contain_text(f"Step {llm_step}")
    expect(details).to_contain_text("LLM calls (")
    expect(details.get_by_test_id("step-result")).to_be_visible()

    seqs = _event_seqs(page)
    assert seqs == sorted(set(seqs)), "events shown twice or out of order"
    run = ui_server.get(f"/api/runs/{run_id}").json()
    assert run["status"] == "completed"
    screenshot(page, "run-completed")


def test_a_human_input_question_is_answered_from_the_page(page: Page, ui_server: ServerProcess) -> None:
    run_id = _start_from_launcher(page, ui_server.url, "paradigm-exp-5.3-ask")

    question = page.get_by_test_id("question")
    expect(question).to_be_visible(timeout=RUN_TIMEOUT_MS)
    # The server's open question is the one on the page, and its step shows as waiting.
    rows = ui_server.get(f"/api/runs/{run_id}/inputs").json()["questions"]
    assert len(rows) == 1
    prompt = rows[0]["question"]["prompt"] if isinstance(rows[0]["question"], dict) else rows[0]["question"]
    expect(question).to_contain_text(prompt.strip())
    expect(page.locator(f".react-flow__node[data-id='{rows[0]['flow_index']}'] .step-node")).to_have_class(re.compile("state-waiting"))
    screenshot(page, "run-question")

    question.get_by_role("textbox").fill("Hello from the browser")
    question.get_by_role("button", name="Answer").click()

    _wait_for_status(page, ui_server, run_id, "completed")
    expect(page.get_by_test_id("question")).to_have_count(0)
    expect(page.get_by_test_id("result")).to_contain_text("Hello from the browser")
    log = page.get_by_test_id("event-log")
    expect(log.locator(".event[data-type=question_asked]")).to_have_count(1)
    expect(log.locator(".event[data-type=question_answered]")).to_have_count(1)
    result = ui_server.get(f"/api/runs/{run_id}/result").json()
    assert "Hello from the browser" in json.dumps(result["final_concepts"])
    screenshot(page, "run-answered")


def test_runs_history_filters_by_plan_and_state(page: Page, ui_server: ServerProcess) -> None:
    # A run of each plan exists after the tests above; make sure of it when run alone.
    for plan_id in ("gold-investment-en", "paradigm-exp-5.3-ask"):
        if not _runs(ui_server, plan_id=plan_id):
            httpx.post(ui_server.url + "/api/runs", json={"plan_id": plan_id, "agent": "demo"}).raise_for_status()

    page.goto(ui_server.url + "/#/runs")
    table = page.get_by_test_id("runs-table")
    expect(table.locator("tbody tr")).to_have_count(len(_runs(ui_server)))

    page.get_by_label("Plan").select_option("gold-investment-en")
    expect(page).to_have_url(re.compile(r"plan_id=gold-investment-en"))
    gold_runs = _runs(ui_server, plan_id="gold-investment-en")
    expect(table.locator("tbody tr")).to_have_count(len(gold_runs))
    for run in gold_runs:
        row = table.locator(f"tr[data-run-id='{run['run_id']}']")
        expect(row).to_contain_text("gold-investment-en")
        expect(row).to_contain_text(run["status"].replace("_", " "))

    page.get_by_label("State").select_option("completed")
    completed = _runs(ui_server, plan_id="gold-investment-en", status="completed")
    expect(table.locator("tbody tr")).to_have_count(len(completed))
    row = table.locator("tbody tr").first
    expect(row.locator("td[data-label=Duration]")).not_to_have_text("—")
    expect(row.locator("td[data-label=Tokens]")).not_to_have_text("—")
    screenshot(page, "runs")

    row.get_by_role("link").click()
    expect(page.get_by_test_id("run-status")).to_have_attribute("data-status", "completed")


def _runs(server: ServerProcess, **params: str) -> list[dict]:
    body = server.get("/api/runs", params={**params, "limit": 100}).json()
    return body["runs"] if isinstance(body, dict) else body


@pytest.fixture
def proxy(ui_server: ServerProcess) -> Iterator[DroppingProxy]:
    instance = DroppingProxy(ui_server.port)
    yield instance
    instance.close()


def test_the_live_view_reconnects_after_a_dropped_connection_without_losing_events(
    page: Page, ui_server: ServerProcess, proxy: DroppingProxy, console_errors: ConsoleErrors
) -> None:
    # A cut stream is reported by Chromium as a failed request; that is the point of this test.
    console_errors.allow(r"net::ERR_")
    run_id = _start_from_launcher(page, proxy.url, "paradigm-exp-5.3-ask")
    expect(page.get_by_test_id("question")).to_be_visible(timeout=RUN_TIMEOUT_MS)
    stream = page.get_by_test_id("stream-state")
    expect(stream).to_contain_text("live")
    before = _event_seqs(page)
    assert before, "no events before the drop"

    page.evaluate(
        """() => {
            window.__streamStates = [];
            const el = document.querySelector("[data-testid=stream-state]");
            new MutationObserver(() => window.__streamStates.push(el.textContent.trim())).observe(el, {
                childList: true, subtree: true, characterData: true,
            });
        }"""
    )
    assert proxy.drop_all() >= 1
    # The page notices, reconnects by itself, and carries on from the last event it saw. Wait for
    # the new connection before answering: answered earlier, the run could finish first and the
    # reconnect would only replay the log to its end.
    page.wait_for_function(
        """() => {
            const states = window.__streamStates;
            const cut = states.indexOf("reconnecting");
            return cut >= 0 && states.slice(cut).includes("live");
        }""",
        timeout=20_000,
    )
    question = page.get_by_test_id("question")
    question.get_by_role("textbox").fill("after the drop")
    question.get_by_role("button", name="Answer").click()
    _wait_for_status(page, ui_server, run_id, "completed")
    expect(page.get_by_test_id("result")).to_contain_text("after the drop")
    # These events happened after the cut, so they came through a new stream connection.
    log = page.get_by_test_id("event-log")
    expect(log.locator(".event[data-type=question_answered]")).to_have_count(1)
    expect(log.locator(".event[data-type=run_completed]")).to_have_count(1)

    seqs = _event_seqs(page)
    assert seqs == sorted(set(seqs)), f"duplicate or out-of-order events after reconnecting: {seqs}"
    assert seqs[: len(before)] == before
    # Nothing missed: the page shows exactly the run's event log.
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"gap in events: {seqs}"
    assert proxy.connections >= 2
    seen_states = page.evaluate("window.__streamStates")
    assert "reconnecting" in seen_states and "live" in seen_states[seen_states.index("reconnecting"):], seen_states
    assert run_id


def test_a_run_can_be_stopped_and_resumed_from_its_page(page: Page, ui_server: ServerProcess) -> None:
    run_id = _start_from_launcher(page, ui_server.url, "paradigm-exp-5.3-ask")
    expect(page.get_by_test_id("question")).to_be_visible(timeout=RUN_TIMEOUT_MS)

    page.get_by_role("button", name="Stop").click()
    _wait_for_status(page, ui_server, run_id, "cancelled")
    expect(page.get_by_test_id("question")).to_have_count(0)
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)

    page.get_by_role("button", name="Resume").click()
    question = page.get_by_test_id("question")
    expect(question).to_be_visible(timeout=RUN_TIMEOUT_MS)
    question.get_by_role("textbox").fill("resumed answer")
    question.get_by_role("button", name="Answer").click()
    _wait_for_status(page, ui_server, run_id, "completed")
    expect(page.get_by_test_id("result")).to_contain_text("resumed answer")
    seqs = _event_seqs(page)
    assert seqs == sorted(set(seqs)), f"events shown twice after resuming: {seqs}"
    log = page.get_by_test_id("event-log")
    expect(log.locator(".event[data-type=run_cancelled]")).to_have_count(1)
    screenshot(page, "run-resumed")


def test_inputs_typed_in_the_launcher_reach_the_run(page: Page, ui_server: ServerProcess) -> None:
    # idea-to-tagline is the example plan the server deploys into an empty data dir.
    plan = ui_server.get("/api/plans/idea-to-tagline").json()
    assert "{topic}" in plan["inputs"], plan
    page.goto(f"{ui_server.url}/#/plans/idea-to-tagline/run")
    page.get_by_label("{topic}").fill("solar kettles")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url(RUN_URL)
    run_id = RUN_URL.search(page.url).group(1)  # type: ignore[union-attr]
    _wait_for_status(page, ui_server, run_id, "completed")

    assert ui_server.get(f"/api/runs/{run_id}").json()["inputs"] == {"{topic}": "solar kettles"}
    # The first LLM call's prompt, shown in its step's details, carries the topic.
    first_call = page.get_by_test_id("event-log").locator(".event[data-type=llm_call] .flow-index").first.inner_text()
    page.locator(f".react-flow__node[data-id='{first_call}']").click()
    details = page.get_by_test_id("step-details")
    details.locator("summary", has_text="Call 1").click()
    expect(details.locator(".llm-call")).to_contain_text("solar kettles")


def test_artifacts_a_run_wrote_are_listed_and_downloadable(page: Page, ui_server: ServerProcess) -> None:
    deployed = httpx.post(
        ui_server.url + "/api/plans/deploy-file",
        files={"plan": ("derivation.zip", package_bytes("derivation-iter8"))},
        timeout=30,
    )
    assert deployed.status_code < 300, deployed.text
    started = httpx.post(ui_server.url + "/api/runs", json={"plan_id": "derivation-iter8", "agent": "demo"})
    assert started.status_code < 300, started.text
    run_id = started.json()["run_id"]

    page.goto(f"{ui_server.url}/#/runs/{run_id}")
    _wait_for_status(page, ui_server, run_id, "completed")
    artifacts = ui_server.get(f"/api/runs/{run_id}/artifacts").json()["artifacts"]
    assert artifacts, "derivation-iter8 writes files; the server lists none"
    panel = page.get_by_test_id("artifacts")
    for artifact in artifacts:
        expect(panel.get_by_role("button", name=artifact["path"], exact=True)).to_be_visible()

    chosen = max(artifacts, key=lambda a: a["size"])["path"]
    with page.expect_download() as download_info:
        panel.get_by_role("button", name=chosen, exact=True).click()
    download = download_info.value
    assert download.suggested_filename == chosen.rsplit("/", 1)[-1]
    with open(download.path(), "rb") as saved:
        assert saved.read() == ui_server.get(f"/api/runs/{run_id}/artifacts/{chosen}").content
    expect(page.locator(".step-node.state-completed").first).to_be_visible()
    screenshot(page, "run-artifacts")
