"""Log lines keep their structured fields, in plain text as in JSON (telemetry/logs.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from queue_core.telemetry.logs import configure_logging


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_plain_lines_keep_the_extra_fields_after_the_message(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(json_lines=False)

    logging.getLogger("queue_core.store.migrate").info(
        "migration applied", extra={"action": "migrate", "version": "0001_create_jobs"}
    )

    line = capsys.readouterr().err.strip()
    assert line.endswith(
        "INFO queue_core.store.migrate migration applied action=migrate version=0001_create_jobs"
    )


def test_plain_values_with_spaces_are_quoted_and_lists_are_json(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(json_lines=False)

    logging.getLogger("w").warning(
        "claim failed", extra={"error": 'postgres unavailable: "x"', "job_types": ["a", "b"]}
    )

    line = capsys.readouterr().err.strip()
    assert line.endswith('claim failed error="postgres unavailable: \\"x\\"" job_types=["a","b"]')


def test_plain_traceback_follows_the_line_with_its_fields(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(json_lines=False)

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("w").exception("handler crashed", extra={"job_id": "j-1"})

    first, *rest = capsys.readouterr().err.strip().splitlines()
    assert first.endswith("handler crashed job_id=j-1")
    assert rest[0].startswith("Traceback") and rest[-1] == "RuntimeError: boom"


def test_json_lines_carry_the_same_fields(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(json_lines=True)

    logging.getLogger("queue_core.store.migrate").info(
        "migration applied", extra={"action": "migrate", "version": "0001_create_jobs"}
    )

    record = json.loads(capsys.readouterr().err)
    assert record["message"] == "migration applied" and record["level"] == "INFO"
    assert (record["action"], record["version"]) == ("migrate", "0001_create_jobs")
