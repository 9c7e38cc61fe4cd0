"""The storage plugin on SQLite and on the real PostgreSQL: migrations, plans, runs, claiming."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from normcode_core.storage.base import IdempotencyKeyExists, RunRecord, StorageUnavailable
from normcode_core.storage.sql import SqlStorage


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'server.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def storage(storage_url: str) -> SqlStorage:
    storage = SqlStorage(storage_url)
    storage.migrate()
    yield storage
    storage.close()


def run(run_id: str, plan_id: str = "p", **fields: object) -> RunRecord:
    return RunRecord(run_id=run_id, plan_id=plan_id, plan_version="1.0", **fields)


def test_migrations_create_the_schema_and_are_idempotent(storage_url: str) -> None:
    storage = SqlStorage(storage_url)
    assert "runs" not in sa.inspect(storage.engine).get_table_names()
    assert storage.schema_current() is False
    storage.migrate()
    assert storage.schema_current() is True
    storage.add_plan_version("p", "1.0", content_hash="h1", name="Plan")
    storage.migrate()  # running again on start never loses data
    assert storage.get_plan("p").name == "Plan"
    tables = set(sa.inspect(storage.engine).get_table_names())
    assert {"plans", "plan_versions", "runs", "alembic_version"} <= tables
    storage.close()


def test_sqlite_uses_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    storage = SqlStorage(f"sqlite:///{tmp_path / 'server.db'}")
    with storage.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    storage.close()


def test_plan_versions(storage: SqlStorage) -> None:
    assert storage.count_plans() == 0 and storage.get_plan("p") is None
    storage.add_plan_version("p", "1.0", content_hash="h1", name="Plan", description="d", manifest={"version": "1.0"}, size_bytes=10)
    storage.add_plan_version("p", "1.1", content_hash="h2", name="Plan 2", manifest={"version": "1.1"})
    storage.add_plan_version("q", "1", content_hash="h3")

    plan = storage.get_plan("p")
    assert plan.latest_version == "1.1" and plan.name == "Plan 2"
    assert storage.get_plan_version("p").content_hash == "h2"
    assert storage.get_plan_version("p", "1.0").size_bytes == 10
    assert storage.get_plan_version("p", "9") is None and storage.get_plan_version("zz") is None
    assert [v.version for v in storage.list_plan_versions("p")] == ["1.1", "1.0"]
    assert [p.plan_id for p in storage.list_plans()] == ["p", "q"]
    assert storage.count_plans() == 2

    with pytest.raises(ValueError, match="already has version"):
        storage.add_plan_version("p", "1.0", content_hash="other")
    assert storage.get_plan_version("p", "1.0").content_hash == "h1"
    storage.add_plan_version("p", "1.0", content_hash="h1b", replace=True)
    assert storage.get_plan_version("p", "1.0").content_hash == "h1b"
    assert storage.get_plan("p").latest_version == "1.0"

    assert storage.delete_plan("p") is True
    assert storage.delete_plan("p") is False
    assert storage.get_plan("p") is None and storage.list_plan_versions("p") == []
    assert storage.count_plans() == 1


def test_runs_crud_filters_and_order(storage: SqlStorage) -> None:
    base = datetime(2025, 1, 1, tzinfo=timezone.utc)
    for index in range(5):
        storage.create_run(run(f"r{index}", plan_id="a" if index % 2 == 0 else "b", created_at=base + timedelta(seconds=index)))
    assert [r.run_id for r in storage.list_runs()] == ["r4", "r3", "r2", "r1", "r0"]
    assert [r.run_id for r in storage.list_runs(plan_id="a")] == ["r4", "r2", "r0"]
    assert [r.run_id for r in storage.list_runs(limit=2, offset=1)] == ["r3", "r2"]
    assert storage.count_runs() == 5 and storage.count_runs(plan_id="b") == 2

    updated = storage.update_run("r1", status="completed", progress_json={"completed_count": 3}, error=None,
                                 finished_at=base + timedelta(minutes=1))
    assert updated.status == "completed" and updated.progress_json == '{"completed_count": 3}'
    assert updated.finished_at == base + timedelta(minutes=1)
    fetched = storage.get_run("r1")
    assert fetched.finished_at.tzinfo is not None and fetched.created_at == base + timedelta(seconds=1)
    assert [r.run_id for r in storage.list_runs(status="completed")] == ["r1"]
    assert storage.count_runs_by_status() == {"queued": 4, "completed": 1}
    assert storage.get_run("nope") is None

    with pytest.raises(KeyError):
        storage.update_run("nope", status="failed")
    with pytest.raises(ValueError, match="unknown run status"):
        storage.update_run("r1", status="done")
    with pytest.raises(TypeError, match="unknown run fields: colour"):
        storage.update_run("r1", colour="red")


def test_idempotency_keys_are_unique(storage: SqlStorage) -> None:
    first = storage.create_run(run("r1", idempotency_key="key-1"))
    storage.create_run(run("r2"))
    storage.create_run(run("r3"))  # several runs without a key are fine
    with pytest.raises(IdempotencyKeyExists) as caught:
        storage.create_run(run("r4", idempotency_key="key-1"))
    assert caught.value.existing.run_id == first.run_id
    assert storage.find_run_by_idempotency_key("key-1").run_id == "r1"
    assert storage.find_run_by_idempotency_key("other") is None
    assert storage.get_run("r4") is None


def test_claim_takes_the_oldest_queued_run(storage: SqlStorage) -> None:
    base = datetime(2025, 1, 1, tzinfo=timezone.utc)
    storage.create_run(run("late", created_at=base + timedelta(seconds=2)))
    storage.create_run(run("early", created_at=base))
    storage.create_run(run("done", created_at=base - timedelta(seconds=1), status="completed"))

    claimed = storage.claim_next_queued("worker-1", lease_s=30)
    assert claimed.run_id == "early" and claimed.status == "running" and claimed.owner == "worker-1"
    assert claimed.lease_until > datetime.now(timezone.utc) + timedelta(seconds=20)
    assert claimed.started_at is not None
    assert storage.claim_next_queued("worker-2", lease_s=30).run_id == "late"
    assert storage.claim_next_queued("worker-2", lease_s=30) is None


def test_concurrent_claims_never_hand_out_a_run_twice(storage: SqlStorage) -> None:
    base = datetime(2025, 1, 1, tzinfo=timezone.utc)
    for index in range(40):
        storage.create_run(run(f"r{index:02d}", created_at=base + timedelta(milliseconds=index)))
    claims: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        mine = claims.setdefault(name, [])
        try:
            while (claimed := storage.claim_next_queued(name, lease_s=30)) is not None:
                mine.append(claimed.run_id)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    everything = [run_id for ids in claims.values() for run_id in ids]
    assert sorted(everything) == [f"r{index:02d}" for index in range(40)]  # each exactly once
    assert storage.count_runs_by_status() == {"running": 40}


def test_unreachable_database_raises_storage_unavailable_without_password() -> None:
    storage = SqlStorage("postgresql+psycopg://postgres:s3cretpw@127.0.0.1:1/test")
    with pytest.raises(StorageUnavailable) as caught:
        storage.ping()
    assert "s3cretpw" not in str(caught.value)
    assert str(caught.value).startswith("postgresql unavailable:")
    assert "s3cretpw" not in storage.describe()
    storage.close()


def test_schema_head_constant_matches_the_migrations_directory() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from normcode_core.storage.sql import MIGRATIONS_DIR, SCHEMA_HEAD

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_heads() == [SCHEMA_HEAD]


def test_models_and_migrations_describe_the_same_schema(storage_url: str) -> None:
    """New databases get their tables from the models; existing ones from the migrations: they must agree."""
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlmodel import SQLModel

    from normcode_core.storage.sql import TABLES, _alembic_config

    storage = SqlStorage(storage_url)
    with storage.engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "head")  # the migrations path, explicitly
    assert storage.schema_current() is True
    ours = {table.name for table in TABLES}
    metadata = sa.MetaData()
    for table in TABLES:
        table.to_metadata(metadata)
    with storage.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = [d for d in compare_metadata(context, metadata) if _table_of(d) in ours]
    assert differences == []
    assert SQLModel.metadata.tables["runs"] is TABLES[2]
    storage.close()


def _table_of(difference: object) -> str | None:
    item = difference[0] if isinstance(difference, list) else difference
    for part in item[1:] if isinstance(item, tuple) else ():
        if isinstance(part, sa.Table):
            return part.name
        if isinstance(part, str):
            return part if part in ("plans", "plan_versions", "runs") else None
        if hasattr(part, "table"):
            return part.table.name
    return None


def test_a_fresh_database_is_created_without_alembic_and_stamped(storage_url: str) -> None:
    storage = SqlStorage(storage_url)
    storage.migrate()
    with storage.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == ["0001_initial"]
    storage.migrate()  # alembic agrees there is nothing to do
    storage.add_plan_version("p", "1", content_hash="h")
    assert storage.count_plans() == 1
    storage.close()


def test_a_schema_from_an_unknown_revision_is_reported_and_left_alone(storage_url: str) -> None:
    storage = SqlStorage(storage_url)
    storage.migrate()
    storage.add_plan_version("kept", "1", content_hash="h")
    with storage.engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = 'an_older_revision'"))
    assert storage.schema_current() is False
    with pytest.raises(StorageUnavailable, match="schema cannot be migrated: Can't locate revision .*an_older_revision"):
        storage.migrate()  # alembic refuses a revision it does not know; nothing is touched
    with storage.engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = :head"), {"head": "0001_initial"})
    assert storage.schema_current() is True
    assert storage.get_plan("kept") is not None
    storage.close()
