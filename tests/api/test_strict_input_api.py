"""Strict types (no coercion of booleans or strings into numbers, nor numbers into dates)
and the JSON limits of queue_core.json_values, enforced before the body is parsed: 422 with
the API's error shape, never 400 or 500, and the same limits as ``create()``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest
from hybridq_api import create_app
from pydantic import BaseModel

from queue_core import ContractRegistry, InvalidJob, Queue, Settings
from queue_core.json_values import JSON_MAX_DEPTH, JSON_MAX_NUMBER_CHARS

from .conftest import JSON, assert_error, assert_no_jobs, auth, email_job, post_raw


def nested(depth: int) -> dict[str, Any]:
    """An object nested ``depth`` levels (the top-level object is level 1)."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"priority": True}, "priority"),
        ({"priority": False}, "priority"),
        ({"priority": "5"}, "priority"),
        ({"priority": 5.0}, "priority"),
        ({"max_retries": "7"}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"delay_seconds": True}, "delay_seconds"),
        ({"delay_seconds": "10"}, "delay_seconds"),
        ({"scheduled_for": 1_900_000_000}, "scheduled_for"),
        ({"scheduled_for": True}, "scheduled_for"),
        ({"user_id": 7}, "user_id"),
        ({"input": {"message_id": True}}, "input.message_id"),
    ],
)
async def test_booleans_and_strings_are_never_coerced_into_numbers(
    client: httpx.AsyncClient, db: asyncpg.Connection, fields: dict[str, Any], field: str
) -> None:
    body = {**email_job(), **fields}
    single = await client.post("/jobs", json=body, headers=auth("admin"))
    error = assert_error(single, 422, "validation_error")
    assert error["message"].startswith(f"{field}:"), error
    batch = await client.post("/jobs/batch", json={"jobs": [body]}, headers=auth("admin"))
    error = assert_error(batch, 422, "validation_error")
    assert error["message"].startswith(f"jobs.0.{field}:"), error
    await assert_no_jobs(db)


async def test_integral_delay_seconds_is_still_a_number_of_seconds(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/jobs", json=email_job(delay_seconds=60), headers=auth("alice"))
    assert response.status_code == 201, response.text


class LaxInput(BaseModel):
    """An application's input model without strict config: the API is strict regardless."""

    count: int
    when: datetime | None = None


def lax_contracts() -> ContractRegistry:
    registry = ContractRegistry()

    async def handle(job: dict[str, Any]) -> None:
        return None

    registry.register_handler("lax_job", handle, input_model=LaxInput)
    return registry


@pytest.fixture
async def lax_client(api_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(api_settings, contracts=lax_contracts())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_input_models_are_applied_strictly_even_when_declared_lax(
    lax_client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    for count in ("7", True, 7.0):
        body = {"job_type": "lax_job", "input": {"count": count}}
        response = await lax_client.post("/jobs", json=body, headers=auth("alice"))
        error = assert_error(response, 422, "validation_error")
        assert error["message"].startswith("input.count:"), error
    await assert_no_jobs(db)
    good = {"count": 7, "when": "2030-01-01T00:00:00+00:00"}
    response = await lax_client.post(
        "/jobs", json={"job_type": "lax_job", "input": good}, headers=auth("alice")
    )
    assert response.status_code == 201, response.text
    assert response.json()["input"] == good, "stored as sent"


def body_with_input(value: Any) -> bytes:
    return json.dumps({"job_type": "briefing_generation", "input": value}).encode()


async def test_input_at_the_depth_limit_is_accepted_and_one_deeper_is_422(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    at_limit = {"topic": "t", "deep": nested(JSON_MAX_DEPTH - 1)}
    ok = await post_raw(client, body_with_input(at_limit))
    assert ok.status_code == 201, ok.text
    too_deep = {"topic": "t", "deep": nested(JSON_MAX_DEPTH)}
    error = assert_error(await post_raw(client, body_with_input(too_deep)), 422)
    assert error["message"].startswith("input:"), error
    assert f"{JSON_MAX_DEPTH} levels" in error["message"], error
    # In a batch the body's envelope is two levels deeper: the scan refuses it first.
    batch = b'{"jobs": [' + body_with_input(too_deep) + b"]}"
    error = assert_error(await post_raw(client, batch, path="/jobs/batch"), 422)
    assert f"nest {JSON_MAX_DEPTH} levels" in error["message"], error
    assert await db.fetchval("SELECT count(*) FROM jobs") == 1


async def test_the_api_and_create_refuse_the_same_input(
    client: httpx.AsyncClient, queue: Queue
) -> None:
    """One set of limits: what create() refuses, POST /jobs refuses (and the reverse)."""
    cases = {
        "deep": {"topic": "t", "deep": nested(JSON_MAX_DEPTH)},
        "long number": {"topic": "t", "n": int("9" * JSON_MAX_NUMBER_CHARS)},
        "nul": {"topic": "t\x00"},
        "fits": {"topic": "t", "deep": nested(JSON_MAX_DEPTH - 1)},
    }
    for name, value in cases.items():
        try:
            await queue.job_service.create(job_type="briefing_generation", input=value)
            created = True
        except InvalidJob:
            created = False
        response = await post_raw(client, body_with_input(value))
        assert (response.status_code == 201) == created, (name, response.text)
        assert response.status_code in (201, 422), (name, response.text)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 5_000 + b"]" * 5_000, id="5000-deep-array"),
        pytest.param(b'{"a":' * 5_000 + b"1" + b"}" * 5_000, id="5000-deep-object"),
        pytest.param(b'{"a":' * 960 + b"1" + b"}" * 960, id="960-deep"),
        pytest.param(
            b'{"job_type":"email_processing","input":{"message_id":"m","x":'
            + b"[" * 50_000 + b"]" * 50_000 + b"}}",
            id="deep-input",
        ),
        pytest.param(b'{"priority":' + b"9" * 5_000 + b"}", id="5000-digit-number"),
        pytest.param(
            b'{"job_type":"email_processing","input":{"message_id":"m","n":'
            + b"1" * (JSON_MAX_NUMBER_CHARS + 1) + b"}}",
            id="number-one-char-too-long",
        ),
        pytest.param(b'{"priority": 1e' + b"0" * 200 + b"}", id="long-exponent"),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param('{"job_type": "é"}'.encode("utf-16"), id="utf16"),
    ],
)
async def test_bodies_breaking_the_json_limits_are_422_before_parsing(
    client: httpx.AsyncClient, db: asyncpg.Connection, body: bytes
) -> None:
    for path in ("/jobs", "/jobs/batch"):
        response = await post_raw(client, body, path=path)
        error = assert_error(response, 422, "validation_error")
        assert error["message"].startswith("body:"), error
    await assert_no_jobs(db)


async def test_json_limits_are_checked_before_authentication_costs_anything(
    client: httpx.AsyncClient,
) -> None:
    """The scan needs no token: a hostile body is refused before anything else runs."""
    response = await client.post("/jobs", content=b"[" * 5_000, headers=JSON)
    assert_error(response, 422, "validation_error")


async def test_a_number_at_the_size_limit_is_accepted(client: httpx.AsyncClient) -> None:
    # -N of the limit's characters: json_values holds an int to a sign and 99 digits.
    digits = "-" + "1" * (JSON_MAX_NUMBER_CHARS - 1)
    raw = (
        '{"job_type":"briefing_generation","input":{"topic":"t","n":' + digits + "}}"
    ).encode()
    response = await post_raw(client, raw)
    assert response.status_code == 201, response.text
    assert response.json()["input"]["n"] == int(digits)
