"""The exit codes of every ``hybridq`` command, in one table: the README's "Exit codes"
table and ``hybridq --help`` are generated from it (tests/unit/test_docs.py holds the README
to it)."""

from __future__ import annotations

import textwrap

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_OK: "success; also a worker, reconciler or top stopped by SIGTERM or SIGINT",
    EXIT_FAILED: "the operation failed: no such job, a job in a status the operation does "
    "not apply to, a confirmation answered no",
    EXIT_USAGE: "bad arguments or input (a malformed job id, a duration without a unit, an "
    "unknown job type), bad configuration or environment (a setting, a database or schema "
    "never migrated, the API's port in use), or no usable handlers module",
    EXIT_UNAVAILABLE: "PostgreSQL or Redis unreachable",
    EXIT_INTERRUPTED: "interrupted by Ctrl-C outside a worker, reconciler or top (e.g. at a "
    "confirmation prompt)",
}
"""Exit code -> when a command exits with it."""


def exit_codes_text(width: int = 79) -> str:
    """The table as plain lines, for ``hybridq --help``."""
    lines = ["exit codes:"]
    for code, meaning in EXIT_CODES.items():
        lines += textwrap.wrap(
            meaning, width, initial_indent=f"  {code:<4}", subsequent_indent=" " * 6
        )
    return "\n".join(lines)
