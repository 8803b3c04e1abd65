"""Hostile and malformed request bodies: malformed JSON, wrong or unknown fields, NaN and
out-of-range numbers and dates, unknown job types, oversized values and batches. Every one is
a 4xx with the API's error shape (422 names the field), and nothing is written."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from .conftest import ClientFactory, assert_error, assert_no_jobs, auth, email_job, post_raw


def assert_invalid(response: httpx.Response, field: str) -> dict[str, Any]:
    """A 422 whose message starts with ``field`` (as a client names it)."""
    error = assert_error(response, 422)
    assert error["message"].startswith(f"{field}:"), (field, error)
    return error


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"job_type": "email_processing",}', b"{'job_type': 'x'}", b"nul", b'{"a":1}{'],
)
async def test_malformed_json_is_422_naming_the_body(
    client: httpx.AsyncClient, db: asyncpg.Connection, body: bytes
) -> None:
    error = assert_invalid(await post_raw(client, body), "body")
    assert error["code"] == "validation_error"
    assert_invalid(await post_raw(client, body, path="/jobs/batch"), "body")
    await assert_no_jobs(db)


@pytest.mark.parametrize("body", [b"null", b"[]", b'"job"', b"5", b"true", b""])
async def test_non_object_body_is_422(
    client: httpx.AsyncClient, db: asyncpg.Connection, body: bytes
) -> None:
    assert_invalid(await post_raw(client, body), "body")
    assert_invalid(await post_raw(client, body, path="/jobs/batch"), "body")
    await assert_no_jobs(db)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"input": {"message_id": 5}}, "input.message_id"),
        ({"input": {"message_id": None}}, "input.message_id"),
        ({"input": {"message_id": ["m"]}}, "input.message_id"),
        ({"input": {}}, "input.message_id"),
        ({"input": {"message_id": ""}}, "input.message_id"),
        ({"input": {"message_id": "m" * 201}}, "input.message_id"),
        ({"input": ["m"]}, "input"),
        ({"input": "message_id=m"}, "input"),
        ({"input": None}, "input"),
        ({"input": 7}, "input"),
        ({"priority": "high"}, "priority"),
        ({"priority": 1.5}, "priority"),
        ({"priority": [1]}, "priority"),
        ({"priority": 1001}, "priority"),
        ({"priority": -1001}, "priority"),
        ({"priority": 10**30}, "priority"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 101}, "max_retries"),
        ({"max_retries": {"n": 1}}, "max_retries"),
        ({"delay_seconds": -1}, "delay_seconds"),
        ({"delay_seconds": 367 * 86_400}, "delay_seconds"),
        ({"delay_seconds": "soon"}, "delay_seconds"),
        ({"scheduled_for": "tomorrow"}, "scheduled_for"),
        ({"scheduled_for": 12345}, "scheduled_for"),
        ({"user_id": 5}, "user_id"),
    ],
)
async def test_wrong_field_is_422_naming_it(
    client: httpx.AsyncClient, db: asyncpg.Connection, fields: dict[str, Any], field: str
) -> None:
    body = {**email_job(), **fields}
    assert_invalid(await client.post("/jobs", json=body, headers=auth("admin")), field)
    batch = await client.post("/jobs/batch", json={"jobs": [body]}, headers=auth("admin"))
    assert_invalid(batch, f"jobs.0.{field}")
    await assert_no_jobs(db)


UNKNOWN_FIELDS = [{"unexpected": 1}, {"id": str(uuid.uuid4())}, {"status": "succeeded"},
                  {"attempts": 0}, {"idempotency_key": "k"}]


@pytest.mark.parametrize("extra", UNKNOWN_FIELDS)
async def test_unknown_top_level_field_is_422_naming_it(
    client: httpx.AsyncClient, db: asyncpg.Connection, extra: dict[str, Any]
) -> None:
    [name] = extra
    body = {**email_job(), **extra}
    for path, payload in (("/jobs", body), ("/jobs/batch", {"jobs": [body]})):
        response = await client.post(path, json=payload, headers=auth("alice"))
        error = assert_error(response, 422, "validation_error")
        field = error["message"].split(":")[0]
        assert field.split(".")[-1] == name, error
        assert "Extra inputs are not permitted" in error["message"]
    await assert_no_jobs(db)


async def test_unknown_top_level_field_is_named_without_the_job_type_tag(
    client: httpx.AsyncClient,
) -> None:
    body = {**email_job(), "unexpected": 1}
    assert_invalid(await client.post("/jobs", json=body, headers=auth("alice")), "unexpected")
    batch = await client.post("/jobs/batch", json={"jobs": [body]}, headers=auth("alice"))
    assert_invalid(batch, "jobs.0.unexpected")


async def test_calendar_sync_days_out_of_range_or_not_an_int_is_422(
    client: httpx.AsyncClient,
) -> None:
    for days in (0, 91, "7", 7.5, True):
        body = {"job_type": "calendar_sync", "input": {"calendar_id": "c", "days": days}}
        assert_invalid(await client.post("/jobs", json=body, headers=auth("alice")), "input.days")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"job_type":"email_processing","input":{"message_id":NaN}}',
        b'{"job_type":"calendar_sync","input":{"calendar_id":"c","days":NaN}}',
        b'{"job_type":"calendar_sync","input":{"calendar_id":"c","days":Infinity}}',
        b'{"job_type":"calendar_sync","input":{"calendar_id":"c","days":-Infinity}}',
        b'{"job_type":"email_processing","input":{"message_id":"m"},"priority":NaN}',
        b'{"job_type":"email_processing","input":{"message_id":"m"},"priority":Infinity}',
        b'{"job_type":"email_processing","input":{"message_id":"m"},"max_retries":-Infinity}',
        b'{"job_type":"email_processing","input":{"message_id":"m"},"delay_seconds":NaN}',
        b'{"job_type":"email_processing","input":{"message_id":"m"},"delay_seconds":Infinity}',
        b'{"job_type":"email_processing","input":{"message_id":"m"},"priority":1e400}',
    ],
)
async def test_nan_and_infinity_are_422(
    client: httpx.AsyncClient, db: asyncpg.Connection, raw: bytes
) -> None:
    error = assert_error(await post_raw(client, raw), 422, "validation_error")
    field = error["message"].split(":")[0]
    assert field in {"input.message_id", "input.days", "priority", "max_retries",
                     "delay_seconds"}, error
    await assert_no_jobs(db)


@pytest.mark.parametrize(
    ("when", "reason"),
    [
        (datetime.now(UTC) - timedelta(hours=1), "past"),
        (datetime.now(UTC) - timedelta(days=3650), "past"),
        (datetime.now(UTC) + timedelta(days=367), "year"),
        (datetime(9999, 12, 31, tzinfo=UTC), "year"),
    ],
)
async def test_scheduled_for_out_of_range_is_422(
    client: httpx.AsyncClient, when: datetime, reason: str
) -> None:
    body = email_job(scheduled_for=when.isoformat())
    error = assert_invalid(await client.post("/jobs", json=body, headers=auth("alice")),
                           "scheduled_for")
    assert reason in error["message"]


async def test_scheduled_for_without_offset_is_422(client: httpx.AsyncClient) -> None:
    naive = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    error = assert_invalid(
        await client.post("/jobs", json=email_job(scheduled_for=naive), headers=auth("alice")),
        "scheduled_for",
    )
    assert "timezone" in error["message"]


async def test_scheduled_for_with_extreme_offsets_is_422_not_5xx(
    client: httpx.AsyncClient,
) -> None:
    for text in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                 "0001-01-01T00:00:00-23:59"):
        response = await client.post(
            "/jobs", json=email_job(scheduled_for=text), headers=auth("alice")
        )
        assert_invalid(response, "scheduled_for")


async def test_scheduled_for_and_delay_seconds_together_are_422(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    when = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    body = email_job(scheduled_for=when, delay_seconds=60)
    error = assert_error(await client.post("/jobs", json=body, headers=auth("alice")), 422)
    assert "scheduled_for" in error["message"] and "delay_seconds" in error["message"]
    await assert_no_jobs(db)


@pytest.mark.parametrize(
    ("job_type", "field"),
    [("no_such_type", "job_type"), ("", "job_type"), (None, "job_type"), (5, "job_type"),
     ("email_processing'; --", "job_type")],
)
async def test_unknown_or_missing_job_type_is_422(
    client: httpx.AsyncClient, db: asyncpg.Connection, job_type: Any, field: str
) -> None:
    body = {"job_type": job_type, "input": {"message_id": "m"}}
    error = assert_invalid(await client.post("/jobs", json=body, headers=auth("alice")), field)
    assert error["code"] == "validation_error"
    missing = await client.post("/jobs", json={"input": {}}, headers=auth("alice"))
    assert_invalid(missing, "job_type")
    await assert_no_jobs(db)


async def test_overlong_idempotency_key_is_422(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    ok = await client.post(
        "/jobs", json=email_job(), headers={**auth("alice"), "Idempotency-Key": "k" * 200}
    )
    assert ok.status_code == 201, ok.text
    for key in ("k" * 201, ""):
        response = await client.post(
            "/jobs", json=email_job(), headers={**auth("alice"), "Idempotency-Key": key}
        )
        error = assert_error(response, 422, "validation_error")
        assert "Idempotency-Key" in error["message"], error
    assert await db.fetchval("SELECT count(*) FROM jobs") == 1


async def test_overlong_or_empty_user_id_is_422(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    for user_id in ("u" * 201, ""):
        response = await client.post(
            "/jobs", json=email_job(user_id=user_id), headers=auth("admin")
        )
        assert_invalid(response, "user_id")
    ok = await client.post("/jobs", json=email_job(user_id="u" * 200), headers=auth("admin"))
    assert ok.status_code == 201, ok.text
    assert await db.fetchval("SELECT count(*) FROM jobs") == 1


async def test_input_larger_than_api_max_input_bytes_is_422(
    make_client: ClientFactory, db: asyncpg.Connection
) -> None:
    async with make_client(api_max_input_bytes=64) as client:
        fits = {"job_type": "briefing_generation", "input": {"topic": "t" * 40}}
        assert (await client.post("/jobs", json=fits, headers=auth("alice"))).status_code == 201
        too_big = {"job_type": "briefing_generation", "input": {"topic": "t" * 60}}
        error = assert_invalid(
            await client.post("/jobs", json=too_big, headers=auth("alice")), "input"
        )
        assert "64 bytes" in error["message"]
    assert await db.fetchval("SELECT count(*) FROM jobs") == 1


async def test_batch_larger_than_api_batch_max_is_422(
    make_client: ClientFactory, db: asyncpg.Connection
) -> None:
    async with make_client(api_batch_max=3) as client:
        ok = await client.post("/jobs/batch", json={"jobs": [email_job()] * 3},
                               headers=auth("alice"))
        assert ok.status_code == 201, ok.text
        response = await client.post("/jobs/batch", json={"jobs": [email_job()] * 4},
                                     headers=auth("alice"))
        assert_invalid(response, "jobs")
    assert await db.fetchval("SELECT count(*) FROM jobs") == 3


@pytest.mark.parametrize(
    "body", [{"jobs": []}, {}, {"jobs": None}, {"jobs": email_job()}, {"jobs": "x"}]
)
async def test_empty_or_malformed_batch_is_422(
    client: httpx.AsyncClient, db: asyncpg.Connection, body: dict[str, Any]
) -> None:
    assert_invalid(await client.post("/jobs/batch", json=body, headers=auth("alice")), "jobs")
    await assert_no_jobs(db)


async def test_batch_with_unknown_top_level_field_is_422(client: httpx.AsyncClient) -> None:
    body = {"jobs": [email_job()], "atomic": False}
    assert_invalid(await client.post("/jobs/batch", json=body, headers=auth("alice")), "atomic")


async def test_batch_item_naming_another_user_is_422(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    body = {"jobs": [email_job(), email_job(user_id="bob")]}
    error = assert_error(await client.post("/jobs/batch", json=body, headers=auth("alice")), 422)
    assert "user_id" in error["message"]
    await assert_no_jobs(db)
