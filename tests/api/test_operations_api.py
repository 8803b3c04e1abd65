"""Operations: /healthz, /readyz (and 503 naming the backend that is down), /stats, the
per-user enqueue rate limit (429 + Retry-After), and what an outage of Redis or PostgreSQL
does to the API (Redis down: enqueue still succeeds; Postgres down: 503)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from queue_core import Settings
from queue_core.index import create_client
from queue_core.index.presence import announce_worker

from .conftest import (
    DEAD_DATABASE_URL,
    DEAD_REDIS_URL,
    ClientFactory,
    assert_error,
    auth,
    email_job,
)


async def test_healthz_is_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_ready_when_both_backends_answer(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "postgres": "ok", "redis": "ok"}


@pytest.mark.parametrize(
    ("overrides", "down"),
    [
        ({"redis_url": DEAD_REDIS_URL}, ["redis"]),
        ({"database_url": DEAD_DATABASE_URL}, ["postgres"]),
        ({"redis_url": DEAD_REDIS_URL, "database_url": DEAD_DATABASE_URL},
         ["postgres", "redis"]),
    ],
)
async def test_readyz_is_503_naming_the_backend_that_is_down(
    make_client: ClientFactory, overrides: dict[str, str], down: list[str]
) -> None:
    async with make_client(**overrides) as client:
        response = await client.get("/readyz")
        error = assert_error(response, 503, "not_ready")
        assert error["message"] == f"unreachable: {', '.join(down)}"
        assert [d["field"] for d in error["details"]] == down
        assert response.headers["Retry-After"] == "1"
        healthy = await client.get("/healthz")
        assert healthy.status_code == 200, "liveness checks no backend"


async def test_stats_counts_jobs_by_type_and_status(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    emails = (
        await client.post(
            "/jobs/batch", json={"jobs": [email_job(f"m-{i}") for i in range(3)]},
            headers=auth("alice"),
        )
    ).json()["jobs"]
    await client.post(f"/jobs/{emails[0]['id']}/cancel", headers=auth("alice"))
    for _ in range(2):
        await client.post(
            "/jobs",
            json={"job_type": "calendar_sync", "input": {"calendar_id": "c"},
                  "delay_seconds": 3600},
            headers=auth("bob"),
        )
    await client.post(
        "/jobs", json={"job_type": "briefing_generation", "input": {"topic": "t"}},
        headers=auth("admin"),
    )
    await db.execute(
        "UPDATE jobs SET scheduled_for = now() - interval '90 seconds' WHERE id = $1::uuid",
        emails[2]["id"],
    )

    # create() returns at the commit and indexes in the background: let the index settle
    deadline = time.monotonic() + 5
    while True:
        response = await client.get("/stats", headers=auth("admin"))
        assert response.status_code == 200, response.text
        by_type = {t["job_type"]: t for t in response.json()["job_types"]}
        indexed = sum(t["ready_in_index"] + t["scheduled_in_index"] for t in by_type.values())
        if indexed >= 5 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert list(by_type) == ["briefing_generation", "calendar_sync", "email_processing"]

    email = by_type["email_processing"]
    assert email["by_status"] == {"queued": 2, "cancelled": 1}
    assert (email["ready_in_index"], email["scheduled_in_index"]) == (2, 0)
    assert 89 <= email["oldest_queued_age_seconds"] < 150

    calendar = by_type["calendar_sync"]
    assert calendar["by_status"] == {"queued": 2}
    assert (calendar["ready_in_index"], calendar["scheduled_in_index"]) == (0, 2)
    assert calendar["oldest_queued_age_seconds"] is None, "no calendar job is due yet"

    briefing = by_type["briefing_generation"]
    assert briefing["by_status"] == {"queued": 1}
    assert (briefing["ready_in_index"], briefing["scheduled_in_index"]) == (1, 0)
    assert 0 <= briefing["oldest_queued_age_seconds"] < 60


async def test_stats_of_an_empty_queue(client: httpx.AsyncClient) -> None:
    response = await client.get("/stats", headers=auth("admin"))
    assert response.status_code == 200
    assert response.json() == {"job_types": []}


async def test_enqueue_over_the_rate_limit_is_429_with_retry_after(
    make_client: ClientFactory, db: asyncpg.Connection
) -> None:
    async with make_client(api_rate_limit_per_second=0.5, api_rate_limit_burst=3) as client:
        for i in range(3):
            response = await client.post("/jobs", json=email_job(f"m-{i}"), headers=auth("alice"))
            assert response.status_code == 201, response.text
        limited = await client.post("/jobs", json=email_job("m-3"), headers=auth("alice"))
        error = assert_error(limited, 429, "rate_limited")
        retry_after = int(limited.headers["Retry-After"])
        assert 1 <= retry_after <= math.ceil(1 / 0.5)
        assert "retry in" in error["message"]
        batch = await client.post("/jobs/batch", json={"jobs": [email_job()]},
                                  headers=auth("alice"))
        assert_error(batch, 429, "rate_limited")
        # Another user has a bucket of their own.
        bobs = await client.post("/jobs", json=email_job("b"), headers=auth("bob"))
        assert bobs.status_code == 201, bobs.text
        # Reads are not rate limited.
        assert (await client.get("/jobs", headers=auth("alice"))).status_code == 200
    assert await db.fetchval("SELECT count(*) FROM jobs WHERE user_id = 'alice'") == 3


async def test_rate_limited_user_may_enqueue_again_after_retry_after(
    make_client: ClientFactory,
) -> None:
    async with make_client(api_rate_limit_per_second=1, api_rate_limit_burst=1) as client:
        first = await client.post("/jobs", json=email_job(), headers=auth("alice"))
        assert first.status_code == 201, first.text
        limited = await client.post("/jobs", json=email_job(), headers=auth("alice"))
        assert_error(limited, 429, "rate_limited")
        await asyncio.sleep(int(limited.headers["Retry-After"]) + 0.05)
        again = await client.post("/jobs", json=email_job(), headers=auth("alice"))
        assert again.status_code == 201, again.text


async def test_rate_limit_zero_disables_it(make_client: ClientFactory) -> None:
    async with make_client(api_rate_limit_per_second=0, api_rate_limit_burst=1) as client:
        for _ in range(5):
            response = await client.post("/jobs", json=email_job(), headers=auth("alice"))
            assert response.status_code == 201, response.text


async def test_batches_cannot_exceed_the_enqueue_rate(
    make_client: ClientFactory, db: asyncpg.Connection
) -> None:
    async with make_client(api_rate_limit_per_second=1, api_rate_limit_burst=5,
                           api_batch_max=50) as client:
        for _ in range(2):
            await client.post("/jobs/batch", json={"jobs": [email_job()] * 50},
                              headers=auth("alice"))
    accepted = await db.fetchval("SELECT count(*) FROM jobs")
    assert accepted <= 5 + 2, f"{accepted} jobs accepted with a burst of 5 at 1 job/s"


async def test_redis_outage_does_not_fail_enqueue(
    make_client: ClientFactory, db: asyncpg.Connection
) -> None:
    async with make_client(redis_url=DEAD_REDIS_URL) as client:
        single = await client.post("/jobs", json=email_job("m-1"), headers=auth("alice"))
        assert single.status_code == 201, single.text
        batch = await client.post("/jobs/batch", json={"jobs": [email_job("m-2")] * 3},
                                  headers=auth("alice"))
        assert batch.status_code == 201, batch.text
        once = await client.post("/jobs", json=email_job("m-3"),
                                 headers={**auth("alice"), "Idempotency-Key": "k"})
        assert once.status_code == 201, once.text
        # Reads and state changes only need Postgres.
        got = await client.get(f"/jobs/{single.json()['id']}", headers=auth("alice"))
        assert got.status_code == 200 and got.json()["status"] == "queued"
        cancelled = await client.post(f"/jobs/{single.json()['id']}/cancel",
                                      headers=auth("alice"))
        assert cancelled.status_code == 200, cancelled.text
        listed = await client.get("/jobs", headers=auth("alice"))
        assert len(listed.json()["jobs"]) == 5
        # /stats reads the index depths: it says which backend is missing.
        stats = await client.get("/stats", headers=auth("admin"))
        assert_error(stats, 503, "redis_unavailable")
        assert stats.headers["Retry-After"] == "1"
    ids = {j["id"] for j in batch.json()["jobs"]} | {single.json()["id"], once.json()["id"]}
    rows = await db.fetch("SELECT id::text AS id, status FROM jobs")
    assert {r["id"] for r in rows} == ids


@pytest.fixture
async def silent_redis_url() -> AsyncIterator[str]:
    """A TCP server that accepts connections and never answers: a hung Redis."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(4096):
                pass
        finally:
            writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_unresponsive_redis_does_not_fail_enqueue(
    make_client: ClientFactory, silent_redis_url: str
) -> None:
    """Redis that accepts but never replies: both the rate limit and the index write time
    out (redis-py's default 5 s socket timeout; hybridq sets none itself), enqueue succeeds."""
    async with make_client(redis_url=silent_redis_url) as client:
        started = time.monotonic()
        response = await asyncio.wait_for(
            client.post("/jobs", json=email_job(), headers=auth("alice")), 40
        )
        took = time.monotonic() - started
        assert response.status_code == 201, response.text
        stored = await client.get(f"/jobs/{response.json()['id']}", headers=auth("alice"))
        assert stored.status_code == 200 and stored.json()["status"] == "queued"
    print(f"enqueue with a hung Redis took {took:.1f}s")


async def test_postgres_outage_is_503_and_names_postgres(make_client: ClientFactory) -> None:
    async with make_client(database_url=DEAD_DATABASE_URL) as client:
        attempts = [
            ("POST", "/jobs", email_job()),
            ("POST", "/jobs/batch", {"jobs": [email_job()]}),
            ("GET", "/jobs", None),
            ("GET", "/jobs/01a22493-76cf-7336-983f-83845fe0acda", None),
            ("POST", "/jobs/01a22493-76cf-7336-983f-83845fe0acda/cancel", None),
        ]
        for method, path, body in attempts:
            response = await client.request(method, path, json=body, headers=auth("alice"))
            error = assert_error(response, 503, "postgres_unavailable")
            assert "postgres" in error["message"]
            assert response.headers["Retry-After"] == "1"
        stats = await client.get("/stats", headers=auth("admin"))
        assert_error(stats, 503, "postgres_unavailable")


async def test_unknown_route_and_method_have_the_error_shape(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/nope", headers=auth("alice")), 404, "not_found")
    assert_error(await client.delete("/jobs", headers=auth("alice")), 405, "method_not_allowed")


async def test_openapi_describes_every_route(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json", headers=auth("alice"))).json()
    assert set(schema["paths"]) >= {
        "/jobs", "/jobs/batch", "/jobs/{job_id}", "/jobs/{job_id}/cancel",
        "/jobs/{job_id}/retry", "/stats", "/healthz", "/readyz",
    }
    create = schema["paths"]["/jobs"]["post"]
    assert {"201", "200", "401", "409", "413", "422", "429", "503"} <= set(create["responses"])


async def test_concurrent_idempotent_requests_create_one_job(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    headers = {**auth("alice"), "Idempotency-Key": "race"}
    responses = await asyncio.gather(
        *(client.post("/jobs", json=email_job("m"), headers=headers) for _ in range(10))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 9 + [201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await db.fetchval("SELECT count(*) FROM jobs") == 1


async def test_concurrent_conflicting_idempotent_requests_create_one_job(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    headers = {**auth("alice"), "Idempotency-Key": "race-2"}
    responses = await asyncio.gather(
        *(client.post("/jobs", json=email_job(f"m-{i}"), headers=headers) for i in range(10))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 9, [r.text for r in responses]
    assert await db.fetchval("SELECT count(*) FROM jobs") == 1


async def test_job_scheduled_for_the_near_past_is_accepted_as_due(
    client: httpx.AsyncClient,
) -> None:
    """Client clock skew: a few minutes in the past is accepted and due at once."""
    when = datetime.now(UTC) - timedelta(minutes=2)
    response = await client.post("/jobs", json=email_job(scheduled_for=when.isoformat()),
                                 headers=auth("alice"))
    assert response.status_code == 201, response.text


async def test_retry_costs_a_rate_limit_token_like_an_enqueue(
    make_client: ClientFactory, db: asyncpg.Connection
) -> None:
    """A cancel-then-retry loop must not re-queue a job while POST /jobs answers 429."""
    async with make_client(api_rate_limit_per_second=0.01, api_rate_limit_burst=2) as client:
        job = (await client.post("/jobs", json=email_job(), headers=auth("alice"))).json()
        statuses = []
        for _ in range(5):
            await client.post(f"/jobs/{job['id']}/cancel", headers=auth("alice"))
            retried = await client.post(f"/jobs/{job['id']}/retry", headers=auth("alice"))
            statuses.append(retried.status_code)
        assert statuses == [200, 429, 429, 429, 429], statuses
        assert_error(retried, 429, "rate_limited")
        assert int(retried.headers["Retry-After"]) >= 1
        limited = await client.post("/jobs", json=email_job(), headers=auth("alice"))
        assert_error(limited, 429, "rate_limited")
    assert await db.fetchval("SELECT status FROM jobs WHERE id = $1::uuid", job["id"]) == (
        "cancelled"
    )


async def test_stats_and_metrics_show_queued_jobs_no_live_worker_runs(
    client: httpx.AsyncClient, api_settings: Settings
) -> None:
    for i in range(2):
        created = await client.post("/jobs", json=email_job(f"m-{i}"), headers=auth("alice"))
        assert created.status_code == 201, created.text
    redis = create_client(api_settings.redis_url)
    try:  # a live worker that runs only calendar_sync
        await announce_worker(redis, api_settings.namespace, "w-1", ["calendar_sync"], 30)
    finally:
        await redis.aclose()

    stats = await client.get("/stats", headers=auth("admin"))
    by_type = {t["job_type"]: t for t in stats.json()["job_types"]}
    email, calendar = by_type["email_processing"], by_type["calendar_sync"]
    assert (email["live_workers"], email["queued_without_worker"]) == (0, 2)
    assert (calendar["live_workers"], calendar["queued_without_worker"]) == (1, 0)

    metrics = (await client.get("/metrics", headers=auth("admin"))).text
    assert 'hybridq_queued_without_worker{job_type="email_processing"} 2.0' in metrics
    assert 'hybridq_queued_without_worker{job_type="calendar_sync"} 0.0' in metrics
