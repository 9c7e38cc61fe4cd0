"""Built-in storage plugin: SQLModel on SQLite (default) or PostgreSQL (`postgresql+psycopg://`)."""

from __future__ import annotations

from normcode_core.hookspecs import hookimpl
from normcode_core.settings import Settings
from normcode_core.storage.sql import SqlStorage

SCHEMES = ("sqlite:///", "postgresql+psycopg://")


@hookimpl
def storage_backend(settings: Settings) -> SqlStorage | None:
    url = settings.storage.url
    return SqlStorage(url) if url.startswith(SCHEMES) else None
