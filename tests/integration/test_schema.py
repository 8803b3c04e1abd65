"""The migrated schema against real PostgreSQL: every named statement prepares, migrations
apply once under concurrency, the table's checks hold, and the hot queries use their index."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from queue_core import Queue
from queue_core.store.migrate import apply_migrations, bundled_migrations
from queue_core.store.queries import Q, in_schema, load_queries

MIGRATORS = 4


async def test_every_named_statement_prepares_against_the_migrated_schema(queue: Queue) -> None:
    assert load_queries(), "queries.sql defines no statement"
    failures: dict[str, str] = {}
    async with queue.pool.acquire() as conn:
        for name, sql in load_queries().items():
            try:
                await conn.prepare(sql)
            except asyncpg.PostgresError as exc:
                failures[name] = f"{type(exc).__name__}: {exc}"
    assert not failures, f"statements that no longer match the schema: {failures}"


async def test_every_named_statement_prepares_schema_qualified_off_the_search_path(
    queue: Queue,
) -> None:
    """What a caller's connection sees (search_path without hybridq's schema): every
    statement in_schema() qualifies must still find its tables."""
    schema = queue.settings.db_schema
    assert schema is not None
    failures: dict[str, str] = {}
    conn = await asyncpg.connect(queue.settings.database_url)
    try:
        assert schema not in await conn.fetchval("SELECT current_schemas(false)::text")
        for name in load_queries():
            try:
                await conn.prepare(in_schema(name, schema))
            except asyncpg.PostgresError as exc:
                failures[name] = f"{type(exc).__name__}: {exc}"
    finally:
        await conn.close()
    assert not failures, f"statements with a table in_schema() did not qualify: {failures}"


@pytest.fixture
async def database_url(server_urls: tuple[str, str], _loop_guard: None) -> str:
    return server_urls[0]


@pytest.fixture
async def schema_name(database_url: str) -> AsyncIterator[str]:
    """A schema name nobody uses yet; dropped after the test (if it was created)."""
    name = "m_" + uuid.uuid4().hex[:12]
    yield name
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


async def migrate_concurrently(database_url: str, schema: str) -> list[list[str] | BaseException]:
    conns = [await asyncpg.connect(database_url) for _ in range(MIGRATORS)]
    try:
        return await asyncio.gather(
            *(apply_migrations(conn, schema) for conn in conns), return_exceptions=True
        )
    finally:
        for conn in conns:
            await conn.close()


async def recorded_versions(database_url: str, schema: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(f'SELECT version FROM "{schema}".schema_migrations ORDER BY 1')
    finally:
        await conn.close()
    return [r["version"] for r in rows]


def assert_each_version_applied_once(results: list[list[str] | BaseException]) -> None:
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"migrators failed: {errors!r}"
    applied = sorted(v for r in results if not isinstance(r, BaseException) for v in r)
    assert applied == [m.version for m in bundled_migrations()], f"applied per migrator: {results}"


async def test_concurrent_migrations_on_an_empty_schema_apply_each_version_once(
    database_url: str, schema_name: str
) -> None:
    # The schema exists but holds nothing yet (the case of a DBA-created schema).
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema_name}"')
    finally:
        await conn.close()

    results = await migrate_concurrently(database_url, schema_name)

    assert_each_version_applied_once(results)
    assert await recorded_versions(database_url, schema_name) == [
        m.version for m in bundled_migrations()
    ]
    again = await migrate_concurrently(database_url, schema_name)
    assert again == [[]] * MIGRATORS


async def test_concurrent_migrations_creating_the_schema_apply_each_version_once(
    database_url: str,
) -> None:
    # Three fresh schemas: the race hits on nearly every try, and a fix must hold on all.
    for _ in range(3):
        schema = "m_" + uuid.uuid4().hex[:12]
        try:
            results = await migrate_concurrently(database_url, schema)
            assert_each_version_applied_once(results)
            assert await recorded_versions(database_url, schema) == [
                m.version for m in bundled_migrations()
            ]
        finally:
            conn = await asyncpg.connect(database_url)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()


LEASE_EXPIRY = datetime(2099, 1, 1, tzinfo=UTC)
VALID_ROW: dict[str, Any] = {
    "job_type": "email_processing",
    "input": "{}",
    "status": "queued",
    "priority": 0,
    "lease_owner": None,
    "lease_expires_at": None,
}
INSERT_ROW = """
INSERT INTO jobs (id, job_type, input, status, priority, scheduled_for,
                  lease_owner, lease_expires_at)
VALUES (gen_random_uuid(), $1, $2::text::jsonb, $3, $4, now(), $5, $6)
"""


async def insert_row(queue: Queue, **overrides: Any) -> None:
    row = {**VALID_ROW, **overrides}
    async with queue.pool.acquire() as conn:
        await conn.execute(
            INSERT_ROW, row["job_type"], row["input"], row["status"], row["priority"],
            row["lease_owner"], row["lease_expires_at"],
        )


async def test_valid_rows_are_accepted_by_the_jobs_table(queue: Queue) -> None:
    # The baseline the rejections below differ from by one field.
    await insert_row(queue)
    await insert_row(queue, status="running", lease_owner="w-1", lease_expires_at=LEASE_EXPIRY)
    async with queue.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM jobs") == 2


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"status": "bogus"}, id="unknown-status"),
        pytest.param({"priority": 5000}, id="priority-above-range"),
        pytest.param({"priority": -1001}, id="priority-below-range"),
        pytest.param({"input": "[]"}, id="input-array"),
        pytest.param({"input": '"text"'}, id="input-string"),
        pytest.param({"job_type": "has space"}, id="bad-job-type"),
        pytest.param({"status": "running"}, id="running-without-lease"),
        pytest.param({"status": "running", "lease_owner": "w-1"}, id="running-without-expiry"),
        pytest.param(
            {"lease_owner": "w-1", "lease_expires_at": LEASE_EXPIRY}, id="lease-on-queued-job"
        ),
    ],
)
async def test_check_constraints_reject_bad_rows(queue: Queue, overrides: dict[str, Any]) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await insert_row(queue, **overrides)
    async with queue.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM jobs") == 0


# At this size, after ANALYZE, the planner picks both indexes on its own: the tests below do
# not touch enable_seqscan or any other planner setting.
ROWS = 5_000
RUNNING_EVERY = 100
"""1 row in 100 is running (with an expired lease): few enough that the partial index wins."""

FILL_JOBS = """
INSERT INTO jobs (id, job_type, input, status, scheduled_for, lease_owner, lease_expires_at)
SELECT gen_random_uuid(), 'email_processing', '{}'::jsonb,
       CASE WHEN g % $2 = 0 THEN 'running' WHEN g % 2 = 0 THEN 'succeeded' ELSE 'queued' END,
       now() - interval '1 hour',
       CASE WHEN g % $2 = 0 THEN 'w-1' END,
       CASE WHEN g % $2 = 0 THEN now() - interval '1 minute' END
FROM generate_series(1, $1) AS g
"""
EXPIRED_LEASES = "SELECT id FROM jobs WHERE status = 'running' AND lease_expires_at < now()"


@pytest.fixture
async def filled(queue: Queue) -> Queue:
    async with queue.pool.acquire() as conn:
        await conn.execute(FILL_JOBS, ROWS, RUNNING_EVERY)
        await conn.execute("ANALYZE jobs")
    return queue


async def explain(queue: Queue, sql: str, *args: Any) -> str:
    async with queue.pool.acquire() as conn:
        rows = await conn.fetch("EXPLAIN " + sql, *args)
    return "\n".join(r[0] for r in rows)


async def test_claim_jobs_finds_ids_through_the_primary_key(filled: Queue) -> None:
    async with filled.pool.acquire() as conn:
        rows = await conn.fetch("SELECT id FROM jobs WHERE status = 'queued' LIMIT 5")
    ids = [r["id"] for r in rows]

    plan = await explain(filled, Q.claim_jobs, ids, "w-2", 30.0, "email_processing", 2)

    assert "jobs_pkey" in plan, plan
    assert "Seq Scan" not in plan, plan


async def test_expired_lease_scan_uses_the_partial_running_index(filled: Queue) -> None:
    async with filled.pool.acquire() as conn:
        assert len(await conn.fetch(EXPIRED_LEASES)) == ROWS // RUNNING_EVERY

    plan = await explain(filled, EXPIRED_LEASES)

    assert "jobs_running_lease_idx" in plan, plan
    assert "Index Cond: (lease_expires_at < now())" in plan, plan
    assert "Seq Scan" not in plan, plan
