"""The plans API over real HTTP: deploy, list, inspect, files, graph, delete, and every bad package."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

import httpx

from api.conftest import Api, ApiFactory, example_plan, fixture_plan
from api.helpers import package_bytes


def zip_of(files: dict[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def plan_files(plan_dir: Path) -> dict[str, bytes]:
    return {p.relative_to(plan_dir).as_posix(): p.read_bytes() for p in plan_dir.rglob("*") if p.is_file()}


def assert_rejected(api: Api, data: bytes, status: int, *needles: str) -> list[str]:
    response = api.http.post("/api/plans/deploy-file", files={"plan": ("plan.zip", data, "application/zip")})
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    problems = body["detail"]["problems"] if isinstance(body["detail"], dict) else [body["detail"]]
    for needle in needles:
        assert any(needle in problem for problem in problems), (needle, problems)
    return problems


def assert_nothing_stored(api: Api, data_dir: Path) -> None:
    assert api.http.get("/api/plans").json() == []
    plans_dir = data_dir / "plans"
    leftovers = [p for p in plans_dir.rglob("*") if not p.name.startswith(".") and ".staging" not in p.parts]
    assert leftovers == []
    assert not list((plans_dir / ".staging").glob("*")) if (plans_dir / ".staging").exists() else True


def test_deploy_list_get_graph_files_delete(api: Api, data_dir: Path) -> None:
    deployed = api.deploy(fixture_plan("gold-investment-en"), top_folder="gold-investment-en")
    assert deployed["status"] == "deployed"
    assert deployed["plan_id"] == deployed["plan_name"] == "gold-investment-en"
    assert deployed["version"] == "1" and not deployed["already_deployed"]
    assert str(data_dir) not in json.dumps(deployed)
    assert (data_dir / "plans" / "gold-investment-en" / "1" / "manifest.json").is_file()

    listed = api.http.get("/api/plans").json()
    assert [p["id"] for p in listed] == ["gold-investment-en"]
    assert set(listed[0]) >= {"id", "name", "description", "inputs", "outputs"}  # upstream's PlanInfo
    assert "{simulated data: price data}" in listed[0]["inputs"]

    detail = api.http.get("/api/plans/gold-investment-en").json()
    assert detail["version"] == "1" and detail["content_hash"] == deployed["content_hash"]
    assert str(data_dir) not in json.dumps(detail)

    graph = api.http.get("/api/plans/gold-investment-en/graph").json()
    source = fixture_plan("gold-investment-en")
    assert graph["concepts"] == json.loads((source / "concept_repo.json").read_text())
    assert graph["inferences"] == json.loads((source / "inference_repo.json").read_text())
    assert "paradigms" in graph["provisions"]

    script = "provisions/scripts/technical_analysis.py"
    served = api.http.get(f"/api/plans/gold-investment-en/files/{script}").json()
    assert served["content"] == (source / script).read_text() and served["size"] == (source / script).stat().st_size

    # Redeploying the same content is not a new version; changed content is, and both stay.
    assert api.deploy(fixture_plan("gold-investment-en"))["already_deployed"] is True
    changed = plan_files(source)
    manifest = json.loads(changed["manifest.json"])
    manifest["description"] = "second version"
    changed["manifest.json"] = json.dumps(manifest).encode()
    second = api.deploy_bytes(zip_of(changed))
    assert second["version"] == "2" and second["content_hash"] != deployed["content_hash"]
    detail = api.http.get("/api/plans/gold-investment-en").json()
    assert detail["version"] == "2" and [v["version"] for v in detail["versions"]] == ["2", "1"]
    assert api.http.get("/api/plans/gold-investment-en?version=1").json()["description"] != "second version"

    deleted = api.http.delete("/api/plans/gold-investment-en")
    assert deleted.status_code == 200 and deleted.json() == {"status": "undeployed", "plan_id": "gold-investment-en"}
    assert api.http.get("/api/plans/gold-investment-en").status_code == 404
    assert not (data_dir / "plans" / "gold-investment-en").exists()
    assert (data_dir / "server.db").is_file()


def test_requests_cannot_leave_the_plans_directory(api: Api, data_dir: Path) -> None:
    api.deploy(example_plan())
    (data_dir / "secret.txt").write_text("top secret")
    for path in (
        "/api/plans/idea-to-tagline/files/%2e%2e/%2e%2e/%2e%2e/secret.txt",
        "/api/plans/idea-to-tagline/files/..%2f..%2f..%2fsecret.txt",
        "/api/plans/idea-to-tagline/files//etc/passwd",
        "/api/plans/idea-to-tagline/files/provisions",
        "/api/plans/%2e%2e/files/secret.txt",
        "/api/plans/idea-to-tagline/files/manifest.json?version=..",
    ):
        response = api.http.get(path)
        assert response.status_code == 404, (path, response.text)
        assert set(response.json()) == {"error", "detail"}
        assert "top secret" not in response.text
    for path in ("/api/plans/%2e%2e", "/api/plans/.", "/api/plans/%2e%2e%2f%2e%2e"):
        response = api.http.delete(path)
        assert response.status_code in (404, 405), (path, response.text)
    assert (data_dir / "secret.txt").read_text() == "top secret"
    assert (data_dir / "plans" / "idea-to-tagline").is_dir()
    assert (data_dir / "server.db").is_file()


def test_not_a_zip(api: Api, data_dir: Path) -> None:
    assert_rejected(api, b"this is not a zip at all", 400, "not a zip")
    assert_nothing_stored(api, data_dir)


def test_zip_slip_and_absolute_names(api: Api, data_dir: Path) -> None:
    files = plan_files(example_plan()) | {"../../escaped.txt": b"x", "/tmp/absolute.txt": b"y"}
    problems = assert_rejected(api, zip_of(files), 400, "escapes the package")
    assert len(problems) == 2
    assert not (data_dir / "escaped.txt").exists() and not (data_dir.parent / "escaped.txt").exists()
    assert_nothing_stored(api, data_dir)


def test_symlinks(api: Api, data_dir: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in plan_files(example_plan()).items():
            archive.writestr(name, content)
        link = zipfile.ZipInfo("provisions/prompts/link.md")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    assert_rejected(api, buffer.getvalue(), 400, "symbolic links")
    assert_nothing_stored(api, data_dir)


def test_size_and_file_count_limits(api_factory: ApiFactory, data_dir: Path) -> None:
    api = api_factory(data_dir, NORMCODE_PLANS__MAX_PACKAGE_BYTES="200000", NORMCODE_PLANS__MAX_FILES="20")
    many = plan_files(example_plan()) | {f"provisions/extra/{i}.txt": b"x" for i in range(30)}
    assert_rejected(api, zip_of(many), 413, "at most 20")
    bomb = plan_files(example_plan()) | {"provisions/zeros.bin": b"\0" * 5_000_000}  # ~5 KB compressed
    assert_rejected(api, zip_of(bomb), 413, "unpacks to")
    too_big_upload = api.http.post(
        "/api/plans/deploy-file", files={"plan": ("plan.zip", b"\0" * 2_000_000, "application/zip")}
    )
    assert too_big_upload.status_code == 413 and too_big_upload.json()["error"] == "package_too_large"
    assert_nothing_stored(api, data_dir)


def test_bad_json_and_invalid_plans(api: Api, data_dir: Path) -> None:
    broken = plan_files(example_plan()) | {"concept_repo.json": b'[{"concept_name": ', "manifest.json": b"{}"}
    assert_rejected(api, zip_of(broken), 422, "concept_repo.json: invalid JSON")

    invalid = plan_files(example_plan())
    inferences = json.loads(invalid["inference_repo.json"])
    inferences[0]["value_concepts"] = ["{no such concept}"]
    inferences[1]["flow_info"]["flow_index"] = inferences[2]["flow_info"]["flow_index"]
    invalid["inference_repo.json"] = json.dumps(inferences).encode()
    problems = assert_rejected(api, zip_of(invalid), 422, "unknown concept '{no such concept}'", "duplicate flow index")
    assert len(problems) >= 2

    no_manifest = {k: v for k, v in plan_files(example_plan()).items() if k != "manifest.json"}
    assert_rejected(api, zip_of(no_manifest), 422, "manifest.json not found")
    assert_nothing_stored(api, data_dir)


def test_unsafe_plan_ids(api: Api, data_dir: Path) -> None:
    for plan_id in ("../../etc", "gold investment", ".hidden", "a/b"):
        files = plan_files(example_plan())
        manifest = json.loads(files["manifest.json"])
        manifest["name"] = plan_id
        files["manifest.json"] = json.dumps(manifest).encode()
        assert_rejected(api, zip_of(files), 422, "not a safe name")
    assert_nothing_stored(api, data_dir)


def test_client_mistakes_are_4xx_json(api: Api) -> None:
    checks = [
        api.http.post("/api/plans/deploy-file", content=b"raw", headers={"content-type": "application/zip"}),
        api.http.post("/api/plans/deploy-file", files={"other": ("x.zip", b"x")}),
        api.http.post("/api/plans/deploy-file", content=b"--broken", headers={"content-type": "multipart/form-data; boundary=zzz"}),
        api.http.get("/api/plans/nope"),
        api.http.get("/api/plans/nope/graph"),
        api.http.get("/api/plans/nope/files/manifest.json"),
        api.http.delete("/api/plans/nope"),
    ]
    for response in checks:
        assert 400 <= response.status_code < 500, response.text
        assert set(response.json()) == {"error", "detail"}


def test_upstream_packer_layout_with_top_folder(api: Api) -> None:
    """upstream's pack.py writes manifest.json at the root; zipping the folder adds one level: both deploy."""
    assert api.deploy(example_plan(), top_folder="idea-to-tagline")["plan_id"] == "idea-to-tagline"
    data = package_bytes(fixture_plan("add-combination"))
    assert api.deploy_bytes(data)["plan_id"] == "add-combination"
    assert httpx.get(api.server.url + "/api/plans/add-combination/files/manifest.json").status_code == 200
