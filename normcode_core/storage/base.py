"""The server's tables and the Storage protocol every storage plugin implements.

Storage holds the index (plans, their versions, runs and their states); plan files live under
`<data_dir>/plans/` and each run's checkpoint under `<data_dir>/runs/<run_id>/`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

RUN_STATES = ("queued", "running", "waiting_input", "completed", "failed", "cancelled", "interrupted")
FINISHED_STATES = frozenset({"completed", "failed", "cancelled"})


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class PlanRecord(SQLModel, table=True):
    __tablename__ = "plans"

    plan_id: str = Field(primary_key=True, max_length=200)
    name: str = Field(default="", max_length=500)
    description: str = Field(default="", sa_type=sa.Text)
    latest_version: str = Field(max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class PlanVersionRecord(SQLModel, table=True):
    __tablename__ = "plan_versions"

    plan_id: str = Field(primary_key=True, max_length=200)
    version: str = Field(primary_key=True, max_length=100)
    content_hash: str = Field(max_length=128)
    manifest_json: str = Field(default="{}", sa_type=sa.Text)
    size_bytes: int = Field(default=0, sa_type=sa.BigInteger)
    deployed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class RunRecord(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (sa.Index("ix_runs_status_created", "status", "created_at"),)

    run_id: str = Field(primary_key=True, max_length=64)
    plan_id: str = Field(index=True, max_length=200)
    plan_version: str = Field(max_length=100)
    plan_hash: str = Field(default="", max_length=128)
    status: str = Field(default="queued", max_length=32)
    agent: str = Field(default="", max_length=200)
    inputs_json: str = Field(default="{}", sa_type=sa.Text)
    max_cycles: int = Field(default=100)
    error: str | None = Field(default=None, sa_type=sa.Text)
    progress_json: str = Field(default="{}", sa_type=sa.Text)
    usage_json: str = Field(default="{}", sa_type=sa.Text)
    idempotency_key: str | None = Field(default=None, unique=True, max_length=200)
    parent_run_id: str | None = Field(default=None, max_length=64)
    owner: str | None = Field(default=None, max_length=200)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class StorageUnavailable(Exception):
    """The database cannot be reached or used; `str()` says why (never the password)."""


class IdempotencyKeyExists(Exception):
    """`create_run` was given an idempotency key another run already has; `.existing` is that run."""

    def __init__(self, existing: RunRecord) -> None:
        super().__init__(f"idempotency key already used by run {existing.run_id}")
        self.existing = existing


@runtime_checkable
class Storage(Protocol):
    """Synchronous storage API (call it from a worker thread in async code). Records come back detached."""

    url: str

    def migrate(self) -> None: ...
    def schema_current(self) -> bool: ...
    def ping(self) -> None: ...
    def close(self) -> None: ...

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
    ) -> PlanVersionRecord: ...
    def get_plan(self, plan_id: str) -> PlanRecord | None: ...
    def get_plan_version(self, plan_id: str, version: str | None = None) -> PlanVersionRecord | None: ...
    def list_plans(self) -> list[PlanRecord]: ...
    def list_plan_versions(self, plan_id: str) -> list[PlanVersionRecord]: ...
    def delete_plan(self, plan_id: str) -> bool: ...
    def count_plans(self) -> int: ...

    def create_run(self, run: RunRecord) -> RunRecord: ...
    def get_run(self, run_id: str) -> RunRecord | None: ...
    def list_runs(
        self, plan_id: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[RunRecord]: ...
    def count_runs(self, plan_id: str | None = None, status: str | None = None) -> int: ...
    def update_run(self, run_id: str, **fields: Any) -> RunRecord: ...
    def update_run_if(self, run_id: str, expected: dict[str, Any], **fields: Any) -> RunRecord | None: ...
    def find_run_by_idempotency_key(self, key: str) -> RunRecord | None: ...
    def claim_next_queued(self, owner: str, lease_s: float) -> RunRecord | None: ...
    def count_runs_by_status(self) -> dict[str, int]: ...
