"""JobService against real PostgreSQL and Redis: create, create_many, get, cancel, retry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from queue_core import InvalidJob, JobNotFound, JobStateConflict, Queue, keys


async def ready_ids(queue: Queue, job_type: str) -> list[str]:
    members = await queue.redis.zrange(
        keys.type_keys(queue.settings.namespace, job_type).ready, 0, -1
    )
    return [str(keys.job_id_from_member(m)) for m in members]


async def scheduled_ids(queue: Queue, job_type: str) -> list[str]:
    k = keys.type_keys(queue.settings.namespace, job_type)
    return [str(keys.job_id_from_member(m)) for m in await queue.redis.zrange(k.scheduled, 0, -1)]


async def test_create_stores_job_and_indexes_it_as_ready(queue: Queue) -> None:
    job = await queue.job_service.create(
        job_type="email_processing", input={"message_id": "m-1"}, user_id="user-1"
    )
    assert job["status"] == "queued"
    assert job["priority"] == 0 and job["max_retries"] == 3 and job["attempts"] == 0
    assert job["input"] == {"message_id": "m-1"} and job["user_id"] == "user-1"
    assert uuid.UUID(job["id"]).version == 7
    assert await queue.job_service.get(job["id"]) == job
    await queue.job_service.wait_indexed()  # create() returns at the commit
    assert await ready_ids(queue, "email_processing") == [job["id"]]


async def test_create_with_future_time_goes_to_scheduled_set(queue: Queue) -> None:
    when = datetime.now(UTC) + timedelta(hours=1)
    job = await queue.job_service.create("calendar_sync", {"c": 1}, scheduled_for=when)
    assert abs((job["scheduled_for"] - when).total_seconds()) < 0.001
    await queue.job_service.wait_indexed()
    assert await scheduled_ids(queue, "calendar_sync") == [job["id"]]
    assert await ready_ids(queue, "calendar_sync") == []


async def test_create_many_inserts_all_in_order_and_indexes_them(queue: Queue) -> None:
    jobs = await queue.job_service.create_many(
        [{"job_type": "t", "input": {"n": i}, "priority": i % 2} for i in range(50)]
    )
    assert [j["input"]["n"] for j in jobs] == list(range(50))
    await queue.job_service.wait_indexed()
    ids = await ready_ids(queue, "t")
    expected = [j["id"] for j in jobs if j["priority"] == 1] + [
        j["id"] for j in jobs if j["priority"] == 0
    ]
    assert ids == expected


async def test_create_many_is_all_or_nothing_on_invalid_item(queue: Queue) -> None:
    with pytest.raises(InvalidJob, match=r"jobs\[1\]"):
        await queue.job_service.create_many(
            [{"job_type": "t", "input": {}}, {"job_type": "t", "input": []}]
        )
    count = await queue.pool.fetchval("SELECT count(*) FROM jobs")
    assert count == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"job_type": "", "input": {}}, "job_type"),
        ({"job_type": "has space", "input": {}}, "job_type"),
        ({"job_type": "{tag}", "input": {}}, "job_type"),
        ({"job_type": 5, "input": {}}, "job_type"),
        ({"job_type": "t", "input": [1, 2]}, "JSON object"),
        ({"job_type": "t", "input": "text"}, "JSON object"),
        ({"job_type": "t", "input": {"x": float("nan")}}, "JSON"),
        ({"job_type": "t", "input": {"x": object()}}, "JSON"),
        ({"job_type": "t", "input": {}, "priority": 1001}, "priority"),
        ({"job_type": "t", "input": {}, "priority": "high"}, "priority"),
        ({"job_type": "t", "input": {}, "priority": True}, "priority"),
        ({"job_type": "t", "input": {}, "max_retries": -1}, "max_retries"),
        ({"job_type": "t", "input": {}, "max_retries": 101}, "max_retries"),
        ({"job_type": "t", "input": {}, "user_id": ""}, "user_id"),
        ({"job_type": "t", "input": {}, "user_id": "u" * 201}, "user_id"),
        ({"job_type": "t", "input": {}, "scheduled_for": datetime(2030, 1, 1)}, "timezone"),
        ({"job_type": "t", "input": {}, "scheduled_for": "tomorrow"}, "datetime"),
        (
            {"job_type": "t", "input": {}, "scheduled_for": datetime(1990, 1, 1, tzinfo=UTC)},
            "out of range",
        ),
    ],
)
async def test_create_rejects_bad_arguments_with_invalid_job(
    queue: Queue, kwargs: dict, message: str
) -> None:
    with pytest.raises(InvalidJob, match=message):
        await queue.job_service.create(**kwargs)
    assert await queue.pool.fetchval("SELECT count(*) FROM jobs") == 0


async def test_sql_metacharacters_in_input_are_stored_verbatim(queue: Queue) -> None:
    evil = {"q": "'; DROP TABLE jobs; --", "u": "\u0000".replace("\u0000", "") + "ünï€ode"}
    job = await queue.job_service.create("t", evil, user_id="x'); --")
    assert (await queue.job_service.get(job["id"]))["input"] == evil


async def test_get_unknown_or_malformed_id_raises_job_not_found(queue: Queue) -> None:
    with pytest.raises(JobNotFound):
        await queue.job_service.get(str(uuid.uuid4()))
    with pytest.raises(JobNotFound):
        await queue.job_service.get("not-a-uuid")


async def test_cancel_queued_job_removes_it_from_redis(queue: Queue) -> None:
    job = await queue.job_service.create("t", {})
    later = await queue.job_service.create(
        "t", {}, scheduled_for=datetime.now(UTC) + timedelta(minutes=5)
    )
    assert (await queue.job_service.cancel(job["id"]))["status"] == "cancelled"
    assert (await queue.job_service.cancel(later["id"]))["status"] == "cancelled"
    assert await ready_ids(queue, "t") == []
    assert await scheduled_ids(queue, "t") == []


async def test_cancel_finished_job_is_a_state_conflict(queue: Queue) -> None:
    job = await queue.job_service.create("t", {})
    await queue.job_service.cancel(job["id"])
    with pytest.raises(JobStateConflict) as info:
        await queue.job_service.cancel(job["id"])
    assert info.value.status == "cancelled"


async def test_retry_requeues_cancelled_job_and_reindexes_it(queue: Queue) -> None:
    job = await queue.job_service.create("t", {})
    await queue.job_service.cancel(job["id"])
    again = await queue.job_service.retry(job["id"])
    assert again["status"] == "queued" and again["finished_at"] is None
    assert await ready_ids(queue, "t") == [job["id"]]


async def test_retry_of_queued_job_is_a_state_conflict(queue: Queue) -> None:
    job = await queue.job_service.create("t", {})
    with pytest.raises(JobStateConflict, match="queued"):
        await queue.job_service.retry(job["id"])


async def test_create_succeeds_when_redis_is_unreachable(queue: Queue) -> None:
    from queue_core.enqueue.service import JobService
    from queue_core.index import RedisIndex, create_client

    dead = create_client("redis://127.0.0.1:1/0")
    service = JobService(queue.store, RedisIndex(dead, queue.settings.namespace))
    try:
        job = await service.create("t", {"n": 1})
    finally:
        await dead.aclose()
    assert (await queue.job_service.get(job["id"]))["status"] == "queued"
