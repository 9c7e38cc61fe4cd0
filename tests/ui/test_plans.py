"""Plans page and plan graph in a real browser against the real server."""

from __future__ import annotations

import io
import json
import zipfile

import httpx
from playwright.sync_api import Page, expect

from tests.conftest import ServerProcess
from tests.ui.conftest import ConsoleErrors
from tests.ui.helpers import FIXTURE_PLANS, drop_file, package_bytes, screenshot


def test_dropping_a_package_deploys_it_and_lists_its_manifest(page: Page, ui_server: ServerProcess) -> None:
    manifest = json.loads((FIXTURE_PLANS / "paradigm-exp-5.3-ask" / "manifest.json").read_text())
    page.goto(ui_server.url + "/")
    expect(page.get_by_role("heading", name="Plans", exact=True)).to_be_visible()

    drop_file(page, "[data-testid=dropzone]", "paradigm-exp-5.3-ask.zip", package_bytes("paradigm-exp-5.3-ask"))

    expect(page.get_by_role("status")).to_contain_text("Deployed paradigm-exp-5.3-ask")
    card = page.locator("[data-testid=plan-card]", has_text=manifest["name"])
    expect(card).to_be_visible()
    expect(card).to_contain_text(f"v{manifest['version']}")
    expect(card).to_contain_text(manifest["description"])
    for name in [*manifest["inputs"], *manifest["outputs"]]:
        expect(card).to_contain_text(name)
    # The server really has it.
    listed = ui_server.get("/api/plans").json()
    rows = listed["plans"] if isinstance(listed, dict) else listed
    assert manifest["name"] in json.dumps(rows)
    screenshot(page, "plans")


def _broken_package() -> bytes:
    """A plan whose manifest names repos that are missing or not JSON: several problems at once."""
    manifest = json.loads((FIXTURE_PLANS / "add-combination" / "manifest.json").read_text())
    manifest["name"] = "broken-plan"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        archive.writestr("concept_repo.json", "{ this is not json")
        # inference_repo.json is missing altogether.
    return buffer.getvalue()


def test_a_rejected_package_shows_every_problem_the_server_found(
    page: Page, ui_server: ServerProcess, console_errors: ConsoleErrors
) -> None:
    content = _broken_package()
    # What the server says about this package, asked directly: the page must show all of it.
    answer = httpx.post(ui_server.url + "/api/plans/deploy-file", files={"plan": ("broken.zip", content)})
    assert 400 <= answer.status_code < 500, answer.text
    detail = answer.json()["detail"]
    problems = detail["problems"] if isinstance(detail, dict) else detail
    assert isinstance(problems, list) and len(problems) >= 2, detail
    console_errors.allow(rf"status of {answer.status_code}")

    page.goto(ui_server.url + "/")
    page.set_input_files("[data-testid=deploy-input]", files=[{"name": "broken.zip", "mimeType": "application/zip", "buffer": content}])

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Deploy failed")
    items = alert.locator("li")
    expect(items).to_have_count(len(problems))
    for problem in problems:
        expect(alert).to_contain_text(problem)
    expect(page.locator("[data-testid=plan-card]", has_text="broken-plan")).to_have_count(0)
    screenshot(page, "plans-deploy-rejected")


def test_a_non_zip_file_is_refused_with_a_clear_message(page: Page, ui_server: ServerProcess) -> None:
    page.goto(ui_server.url + "/")
    drop_file(page, "[data-testid=dropzone]", "notes.txt", b"hello")
    expect(page.get_by_role("alert")).to_contain_text("notes.txt is not a .zip plan package")


def test_plan_graph_draws_every_inference_and_shows_details_on_click(page: Page, ui_server: ServerProcess) -> None:
    response = httpx.post(
        ui_server.url + "/api/plans/deploy-file",
        files={"plan": ("gold.zip", package_bytes("gold-investment-en"))},
    )
    assert response.status_code < 300, response.text
    inferences = json.loads((FIXTURE_PLANS / "gold-investment-en" / "inference_repo.json").read_text())

    page.goto(ui_server.url + "/#/plans/gold-investment-en")
    nodes = page.locator(".react-flow__node")
    expect(nodes).to_have_count(len(inferences))
    # One edge per step except the root: the inference tree.
    expect(page.locator(".react-flow__edge")).to_have_count(len(inferences) - 1)

    target = next(i for i in inferences if i["flow_info"]["flow_index"] == "1.6")
    page.locator(".react-flow__node[data-id='1.6']").click()
    details = page.get_by_test_id("step-details")
    expect(details).to_contain_text("Step 1.6")
    expect(details).to_contain_text(target["inference_sequence"])
    expect(details).to_contain_text(target["concept_to_infer"])
    for value in target["value_concepts"]:
        expect(details).to_contain_text(value)
    screenshot(page, "plan-graph")

    # The same details are reachable without a pointer: a focused node opens with Enter ...
    page.locator(".react-flow__node[data-id='1.3']").focus()
    page.keyboard.press("Enter")
    expect(details).to_contain_text("Step 1.3")
    # ... and so does the step list.
    page.get_by_text("Steps (20)").click()
    step_button = page.locator(".step-link", has_text="1.2 ")
    step_button.focus()
    page.keyboard.press("Enter")
    expect(details).to_contain_text("Step 1.2")


def test_deleting_a_plan_removes_it_from_the_list(page: Page, ui_server: ServerProcess) -> None:
    response = httpx.post(
        ui_server.url + "/api/plans/deploy-file",
        files={"plan": ("add.zip", package_bytes("add-combination"))},
    )
    assert response.status_code < 300, response.text
    page.goto(ui_server.url + "/")
    card = page.locator("[data-testid=plan-card]", has_text="add-combination")
    expect(card).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    card.get_by_role("button", name="Delete").click()
    expect(card).to_have_count(0)
    assert ui_server.get("/api/plans/add-combination").status_code == 404
