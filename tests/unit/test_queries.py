"""Named SQL statements (queue_core.store.queries): parsing, and every use in the engine.

That each statement is valid SQL against the schema is checked in
tests/integration/test_schema.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import queue_core
from queue_core.store.queries import Q, in_schema, load_queries, parse_queries

SAMPLE = """\
-- File header: not part of any statement.

-- name: first_query
-- What the first query is for.
SELECT 1
FROM jobs;

-- name:   second_query
-- Purpose, line one.
-- Purpose, line two.
UPDATE jobs
  -- an indented comment inside the body
SET status = 'queued'
WHERE id = $1;;
"""


def test_parse_queries_finds_each_name_in_file_order() -> None:
    assert list(parse_queries(SAMPLE)) == ["first_query", "second_query"]


def test_parse_queries_drops_comments_and_trailing_semicolons() -> None:
    queries = parse_queries(SAMPLE)
    assert queries["first_query"] == "SELECT 1\nFROM jobs"
    assert queries["second_query"] == "UPDATE jobs\nSET status = 'queued'\nWHERE id = $1"


def test_text_before_the_first_name_is_ignored() -> None:
    assert parse_queries("SELECT 'orphan';\n-- name: only\nSELECT 2;") == {"only": "SELECT 2"}


def test_duplicate_query_name_raises_value_error() -> None:
    text = "-- name: twice\nSELECT 1;\n-- name: other\nSELECT 2;\n-- name: twice\nSELECT 3;\n"
    with pytest.raises(ValueError, match="'twice' is defined twice"):
        parse_queries(text)


def test_unknown_query_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_query"):
        Q.no_such_query  # noqa: B018


def names_used_in_queue_core() -> set[str]:
    package = Path(queue_core.__file__).parent
    used: set[str] = set()
    for source in package.rglob("*.py"):
        used |= set(re.findall(r"\bQ\.(\w+)", source.read_text("utf-8")))
    return used


def test_every_query_the_engine_uses_is_defined() -> None:
    used = names_used_in_queue_core()
    assert "claim_jobs" in used, f"the scan for Q.<name> found too little: {sorted(used)}"

    missing = used - set(load_queries())
    assert not missing, f"used in queue_core but not in queries.sql: {sorted(missing)}"


def test_every_bundled_statement_is_one_non_empty_statement() -> None:
    for name, sql in load_queries().items():
        assert sql, f"{name} is empty"
        assert ";" not in sql, f"{name} holds more than one statement"
        assert "-- name:" not in sql


def test_in_schema_qualifies_every_table_reference_and_nothing_else() -> None:
    sql = in_schema("insert_jobs", 'tenant_a')
    assert 'INSERT INTO "tenant_a".jobs' in sql
    assert "(SELECT count(*) FROM inserted)" in sql  # a CTE, not a table

    counted = in_schema("count_jobs", "tenant_a")
    assert counted == load_queries()["count_jobs"].replace("FROM jobs", 'FROM "tenant_a".jobs')
    assert "count(*) AS jobs" in counted
