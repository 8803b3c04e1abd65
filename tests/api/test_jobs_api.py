"""The job routes' success paths and state conflicts, through HTTP against the real app
(PostgreSQL and Redis): create, batch, get, list with filters and keyset pages, cancel,
retry, and Idempotency-Key replays."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from .conftest import assert_error, auth, email_job


async def finish(db: asyncpg.Connection, job_id: str, status: str, attempts: int = 1) -> None:
    """What a worker would have written: the job ended with ``status``."""
    await db.execute(
        "UPDATE jobs SET status = $2, attempts = $3, finished_at = now(),"
        " last_error = CASE WHEN $2 = 'failed' THEN 'boom' END WHERE id = $1::uuid",
        job_id, status, attempts,
    )


async def test_create_job_returns_201_with_the_stored_job(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    response = await client.post(
        "/jobs", json=email_job("m-42", priority=7, max_retries=5), headers=auth("alice")
    )
    assert response.status_code == 201, response.text
    job = response.json()
    assert uuid.UUID(job["id"]).version == 7
    assert job["job_type"] == "email_processing"
    assert job["input"] == {"message_id": "m-42"}
    assert job["user_id"] == "alice"
    assert job["status"] == "queued"
    assert (job["priority"], job["max_retries"], job["attempts"]) == (7, 5, 0)
    assert job["output"] is None and job["last_error"] is None
    assert job["started_at"] is None and job["finished_at"] is None
    scheduled = datetime.fromisoformat(job["scheduled_for"])
    assert abs(scheduled - datetime.now(UTC)) < timedelta(seconds=30)

    row = await db.fetchrow("SELECT * FROM jobs WHERE id = $1::uuid", job["id"])
    assert row is not None
    assert (row["status"], row["user_id"], row["priority"]) == ("queued", "alice", 7)


async def test_create_job_stores_input_as_sent_without_filling_defaults(
    client: httpx.AsyncClient,
) -> None:
    # The contract validates; the worker's model fills defaults (days=7) when it runs.
    response = await client.post(
        "/jobs",
        json={"job_type": "calendar_sync", "input": {"calendar_id": "c-1"}},
        headers=auth("bob"),
    )
    assert response.status_code == 201, response.text
    assert response.json()["input"] == {"calendar_id": "c-1"}


async def test_create_job_with_delay_seconds_defers_it(client: httpx.AsyncClient) -> None:
    before = datetime.now(UTC)
    response = await client.post(
        "/jobs", json=email_job(delay_seconds=3600), headers=auth("alice")
    )
    assert response.status_code == 201, response.text
    scheduled = datetime.fromisoformat(response.json()["scheduled_for"])
    assert before + timedelta(seconds=3590) < scheduled < before + timedelta(seconds=3630)


async def test_create_job_with_scheduled_for_keeps_that_time(client: httpx.AsyncClient) -> None:
    when = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=123000)
    response = await client.post(
        "/jobs",
        json=email_job(scheduled_for=when.astimezone(UTC).isoformat()),
        headers=auth("alice"),
    )
    assert response.status_code == 201, response.text
    assert datetime.fromisoformat(response.json()["scheduled_for"]) == when


async def test_admin_creates_jobs_for_any_owner_or_none(client: httpx.AsyncClient) -> None:
    for_bob = await client.post("/jobs", json=email_job(user_id="bob"), headers=auth("admin"))
    ownerless = await client.post("/jobs", json=email_job(), headers=auth("admin"))
    assert for_bob.status_code == ownerless.status_code == 201
    assert for_bob.json()["user_id"] == "bob"
    assert ownerless.json()["user_id"] is None
    seen_by_bob = await client.get(f"/jobs/{for_bob.json()['id']}", headers=auth("bob"))
    assert seen_by_bob.status_code == 200


async def test_user_token_may_name_only_its_own_user(client: httpx.AsyncClient) -> None:
    own = await client.post("/jobs", json=email_job(user_id="alice"), headers=auth("alice"))
    assert own.status_code == 201 and own.json()["user_id"] == "alice"
    other = await client.post("/jobs", json=email_job(user_id="bob"), headers=auth("alice"))
    error = assert_error(other, 422, "validation_error")
    assert "user_id" in error["message"]


async def test_batch_creates_every_job_in_order(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    items = [
        email_job("m-1"),
        {"job_type": "calendar_sync", "input": {"calendar_id": "c-1", "days": 30}},
        {"job_type": "briefing_generation", "input": {"topic": "rates"}, "priority": -5},
    ]
    response = await client.post("/jobs/batch", json={"jobs": items}, headers=auth("alice"))
    assert response.status_code == 201, response.text
    jobs = response.json()["jobs"]
    assert [j["job_type"] for j in jobs] == [i["job_type"] for i in items]
    assert [j["input"] for j in jobs] == [
        {"message_id": "m-1"}, {"calendar_id": "c-1", "days": 30}, {"topic": "rates"}
    ]
    assert {j["user_id"] for j in jobs} == {"alice"}
    assert jobs[2]["priority"] == -5
    assert await db.fetchval("SELECT count(*) FROM jobs") == 3


async def test_batch_with_one_bad_item_creates_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    items = [email_job("m-1"), {"job_type": "email_processing", "input": {"message_id": 5}}]
    response = await client.post("/jobs/batch", json={"jobs": items}, headers=auth("alice"))
    error = assert_error(response, 422, "validation_error")
    assert error["message"].startswith("jobs.1.input.message_id"), error
    assert await db.fetchval("SELECT count(*) FROM jobs") == 0


async def test_get_job_returns_it(client: httpx.AsyncClient) -> None:
    created = (await client.post("/jobs", json=email_job("m-7"), headers=auth("alice"))).json()
    response = await client.get(f"/jobs/{created['id']}", headers=auth("alice"))
    assert response.status_code == 200
    assert response.json() == created


async def test_get_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/jobs/{uuid.uuid4()}", headers=auth("alice"))
    assert_error(response, 404, "not_found")


async def test_list_filters_by_status_and_job_type(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    emails = [
        (await client.post("/jobs", json=email_job(f"m-{i}"), headers=auth("alice"))).json()
        for i in range(3)
    ]
    calendar = (
        await client.post(
            "/jobs",
            json={"job_type": "calendar_sync", "input": {"calendar_id": "c"}},
            headers=auth("alice"),
        )
    ).json()
    await finish(db, emails[1]["id"], "succeeded")

    async def ids(**params: str) -> list[str]:
        response = await client.get("/jobs", params=params, headers=auth("alice"))
        assert response.status_code == 200, response.text
        return [j["id"] for j in response.json()["jobs"]]

    assert await ids() == [calendar["id"], emails[2]["id"], emails[1]["id"], emails[0]["id"]]
    assert await ids(job_type="email_processing") == [
        emails[2]["id"], emails[1]["id"], emails[0]["id"]
    ]
    assert await ids(status="succeeded") == [emails[1]["id"]]
    assert await ids(status="queued", job_type="email_processing") == [
        emails[2]["id"], emails[0]["id"]
    ]
    assert await ids(job_type="calendar_sync", status="succeeded") == []
    assert await ids(job_type="no_such_type") == []


async def test_list_pages_newest_first_without_gaps_or_repeats(
    client: httpx.AsyncClient,
) -> None:
    created: list[str] = []
    for chunk in range(3):
        items = [email_job(f"m-{chunk}-{i}") for i in range(9)]
        response = await client.post("/jobs/batch", json={"jobs": items}, headers=auth("alice"))
        assert response.status_code == 201, response.text
        created += [j["id"] for j in response.json()["jobs"]]
    await client.post("/jobs", json=email_job("bob's"), headers=auth("bob"))

    seen: list[str] = []
    pages = 0
    params: dict[str, str | int] = {"limit": 5}
    while True:
        response = await client.get("/jobs", params=params, headers=auth("alice"))
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["jobs"]) <= 5
        seen += [j["id"] for j in page["jobs"]]
        pages += 1
        if page["next_cursor"] is None:
            break
        assert page["next_cursor"] == page["jobs"][-1]["id"]
        params = {"limit": 5, "cursor": page["next_cursor"]}
        assert pages < 20, "paging does not end"

    assert seen == list(reversed(created)), "pages must list every job once, newest first"
    assert pages == 6  # 27 jobs: five full pages and a partial one


async def test_list_limit_of_exact_multiple_ends_with_an_empty_page(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/jobs/batch", json={"jobs": [email_job()] * 4}, headers=auth("alice"))
    first = (await client.get("/jobs?limit=4", headers=auth("alice"))).json()
    assert len(first["jobs"]) == 4 and first["next_cursor"] is not None
    last = await client.get(f"/jobs?limit=4&cursor={first['next_cursor']}", headers=auth("alice"))
    assert last.json() == {"jobs": [], "next_cursor": None}


async def test_cancel_queued_job(client: httpx.AsyncClient) -> None:
    created = (await client.post("/jobs", json=email_job(), headers=auth("alice"))).json()
    response = await client.post(f"/jobs/{created['id']}/cancel", headers=auth("alice"))
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "cancelled" and job["finished_at"] is not None
    again = await client.get(f"/jobs/{created['id']}", headers=auth("alice"))
    assert again.json()["status"] == "cancelled"


async def test_cancel_finished_job_is_409(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    for status in ("succeeded", "failed", "cancelled"):
        created = (await client.post("/jobs", json=email_job(), headers=auth("alice"))).json()
        await finish(db, created["id"], status)
        response = await client.post(f"/jobs/{created['id']}/cancel", headers=auth("alice"))
        error = assert_error(response, 409, "state_conflict")
        assert status in error["message"]


async def test_retry_failed_job_queues_it_again(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    created = (
        await client.post("/jobs", json=email_job(max_retries=3), headers=auth("alice"))
    ).json()
    await finish(db, created["id"], "failed", attempts=4)
    response = await client.post(f"/jobs/{created['id']}/retry", headers=auth("alice"))
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "queued" and job["finished_at"] is None
    assert job["attempts"] == 4
    assert job["max_retries"] == 7  # a fresh allowance on top of the attempts spent


async def test_retry_cancelled_job_queues_it_again(client: httpx.AsyncClient) -> None:
    created = (await client.post("/jobs", json=email_job(), headers=auth("alice"))).json()
    await client.post(f"/jobs/{created['id']}/cancel", headers=auth("alice"))
    response = await client.post(f"/jobs/{created['id']}/retry", headers=auth("alice"))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "queued"


async def test_retry_of_queued_or_succeeded_job_is_409(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    queued = (await client.post("/jobs", json=email_job(), headers=auth("alice"))).json()
    error = assert_error(
        await client.post(f"/jobs/{queued['id']}/retry", headers=auth("alice")),
        409, "state_conflict",
    )
    assert "queued" in error["message"]
    done = (await client.post("/jobs", json=email_job(), headers=auth("alice"))).json()
    await finish(db, done["id"], "succeeded")
    assert_error(
        await client.post(f"/jobs/{done['id']}/retry", headers=auth("alice")),
        409, "state_conflict",
    )


async def test_cancel_and_retry_of_unknown_job_are_404(client: httpx.AsyncClient) -> None:
    for action in ("cancel", "retry"):
        response = await client.post(f"/jobs/{uuid.uuid4()}/{action}", headers=auth("alice"))
        assert_error(response, 404, "not_found")


async def test_idempotent_replay_returns_the_same_job_with_200(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    headers = {**auth("alice"), "Idempotency-Key": "order-1"}
    first = await client.post("/jobs", json=email_job("m-1", priority=2), headers=headers)
    assert first.status_code == 201, first.text
    # The same request, its keys in another order: a replay.
    replay = await client.post(
        "/jobs",
        content=b'{"priority": 2, "input": {"message_id": "m-1"}, "job_type": "email_processing"}',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert replay.status_code == 200, replay.text
    assert replay.json() == first.json()
    assert await db.fetchval("SELECT count(*) FROM jobs") == 1


async def test_idempotency_key_reused_for_another_request_is_409(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    headers = {**auth("alice"), "Idempotency-Key": "order-2"}
    assert (await client.post("/jobs", json=email_job("m-1"), headers=headers)).status_code == 201
    for different in (email_job("m-2"), email_job("m-1", priority=1)):
        response = await client.post("/jobs", json=different, headers=headers)
        error = assert_error(response, 409, "idempotency_conflict")
        assert "order-2" in error["message"]
    assert await db.fetchval("SELECT count(*) FROM jobs") == 1


async def test_users_use_the_same_idempotency_key_independently(
    client: httpx.AsyncClient,
) -> None:
    key = {"Idempotency-Key": "shared-key"}
    alice = await client.post("/jobs", json=email_job("a"), headers={**auth("alice"), **key})
    bob = await client.post("/jobs", json=email_job("b"), headers={**auth("bob"), **key})
    admin = await client.post("/jobs", json=email_job("c"), headers={**auth("admin"), **key})
    assert alice.status_code == bob.status_code == admin.status_code == 201
    assert len({alice.json()["id"], bob.json()["id"], admin.json()["id"]}) == 3
    replay = await client.post("/jobs", json=email_job("b"), headers={**auth("bob"), **key})
    assert replay.status_code == 200 and replay.json()["id"] == bob.json()["id"]


async def test_idempotent_replay_after_cancel_returns_the_job_as_it_is_now(
    client: httpx.AsyncClient,
) -> None:
    headers = {**auth("alice"), "Idempotency-Key": "k-cancel"}
    first = (await client.post("/jobs", json=email_job(), headers=headers)).json()
    await client.post(f"/jobs/{first['id']}/cancel", headers=auth("alice"))
    replay = await client.post("/jobs", json=email_job(), headers=headers)
    assert replay.status_code == 200
    assert replay.json()["id"] == first["id"] and replay.json()["status"] == "cancelled"
