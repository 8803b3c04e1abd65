"""The admin dashboard through httpx: login, CSRF, escaping, HTML error pages (the
session's lifecycle is in test_dashboard_sessions_api.py). What a real browser does with it
(clicks, the JS refresh) is in tests/browser."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
from hybridq_api.dashboard import COOKIE

from queue_core import Settings
from queue_core.index import create_client
from queue_core.index.presence import announce_worker

from .conftest import DEAD_DATABASE_URL, TOKENS, ClientFactory, auth, email_job

HOSTILE = '<script>alert("x")</script>'


async def login(client: httpx.AsyncClient, who: str = "admin") -> httpx.Response:
    return await client.post("/dashboard/login", data={"token": TOKENS[who]})


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert found, page.text
    return found.group(1)


async def failed_job(
    client: httpx.AsyncClient, db: asyncpg.Connection, error: str = "boom", **fields: Any
) -> str:
    created = await client.post("/jobs", json=email_job(**fields), headers=auth("admin"))
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    await db.execute(
        "UPDATE jobs SET status = 'failed', attempts = 1, last_error = $2, finished_at = now()"
        " WHERE id = $1",
        uuid.UUID(job_id),
        error,
    )
    return str(job_id)


def assert_html_page(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "Traceback" not in response.text


async def test_dashboard_without_session_shows_the_login_form(client: httpx.AsyncClient) -> None:
    for path in ("/dashboard", "/dashboard/failures", f"/dashboard/jobs/{uuid.uuid4()}"):
        response = await client.get(path)
        assert_html_page(response, 401)
        assert 'action="/dashboard/login"' in response.text
    fragment = await client.get("/dashboard/stats")
    assert fragment.status_code == 401 and fragment.text == ""


async def test_dashboard_login_refuses_a_user_token_and_a_bad_one(
    client: httpx.AsyncClient,
) -> None:
    for token in (TOKENS["alice"], "hq_not-a-token", ""):
        response = await client.post("/dashboard/login", data={"token": token})
        assert_html_page(response, 401)
        assert "not an admin token" in response.text
        assert "set-cookie" not in response.headers
    # The cookie never holds a token: one planted there opens nothing (admin's neither).
    for who in ("alice", "admin"):
        client.cookies.set(COOKIE, TOKENS[who], path="/")
        assert_html_page(await client.get("/dashboard"), 401)


async def test_dashboard_actions_need_the_csrf_token_of_the_session(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    job_id = await failed_job(client, db)
    await login(client)
    csrf = csrf_of(await client.get("/dashboard"))
    for data in ({}, {"csrf": "0" * 64}, {"csrf": "é"}):
        response = await client.post(f"/dashboard/jobs/{job_id}/retry", data=data)
        assert_html_page(response, 403)
    assert await db.fetchval("SELECT status FROM jobs WHERE id = $1", uuid.UUID(job_id)) == "failed"
    client.cookies.clear()
    no_cookie = await client.post(f"/dashboard/jobs/{job_id}/retry", data={"csrf": csrf})
    assert_html_page(no_cookie, 403)
    await login(client)
    # A new session: the old session's CSRF token is worth nothing in it.
    stale = await client.post(f"/dashboard/jobs/{job_id}/retry", data={"csrf": csrf})
    assert_html_page(stale, 403)
    csrf = csrf_of(await client.get("/dashboard"))
    done = await client.post(f"/dashboard/jobs/{job_id}/retry", data={"csrf": csrf})
    assert done.status_code == 303, done.text
    assert await db.fetchval("SELECT status FROM jobs WHERE id = $1", uuid.UUID(job_id)) == "queued"


async def test_dashboard_escapes_job_data(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    job_id = await failed_job(client, db, error=HOSTILE, message_id=HOSTILE)
    await login(client)
    for path in ("/dashboard", "/dashboard/failures", f"/dashboard/jobs/{job_id}"):
        page = await client.get(path)
        assert_html_page(page, 200)
        assert HOSTILE not in page.text
        assert "&lt;script&gt;" in page.text


async def test_dashboard_unknown_or_malformed_job_id_is_an_html_404(
    client: httpx.AsyncClient,
) -> None:
    await login(client)
    for job_id in ("not-a-uuid", str(uuid.uuid4()), "%3Cb%3E"):
        assert_html_page(await client.get(f"/dashboard/jobs/{job_id}"), 404)
    assert_html_page(await client.get("/dashboard/nowhere"), 404)


async def test_dashboard_retry_of_a_queued_job_is_an_html_409(client: httpx.AsyncClient) -> None:
    created = await client.post("/jobs", json=email_job(), headers=auth("admin"))
    await login(client)
    csrf = csrf_of(await client.get("/dashboard"))
    response = await client.post(
        f"/dashboard/jobs/{created.json()['id']}/retry", data={"csrf": csrf}
    )
    assert_html_page(response, 409)
    assert "it is queued" in response.text


async def test_dashboard_bulk_retry_requeues_the_failed_jobs_of_one_type(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    ids = [await failed_job(client, db, message_id=f"m-{i}") for i in range(3)]
    await login(client)
    csrf = csrf_of(await client.get("/dashboard"))
    response = await client.post(
        "/dashboard/failures/retry", data={"csrf": csrf, "job_type": "email_processing"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard/failures?job_type=email_processing&retried=3"
    statuses = await db.fetch(
        "SELECT status FROM jobs WHERE id = ANY($1)", [uuid.UUID(i) for i in ids]
    )
    assert {r["status"] for r in statuses} == {"queued"}
    page = await client.get(response.headers["location"])
    assert "3 failed email_processing jobs queued again." in page.text


async def test_dashboard_with_postgres_down_is_an_html_503(make_client: ClientFactory) -> None:
    async with make_client(database_url=DEAD_DATABASE_URL) as client:
        response = await login(client)  # sessions live in Postgres: the login needs it
        assert_html_page(response, 503)
        assert "set-cookie" not in response.headers
        assert "postgres is unreachable" in response.text


async def test_dashboard_is_not_in_the_openapi_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json", headers=auth("admin"))).json()["paths"]
    assert not [p for p in paths if p.startswith("/dashboard")]


async def test_dashboard_streamed_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(2048):
            yield b"token=" + b"x" * 1024

    response = await client.post("/dashboard/login", content=chunks())
    assert response.status_code == 413, response.text


async def test_dashboard_bulk_retry_stops_at_the_admin_rate_limit(
    make_client: ClientFactory, db: asyncpg.Connection
) -> None:
    async with make_client(api_rate_limit_per_second=0.01, api_rate_limit_burst=2) as client:
        await login(client)
        csrf = csrf_of(await client.get("/dashboard"))
        for i in range(5):  # written directly: enqueueing them would spend the bucket
            await db.execute(
                "INSERT INTO jobs (id, job_type, input, status, attempts, last_error,"
                " finished_at, scheduled_for) VALUES ($1, 'email_processing',"
                " $2::text::jsonb, 'failed', 1, 'boom', now(), now())",
                uuid.uuid4(),
                f'{{"message_id": "m-{i}"}}',
            )
        response = await client.post(
            "/dashboard/failures/retry", data={"csrf": csrf, "job_type": "email_processing"}
        )
        assert response.status_code == 303, response.text
        location = response.headers["location"]
        assert "retried=2" in location and "wait=" in location, location
        page = await client.get(location)
        assert "2 failed email_processing jobs queued again." in page.text
        assert "rate limit stopped the rest" in page.text
        counts = dict(await db.fetch("SELECT status, count(*) FROM jobs GROUP BY status"))
        assert counts == {"queued": 2, "failed": 3}, counts
        failed_id = await db.fetchval("SELECT id FROM jobs WHERE status = 'failed' LIMIT 1")
        single = await client.post(f"/dashboard/jobs/{failed_id}/retry", data={"csrf": csrf})
        assert_html_page(single, 429)
    assert await db.fetchval("SELECT count(*) FROM jobs WHERE status = 'queued'") == 2


async def test_dashboard_warns_about_queued_jobs_no_live_worker_runs(
    client: httpx.AsyncClient, api_settings: Settings
) -> None:
    created = await client.post("/jobs", json=email_job(), headers=auth("admin"))
    assert created.status_code == 201, created.text
    await login(client)

    page = await client.get("/dashboard/stats")
    assert_html_page(page, 200)
    assert "No live worker has registered" in page.text
    assert "<strong>email_processing</strong> (1 queued)" in page.text
    assert re.search(r'<tr data-job-type="email_processing" class="unserved">', page.text)

    redis = create_client(api_settings.redis_url)
    try:
        await announce_worker(redis, api_settings.namespace, "w-1", ["email_processing"], 30)
    finally:
        await redis.aclose()
    served = await client.get("/dashboard/stats")
    assert "No live worker has registered" not in served.text
    assert re.search(r'<td class="num live-workers">1</td>', served.text)
