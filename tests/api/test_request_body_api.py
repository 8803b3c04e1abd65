"""Request bodies the API must refuse before it validates anything: over the size limit
(declared by Content-Length or streamed), not JSON at all, or JSON Python cannot parse.
Each is a 4xx with the error shape, and nothing is written."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from .conftest import JSON, ClientFactory, assert_error, assert_no_jobs, auth, email_job, post_raw


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deeply-nested"),
        pytest.param(
            b'{"job_type":"email_processing","input":{"message_id":"m","x":'
            + b"[" * 50_000 + b"]" * 50_000 + b"}}",
            id="deeply-nested-input",
        ),
        pytest.param(b'{"priority":' + b"9" * 5000 + b"}", id="huge-integer"),
    ],
)
async def test_unparseable_body_is_422_never_400(
    client: httpx.AsyncClient, db: asyncpg.Connection, body: bytes
) -> None:
    response = await post_raw(client, body)
    assert_error(response, 422, "validation_error")
    await assert_no_jobs(db)


async def test_body_over_the_limit_with_content_length_is_413(
    make_client: ClientFactory, db: asyncpg.Connection
) -> None:
    async with make_client(api_max_body_bytes=2048) as client:
        padding = "p" * 4096
        body = json.dumps({**email_job(), "padding": padding}).encode()
        response = await post_raw(client, body)
        error = assert_error(response, 413, "body_too_large")
        assert "2048" in error["message"]
        batch = await post_raw(client, body, path="/jobs/batch")
        assert_error(batch, 413, "body_too_large")
        unauthenticated = await client.post("/jobs", content=body, headers=JSON)
        assert_error(unauthenticated, 413, "body_too_large")
    await assert_no_jobs(db)


async def chunks(body: bytes, size: int = 512) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start:start + size]


async def test_streamed_body_within_the_limit_is_accepted(
    make_client: ClientFactory,
) -> None:
    async with make_client(api_max_body_bytes=2048) as client:
        body = json.dumps(email_job("streamed")).encode()
        response = await client.post("/jobs", content=chunks(body, 8),
                                     headers={**auth("alice"), **JSON})
        assert response.status_code == 201, response.text
        assert response.json()["input"] == {"message_id": "streamed"}


async def test_streamed_body_over_the_limit_is_413(
    make_client: ClientFactory, db: asyncpg.Connection
) -> None:
    async with make_client(api_max_body_bytes=2048) as client:
        body = json.dumps({**email_job(), "padding": "p" * 8192}).encode()
        response = await client.post("/jobs", content=chunks(body),
                                     headers={**auth("alice"), **JSON})
        assert "content-length" not in {k.lower() for k in response.request.headers}
        assert_error(response, 413, "body_too_large")
    await assert_no_jobs(db)


async def test_streamed_body_over_the_limit_is_rejected_and_writes_nothing(
    make_client: ClientFactory, db: asyncpg.Connection
) -> None:
    """Whatever the status (see the xfail above), an oversized stream is a 4xx."""
    async with make_client(api_max_body_bytes=2048) as client:
        body = json.dumps({**email_job(), "padding": "p" * 8192}).encode()
        response = await client.post("/jobs", content=chunks(body),
                                     headers={**auth("alice"), **JSON})
        assert response.status_code in (400, 413), response.text
        assert_error(response, response.status_code)
    await assert_no_jobs(db)


async def test_body_without_json_content_type_is_422(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    body = json.dumps(email_job()).encode()
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
        headers = auth("alice") | ({"Content-Type": content_type} if content_type else {})
        response = await client.post("/jobs", content=body, headers=headers)
        assert_error(response, 422, "validation_error")
    await assert_no_jobs(db)
