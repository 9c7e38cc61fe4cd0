"""The redaction processor and the routing of stdlib loggers through structlog."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import structlog

from normcode_core.logging import Redactor, configure_logging, get_logger
from normcode_core.settings import load_settings


@pytest.fixture(autouse=True)
def restore_logging() -> None:
    """These tests log into capsys' stream; put the previous handlers back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def test_redactor_removes_configured_secrets_and_credential_shapes() -> None:
    redactor = Redactor(["my-configured-secret"])
    event = redactor(
        None,
        "info",
        {
            "event": "calling with my-configured-secret",
            "api_key": "anything at all",
            "headers": {"Authorization": "Bearer abcdef123456", "x": ["sk-abcdefghijklmnop1234"]},
            "url": "https://user:pa55word@db.example/x?token=t0ken&keep=1",
            "count": 3,
        },
    )
    assert event["event"] == "calling with ***"
    assert event["api_key"] == "***"
    assert event["headers"]["Authorization"] == "***"  # 'authorization' is not a secret key name, but the value is a bearer
    assert event["headers"]["x"] == ["***"]
    assert "pa55word" not in event["url"] and "t0ken" not in event["url"] and "keep=1" in event["url"]
    assert event["count"] == 3


def test_stdlib_and_structlog_records_come_out_as_json_lines(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = "sk-routed-secret-0123456789"
    settings = load_settings(data_dir, environ={"OPENAI_API_KEY": secret, "LOG_LEVEL": "DEBUG"})
    configure_logging(settings)
    logging.getLogger("hypercorn.error").info("plain stdlib %s", "message")
    logging.getLogger("some.plugin").warning("the key is %s", secret)
    get_logger("normcode.test").info("structured", detail=f"value {secret}")
    try:
        raise ValueError(f"failure mentioning {secret}")
    except ValueError:
        logging.getLogger("some.plugin").exception("it failed")

    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert [r["event"] for r in records] == ["plain stdlib message", "the key is ***", "structured", "it failed"]
    assert records[0]["logger"] == "hypercorn.error" and records[0]["level"] == "info"
    assert records[2]["detail"] == "value ***"
    assert "ValueError: failure mentioning ***" in records[3]["exception"]
    assert all("timestamp" in r for r in records)
    assert secret not in "\n".join(lines)


def test_log_level_is_honoured(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(load_settings(data_dir, environ={"LOG_LEVEL": "WARNING"}))
    get_logger("normcode.test").info("hidden")
    get_logger("normcode.test").warning("shown")
    logging.getLogger("other").info("hidden too")
    out = capsys.readouterr().out
    assert "shown" in out and "hidden" not in out


def test_development_logs_are_readable_text(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(load_settings(data_dir, environ={"NORMCODE_ENV": "development"}))
    get_logger("normcode.test").info("hello_console", answer=42)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "hello_console" in line and "answer=42" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)
