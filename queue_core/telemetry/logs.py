"""Logging set-up for the processes (CLI, API): plain lines for people, or one JSON object
per line (``HYBRIDQ_LOG_JSON=true``). Both carry the structured fields every log call passes
in ``extra`` (action, job_id, job_type, attempt, worker_id, version, ...): as JSON keys, or
after the message as ``key=value`` pairs (logfmt), so a plain line says which migration was
applied or which job failed."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

_RECORD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))
) | {"message", "asctime", "taskName"}
"""What every LogRecord has; anything else on a record came from ``extra``."""


class PlainFormatter(logging.Formatter):
    """``<time> <level> <logger> <message> key=value ...``: the message, then the record's
    ``extra`` fields in the order the call gave them. A value with a space, a quote or an
    ``=`` is quoted as JSON; a list or dict is written as JSON."""

    def __init__(self) -> None:
        super().__init__(PLAIN_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)  # a traceback, if any, follows it
        fields = [
            f"{key}={_plain_value(value)}"
            for key, value in vars(record).items()
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
        ]
        return f"{line} {' '.join(fields)}" if fields else line


def _plain_value(value: Any) -> str:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str, separators=(",", ":"))
    text = str(value)
    if not text or any(c in text for c in ' "=\n\t'):
        return json.dumps(text)
    return text


def configure_logging(*, json_lines: bool, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "asctime": "time"},
            )
        )
    else:
        handler.setFormatter(PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
