"""Named SQL statements from the store's ``*.sql`` files (``queries.sql`` for jobs,
``auth.sql`` for API tokens and dashboard sessions), parsed once; a name is unique across
them.

A statement starts at a ``-- name: <name>`` line; the comment lines after it say what it is
for; the statement runs until the next name or the end of the file.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$")


def parse_queries(text: str) -> dict[str, str]:
    queries: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []

    def flush() -> None:
        if name is not None:
            body = "\n".join(ln for ln in lines if not ln.lstrip().startswith("--")).strip()
            queries[name] = body.rstrip(";").strip()

    for line in text.splitlines():
        match = _NAME.match(line)
        if match:
            flush()
            name, lines = match.group(1), []
            if name in queries:
                raise ValueError(f"query {name!r} is defined twice")
        elif name is not None:
            lines.append(line)
    flush()
    return queries


SQL_FILES = ("queries.sql", "auth.sql")


@cache
def load_queries() -> dict[str, str]:
    queries: dict[str, str] = {}
    for name in SQL_FILES:
        text = resources.files("queue_core.store").joinpath(name).read_text("utf-8")
        for query, sql in parse_queries(text).items():
            if query in queries:
                raise ValueError(f"query {query!r} is defined twice ({name})")
            queries[query] = sql
    return queries


TABLES = ("jobs", "periodic_schedules", "api_tokens", "dashboard_sessions")
"""hybridq's tables: what ``in_schema`` qualifies."""

_TABLE_REFERENCE = re.compile(
    r"\b(INTO|FROM|UPDATE|JOIN)(\s+)(" + "|".join(TABLES) + r")\b", re.IGNORECASE
)


@cache
def in_schema(name: str, schema: str) -> str:
    """The statement ``name`` with each of hybridq's tables qualified by ``schema``
    (``INSERT INTO "s".jobs``): for a connection hybridq did not open, whose search_path it
    cannot rely on (a caller's transaction, see PgStore.insert_jobs). ``schema`` is
    Settings.db_schema, an identifier its pattern validated; it is quoted here anyway."""
    quoted = '"' + schema.replace('"', '""') + '"'
    return _TABLE_REFERENCE.sub(rf"\1\2{quoted}.\3", load_queries()[name])


class Queries:
    """Attribute access to the statements: ``Q.claim_jobs``."""

    def __getattr__(self, name: str) -> str:
        try:
            return load_queries()[name]
        except KeyError:
            raise AttributeError(f"no query named {name!r} in {SQL_FILES}") from None


Q = Queries()
