"""Fixtures for the API tests: the real app (``create_app``) with its lifespan running,
against the test's own Postgres schema and Redis namespace, driven by an
``httpx.AsyncClient`` over ASGI.

Three principals: users "alice" and "bob", and an admin. Their tokens are fixed test strings;
the app is configured with their SHA-256 entries, as in production.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from hybridq_api import create_app
from hybridq_api.auth import config_entry

from queue_core import Settings

TOKENS = {
    "alice": "hq_test-token-of-alice-0123456789abcdefghijklmnop",
    "bob": "hq_test-token-of-bob-0123456789abcdefghijklmnopqr",
    "admin": "hq_test-token-of-the-admin-0123456789abcdefghijk",
}
JSON = {"Content-Type": "application/json"}
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"
DEAD_DATABASE_URL = "postgresql://127.0.0.1:1/x"


def token_entries() -> list[str]:
    return [
        config_entry(TOKENS["alice"], user_id="alice"),
        config_entry(TOKENS["bob"], user_id="bob"),
        config_entry(TOKENS["admin"], admin=True),
    ]


def auth(who: str) -> dict[str, str]:
    """The Authorization header of ``who`` ("alice", "bob" or "admin")."""
    return {"Authorization": f"Bearer {TOKENS[who]}"}


def email_job(message_id: str = "m-1", **fields: Any) -> dict[str, Any]:
    return {"job_type": "email_processing", "input": {"message_id": message_id}, **fields}


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is ``status`` with the API's one error shape; returns the error object."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error.get("code"), str) and error["code"], body
    assert isinstance(error.get("message"), str) and error["message"], body
    if code is not None:
        assert error["code"] == code, body
    return error


async def post_raw(
    client: httpx.AsyncClient, body: bytes, who: str = "alice", path: str = "/jobs"
) -> httpx.Response:
    """POST ``body`` as it is (httpx's json= refuses NaN and cannot send malformed JSON)."""
    return await client.post(path, content=body, headers={**auth(who), **JSON})


async def assert_no_jobs(db: asyncpg.Connection) -> None:
    assert await db.fetchval("SELECT count(*) FROM jobs") == 0


def api_settings_for(settings: Settings, **overrides: Any) -> Settings:
    return settings.model_copy(
        update={"api_tokens": token_entries(), "handlers_module": "handlers", **overrides}
    )


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app for ``settings`` with its lifespan running, and a client talking to it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1", timeout=30
        ) as client:
            yield client


ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return api_settings_for(settings)


@pytest.fixture
async def client(api_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(api_settings) as c:
        yield c


@pytest.fixture
def make_client(api_settings: Settings) -> ClientFactory:
    """``async with make_client(redis_url=..., api_rate_limit_burst=...) as c``: another app
    on the test's schema and namespace, with some settings changed."""

    def factory(**overrides: Any) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        return serve(api_settings.model_copy(update=overrides))

    return factory


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the test's schema, for arranging and checking rows directly."""
    conn = await asyncpg.connect(
        settings.database_url, server_settings={"search_path": settings.db_schema or "public"}
    )
    try:
        yield conn
    finally:
        await conn.close()
