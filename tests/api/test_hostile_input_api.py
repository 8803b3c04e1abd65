"""Hostile and malformed requests: every one is a 4xx with the API's error shape (422 names
the field), nothing is written, and SQL metacharacters are stored verbatim."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from .conftest import ClientFactory, assert_error, assert_no_jobs, auth, email_job, post_raw

SQL_PAYLOADS = [
    "'; DROP TABLE jobs; --",
    "\" OR 1=1 --",
    "x' OR '1'='1",
    "$1; SELECT pg_sleep(10)",
    "%_\\",
    "jobs); DELETE FROM jobs WHERE (1=1",
]


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


async def test_nan_in_an_undeclared_input_key_never_reaches_the_store(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    raw = b'{"job_type":"email_processing","input":{"message_id":"m","extra":NaN}}'
    response = await post_raw(client, raw)
    assert response.status_code in (201, 422), response.text
    stored = await db.fetchval("SELECT input::text FROM jobs")
    assert stored is None or "NaN" not in stored


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


@pytest.mark.parametrize(
    "job_id", ["abc", "1' OR '1'='1", "0" * 5000, "%00", "12345678-1234-1234-1234-12345678901z"]
)
async def test_non_uuid_job_id_is_422_or_404(client: httpx.AsyncClient, job_id: str) -> None:
    for method, path in (
        ("GET", f"/jobs/{job_id}"),
        ("POST", f"/jobs/{job_id}/cancel"),
        ("POST", f"/jobs/{job_id}/retry"),
    ):
        response = await client.request(method, path, headers=auth("alice"))
        assert response.status_code in (404, 422), (path, response.text)
        assert_error(response, response.status_code)


@pytest.mark.parametrize(
    "params",
    [
        {"status": "done"},
        {"status": "' OR 1=1 --"},
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "ten"},
        {"cursor": "not-a-uuid"},
        {"cursor": "' OR 1=1 --"},
        {"job_type": ""},
        {"job_type": "x" * 101},
    ],
)
async def test_bad_list_parameters_are_422_naming_them(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    [name] = params
    response = await client.get("/jobs", params=params, headers=auth("alice"))
    error = assert_error(response, 422, "validation_error")
    # "query.status", but "job_type" (errors._field_of drops the "query" of a name it
    # also knows as a body field): either way the parameter is named.
    assert error["message"].split(":")[0] in (f"query.{name}", name), error


async def test_sql_metacharacters_are_stored_verbatim(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    created = []
    for text in SQL_PAYLOADS:
        response = await client.post(
            "/jobs",
            json={"job_type": "briefing_generation", "input": {"topic": text},
                  "user_id": text},
            headers={**auth("admin"), "Idempotency-Key": text},
        )
        assert response.status_code == 201, response.text
        job = response.json()
        assert job["input"] == {"topic": text} and job["user_id"] == text
        created.append(job)
    for text, job in zip(SQL_PAYLOADS, created, strict=True):
        got = await client.get(f"/jobs/{job['id']}", headers=auth("admin"))
        assert got.json()["input"]["topic"] == text
        row = await db.fetchrow(
            "SELECT input->>'topic' AS topic, user_id, idempotency_key FROM jobs"
            " WHERE id = $1::uuid", job["id"],
        )
        assert tuple(row) == (text, text, text)
    assert await db.fetchval("SELECT count(*) FROM jobs") == len(SQL_PAYLOADS)


async def test_sql_metacharacters_in_filters_match_nothing(client: httpx.AsyncClient) -> None:
    await client.post("/jobs", json=email_job(), headers=auth("alice"))
    for text in SQL_PAYLOADS:
        response = await client.get("/jobs", params={"job_type": text}, headers=auth("admin"))
        assert response.status_code == 200, response.text
        assert response.json()["jobs"] == []


async def test_nul_characters_are_rejected_without_a_server_error(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """PostgreSQL text cannot hold U+0000: a 4xx, never a 5xx or a half-written job."""
    attempts = [
        client.post("/jobs", json=email_job("m\x00"), headers=auth("alice")),
        client.post("/jobs", json=email_job(user_id="u\x00"), headers=auth("admin")),
        client.get("/jobs", params={"job_type": "x\x00"}, headers=auth("alice")),
    ]
    for attempt in attempts:
        response = await attempt
        assert 400 <= response.status_code < 500, response.text
        assert_error(response, response.status_code)
    await assert_no_jobs(db)


async def test_input_keys_the_contract_does_not_declare_are_kept_for_newer_workers(
    client: httpx.AsyncClient,
) -> None:
    body = {"job_type": "email_processing", "input": {"message_id": "m", "thread": "t-1"}}
    response = await client.post("/jobs", json=body, headers=auth("alice"))
    assert response.status_code == 201, response.text
    assert response.json()["input"] == {"message_id": "m", "thread": "t-1"}
