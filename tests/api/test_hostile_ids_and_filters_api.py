"""Hostile ids, filters and stored text: a job id that is no UUID, bad list parameters,
SQL metacharacters (stored verbatim, matching nothing as filters), NUL characters and input
keys the contract does not declare. Each is a 4xx with the API's error shape, or is kept as
sent; never a 5xx or a half-written job."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from .conftest import assert_error, assert_no_jobs, auth, email_job, post_raw

SQL_PAYLOADS = [
    "'; DROP TABLE jobs; --",
    "\" OR 1=1 --",
    "x' OR '1'='1",
    "$1; SELECT pg_sleep(10)",
    "%_\\",
    "jobs); DELETE FROM jobs WHERE (1=1",
]


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


async def test_nan_in_an_undeclared_input_key_never_reaches_the_store(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    raw = b'{"job_type":"email_processing","input":{"message_id":"m","extra":NaN}}'
    response = await post_raw(client, raw)
    assert response.status_code in (201, 422), response.text
    stored = await db.fetchval("SELECT input::text FROM jobs")
    assert stored is None or "NaN" not in stored


async def test_input_keys_the_contract_does_not_declare_are_kept_for_newer_workers(
    client: httpx.AsyncClient,
) -> None:
    body = {"job_type": "email_processing", "input": {"message_id": "m", "thread": "t-1"}}
    response = await client.post("/jobs", json=body, headers=auth("alice"))
    assert response.status_code == 201, response.text
    assert response.json()["input"] == {"message_id": "m", "thread": "t-1"}
