"""Storage on SQLModel: SQLite (WAL, busy timeout) by default, PostgreSQL for `postgresql+psycopg://`."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, SQLModel, col, func, select

from normcode_core.storage.base import (
    RUN_STATES,
    IdempotencyKeyExists,
    PlanRecord,
    PlanVersionRecord,
    RunRecord,
    StorageUnavailable,
    utcnow,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The newest migration's revision. Knowing it lets a start-up with a current schema skip importing
# alembic (a noticeable share of start-up time); a test checks it matches the migrations directory.
SCHEMA_HEAD = "0001_initial"
SQLITE_BUSY_TIMEOUT_MS = 10_000
CONNECT_TIMEOUT_S = 3
# Any stable 64-bit number: serialises concurrent migrations from several server processes.
_MIGRATION_LOCK_ID = 0x4E4F524D434F4445
_RUN_COLUMNS = frozenset(RunRecord.model_fields)
TABLES = [PlanRecord.__table__, PlanVersionRecord.__table__, RunRecord.__table__]  # type: ignore[attr-defined]


class SqlStorage:
    """The Storage protocol on one SQLAlchemy engine. Every method is one short transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = "postgresql" if url.startswith("postgresql") else "sqlite"
        self.engine = _create_engine(url)

    # -- lifecycle --------------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the newest alembic revision (no-op when it already is).

        An empty database gets the tables straight from the models, stamped with SCHEMA_HEAD (the
        recipe alembic documents for new databases; a test checks models and migrations agree), so
        a first start does not pay for importing alembic. Existing databases go through alembic.
        """
        if self.schema_current():
            return
        if self._create_if_empty():
            return
        from alembic import command
        from alembic.util import CommandError

        try:
            with self.engine.begin() as connection:
                if self.dialect == "postgresql":
                    connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
                config = _alembic_config(connection)
                command.upgrade(config, "head")
        except SQLAlchemyError as exc:
            raise StorageUnavailable(_describe(exc, self.dialect)) from exc
        except CommandError as exc:  # e.g. a revision written by a newer server version
            raise StorageUnavailable(f"{self.dialect} schema cannot be migrated: {exc}") from exc

    def schema_current(self) -> bool:
        """True when the database is at SCHEMA_HEAD (read with plain SQL, without alembic)."""
        try:
            with self.engine.connect() as connection:
                if not sa.inspect(connection).has_table("alembic_version"):
                    return False
                revisions = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
        except SQLAlchemyError as exc:
            raise StorageUnavailable(_describe(exc, self.dialect)) from exc
        return revisions == [SCHEMA_HEAD]

    def _create_if_empty(self) -> bool:
        try:
            with self.engine.begin() as connection:
                if self.dialect == "postgresql":
                    connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
                if sa.inspect(connection).get_table_names():
                    return False
                SQLModel.metadata.create_all(connection, tables=TABLES)
                version = sa.Table(
                    "alembic_version",
                    sa.MetaData(),
                    sa.Column("version_num", sa.String(32), primary_key=True),
                )
                version.create(connection)
                connection.execute(version.insert().values(version_num=SCHEMA_HEAD))
        except SQLAlchemyError as exc:
            raise StorageUnavailable(_describe(exc, self.dialect)) from exc
        return True

    def ping(self) -> None:
        try:
            with self.engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise StorageUnavailable(_describe(exc, self.dialect)) from exc

    def close(self) -> None:
        self.engine.dispose()

    def describe(self) -> str:
        """The URL without its password (safe to show)."""
        return sa.make_url(self.url).render_as_string(hide_password=True)

    # -- plans ------------------------------------------------------------------------------
    def add_plan_version(
        self,
        plan_id: str,
        version: str,
        *,
        content_hash: str,
        name: str = "",
        description: str = "",
        manifest: dict[str, Any] | None = None,
        size_bytes: int = 0,
        replace: bool = False,
    ) -> PlanVersionRecord:
        """Record a deployed version and make it the plan's latest. Raises ValueError if it exists
        (unless `replace`)."""
        now = utcnow()
        with self._session() as session:
            existing = session.get(PlanVersionRecord, (plan_id, version))
            if existing is not None and not replace:
                raise ValueError(f"plan {plan_id!r} already has version {version!r}")
            record = existing or PlanVersionRecord(plan_id=plan_id, version=version, content_hash=content_hash)
            record.content_hash = content_hash
            record.manifest_json = json.dumps(manifest or {}, ensure_ascii=False)
            record.size_bytes = size_bytes
            record.deployed_at = now
            session.add(record)
            plan = session.get(PlanRecord, plan_id)
            if plan is None:
                plan = PlanRecord(plan_id=plan_id, latest_version=version, created_at=now)
            plan.name, plan.description = name, description
            plan.latest_version, plan.updated_at = version, now
            session.add(plan)
            session.commit()
            session.refresh(record)
            return record

    def get_plan(self, plan_id: str) -> PlanRecord | None:
        with self._session() as session:
            return session.get(PlanRecord, plan_id)

    def get_plan_version(self, plan_id: str, version: str | None = None) -> PlanVersionRecord | None:
        """One version of a plan; `None` means its latest."""
        with self._session() as session:
            if version is None:
                plan = session.get(PlanRecord, plan_id)
                if plan is None:
                    return None
                version = plan.latest_version
            return session.get(PlanVersionRecord, (plan_id, version))

    def list_plans(self) -> list[PlanRecord]:
        with self._session() as session:
            return list(session.exec(select(PlanRecord).order_by(col(PlanRecord.plan_id))))

    def list_plan_versions(self, plan_id: str) -> list[PlanVersionRecord]:
        """Versions of a plan, newest deployment first."""
        with self._session() as session:
            statement = (
                select(PlanVersionRecord)
                .where(PlanVersionRecord.plan_id == plan_id)
                .order_by(col(PlanVersionRecord.deployed_at).desc(), col(PlanVersionRecord.version).desc())
            )
            return list(session.exec(statement))

    def delete_plan(self, plan_id: str) -> bool:
        """Remove a plan and its versions from the index (runs keep their history). False if unknown."""
        with self._session() as session:
            plan = session.get(PlanRecord, plan_id)
            if plan is None:
                return False
            session.execute(sa.delete(PlanVersionRecord).where(col(PlanVersionRecord.plan_id) == plan_id))
            session.delete(plan)
            session.commit()
            return True

    def count_plans(self) -> int:
        with self._session() as session:
            return session.exec(select(func.count()).select_from(PlanRecord)).one()

    # -- runs -------------------------------------------------------------------------------
    def create_run(self, run: RunRecord) -> RunRecord:
        """Insert a run. Raises IdempotencyKeyExists when its idempotency key is already taken."""
        _check_status(run.status)
        # A Core INSERT of the fully built record (every column has its value already): no ORM
        # unit of work and no read-back (this is on the path of every run).
        try:
            with self.engine.begin() as connection:
                connection.execute(sa.insert(RunRecord.__table__).values(**run.model_dump()))
        except IntegrityError:
            if run.idempotency_key:
                existing = self.find_run_by_idempotency_key(run.idempotency_key)
                if existing is not None:
                    raise IdempotencyKeyExists(existing) from None
            raise
        return run

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._session() as session:
            return session.get(RunRecord, run_id)

    def list_runs(
        self, plan_id: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[RunRecord]:
        """Runs newest first, optionally of one plan and/or in one state."""
        statement = _filtered(select(RunRecord), plan_id, status)
        statement = statement.order_by(col(RunRecord.created_at).desc(), col(RunRecord.run_id).desc())
        with self._session() as session:
            return list(session.exec(statement.offset(max(offset, 0)).limit(max(limit, 0))))

    def count_runs(self, plan_id: str | None = None, status: str | None = None) -> int:
        statement = _filtered(select(func.count()).select_from(RunRecord), plan_id, status)
        with self._session() as session:
            return session.exec(statement).one()

    def update_run(self, run_id: str, **fields: Any) -> RunRecord:
        """Set fields of a run; dict/list values of `*_json` fields are serialised. KeyError if unknown."""
        unknown = set(fields) - _RUN_COLUMNS
        if unknown:
            raise TypeError(f"unknown run fields: {', '.join(sorted(unknown))}")
        if "status" in fields:
            _check_status(fields["status"])
        with self._session() as session:
            run = session.get(RunRecord, run_id)
            if run is None:
                raise KeyError(run_id)
            for name, value in fields.items():
                if name.endswith("_json") and not isinstance(value, str):
                    value = json.dumps(value, ensure_ascii=False)
                setattr(run, name, value)
            session.add(run)
            session.commit()
            session.refresh(run)
            return run

    def update_run_if(self, run_id: str, expected: dict[str, Any], **fields: Any) -> RunRecord | None:
        """Compare-and-set: set `fields` only if every `expected` column still has its value (a tuple
        or list means "one of"). The updated run, or None when it changed meanwhile (or is unknown).
        Lets several workers change run states without locks (claiming, cancelling, lease renewal)."""
        unknown = (set(fields) | set(expected)) - _RUN_COLUMNS
        if unknown:
            raise TypeError(f"unknown run fields: {', '.join(sorted(unknown))}")
        if "status" in fields:
            _check_status(fields["status"])
        values = {
            name: json.dumps(value, ensure_ascii=False) if name.endswith("_json") and not isinstance(value, str) else value
            for name, value in fields.items()
        }
        table = RunRecord.__table__
        statement = sa.update(table).where(table.c.run_id == run_id)
        for name, value in expected.items():
            column = table.c[name]
            if isinstance(value, (tuple, list, set, frozenset)):
                statement = statement.where(column.in_(list(value)))
            elif value is None:
                statement = statement.where(column.is_(None))
            else:
                statement = statement.where(column == value)
        # Core UPDATE ... RETURNING: one statement, no ORM unit of work (this is the hot path of runs).
        try:
            with self.engine.begin() as connection:
                row = connection.execute(statement.values(**values).returning(*table.c)).first()
        except SQLAlchemyError as exc:
            raise StorageUnavailable(_describe(exc, self.dialect)) from exc
        return RunRecord(**row._mapping) if row is not None else None

    def find_run_by_idempotency_key(self, key: str) -> RunRecord | None:
        with self._session() as session:
            return session.exec(select(RunRecord).where(RunRecord.idempotency_key == key)).first()

    def claim_next_queued(self, owner: str, lease_s: float) -> RunRecord | None:
        """Atomically take the oldest queued run: it becomes `running`, owned by `owner` until the lease
        ends. None when nothing is queued. Safe with several workers or processes."""
        if self.dialect == "postgresql":
            return self._claim_postgresql(owner, lease_s)
        return self._claim_guarded(owner, lease_s)

    def count_runs_by_status(self) -> dict[str, int]:
        with self._session() as session:
            rows = session.exec(select(RunRecord.status, func.count()).group_by(RunRecord.status)).all()
        return {status: count for status, count in rows}

    # -- internals ---------------------------------------------------------------------------
    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def _claim_postgresql(self, owner: str, lease_s: float) -> RunRecord | None:
        with self._session() as session:
            oldest = (
                select(RunRecord)
                .where(RunRecord.status == "queued")
                .order_by(col(RunRecord.created_at), col(RunRecord.run_id))
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            run = session.exec(oldest).first()
            if run is None:
                return None
            _mark_claimed(run, owner, lease_s)
            session.add(run)
            session.commit()
            session.refresh(run)
            return run

    def _claim_guarded(self, owner: str, lease_s: float) -> RunRecord | None:
        # One UPDATE ... RETURNING: SQLite runs it under its write lock, so picking the oldest queued
        # run and taking it cannot interleave with another worker (no row locks needed).
        table = RunRecord.__table__
        now = utcnow()
        oldest = (
            sa.select(table.c.run_id)
            .where(table.c.status == "queued")
            .order_by(table.c.created_at, table.c.run_id)
            .limit(1)
            .scalar_subquery()
        )
        statement = (
            sa.update(table)
            .where(table.c.run_id == oldest, table.c.status == "queued")
            .values(
                status="running",
                owner=owner,
                lease_until=now + timedelta(seconds=lease_s),
                started_at=sa.func.coalesce(table.c.started_at, now),
            )
            .returning(*table.c)
        )
        with self.engine.begin() as connection:
            row = connection.execute(statement).first()
        return RunRecord(**row._mapping) if row is not None else None


def _mark_claimed(run: RunRecord, owner: str, lease_s: float) -> None:
    now = utcnow()
    run.status = "running"
    run.owner = owner
    run.lease_until = now + timedelta(seconds=lease_s)
    run.started_at = run.started_at or now


def _filtered(statement: Any, plan_id: str | None, status: str | None) -> Any:
    if plan_id is not None:
        statement = statement.where(RunRecord.plan_id == plan_id)
    if status is not None:
        statement = statement.where(RunRecord.status == status)
    return statement


def _check_status(status: str) -> None:
    if status not in RUN_STATES:
        raise ValueError(f"unknown run status {status!r} (one of {', '.join(RUN_STATES)})")


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if url.startswith("postgresql+psycopg://"):
        return sa.create_engine(
            url, pool_pre_ping=True, pool_size=10, max_overflow=10, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
        )
    raise ValueError("storage.url must start with sqlite:/// or postgresql+psycopg://")


def _alembic_config(connection: sa.Connection | None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def _describe(exc: SQLAlchemyError, dialect: str) -> str:
    """One line about a database error, without SQL text or connection secrets."""
    original = getattr(exc, "orig", None) or exc
    first_line = (str(original).strip().splitlines() or [type(original).__name__])[0]
    return f"{dialect} unavailable: {first_line}"[:500]
