"""Dashboard sessions: the cookie holds a random session id (never a token), Postgres holds
its hash with an idle and an absolute expiry, logout ends it on every replica, and the
cookie is worth nothing anywhere else. Secure cookies, and no login over plain http but
from this machine."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from hybridq_api import create_app
from hybridq_api.auth import hash_token, new_token

from queue_core import Queue, Settings
from queue_core.store import PgTokenStore

from .conftest import TOKENS, ClientFactory, assert_error, auth
from .test_dashboard_api import assert_html_page, csrf_of, login

COOKIE = "hybridq_session"


def session_cookie(response: httpx.Response) -> str:
    """The Set-Cookie header of the session cookie."""
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{COOKIE}="):
            return header
    raise AssertionError(f"no {COOKIE} cookie set: {response.headers}")


async def test_login_sets_a_random_httponly_strict_session_cookie_not_the_token(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    response = await login(client)
    assert response.status_code == 303 and response.headers["location"] == "/dashboard"
    cookie = session_cookie(response)
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    value = client.cookies[COOKIE]
    assert TOKENS["admin"] not in cookie and len(value) == 43
    # The token-holding cookie of older versions is cleared.
    assert any(
        h.startswith("hybridq_dashboard=") and "Max-Age=0" in h
        for h in response.headers.get_list("set-cookie")
    )
    # Postgres holds only the id's hash.
    stored = await db.fetchval("SELECT id_hash FROM dashboard_sessions")
    assert stored == hashlib.sha256(value.encode()).hexdigest()
    assert await db.fetchval("SELECT count(*) FROM dashboard_sessions WHERE id_hash = $1",
                             value) == 0
    assert_html_page(await client.get("/dashboard"), 200)


async def test_login_over_https_sets_a_secure_cookie(client: httpx.AsyncClient) -> None:
    response = await client.post("https://test/dashboard/login", data={"token": TOKENS["admin"]})
    assert response.status_code == 303, response.text
    assert "Secure" in session_cookie(response)


@pytest.mark.parametrize(
    ("base_url", "client_address"),
    [
        pytest.param("http://jobs.example.com", "127.0.0.1", id="proxy-on-this-host-untrusted"),
        pytest.param("http://127.0.0.1", "203.0.113.7", id="remote-client"),
        pytest.param("http://10.0.0.5:8000", "10.0.0.9", id="lan"),
    ],
)
async def test_login_over_plain_http_from_another_machine_is_refused(
    api_settings: Settings, db: asyncpg.Connection, base_url: str, client_address: str
) -> None:
    app = create_app(api_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(client_address, 5000))
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            response = await login(client)
            assert_html_page(response, 403)
            assert "https" in response.text and "--proxy-headers" in response.text
            assert "set-cookie" not in response.headers
    assert await db.fetchval("SELECT count(*) FROM dashboard_sessions") == 0


async def test_logout_then_replayed_cookie_is_refused(client: httpx.AsyncClient) -> None:
    await login(client)
    page = await client.get("/dashboard")
    csrf, old_cookie = csrf_of(page), client.cookies[COOKIE]
    logout = await client.post("/dashboard/logout", data={"csrf": csrf})
    assert logout.status_code == 303
    assert COOKIE not in client.cookies
    client.cookies.set(COOKIE, old_cookie, path="/")  # the attacker's copy
    replay = await client.get("/dashboard")
    assert_html_page(replay, 401)
    assert 'action="/dashboard/login"' in replay.text
    assert (await client.get("/dashboard/stats")).status_code == 401
    action = await client.post("/dashboard/failures/retry",
                               data={"csrf": csrf, "job_type": "email_processing"})
    assert_html_page(action, 403)


async def test_session_cookie_used_as_a_bearer_token_is_401(client: httpx.AsyncClient) -> None:
    await login(client)
    session_id = client.cookies[COOKIE]
    client.cookies.clear()
    for path in ("/stats", "/jobs", "/metrics", "/openapi.json"):
        response = await client.get(path, headers={"Authorization": f"Bearer {session_id}"})
        assert_error(response, 401, "unauthorized")


async def test_the_session_cookie_authorizes_no_api_route(client: httpx.AsyncClient) -> None:
    await login(client)
    assert_error(await client.get("/stats"), 401, "unauthorized")
    assert_error(await client.get("/jobs"), 401, "unauthorized")


async def test_idle_session_ends(client: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    await login(client)
    assert_html_page(await client.get("/dashboard"), 200)
    await db.execute("UPDATE dashboard_sessions SET last_seen_at = now() - interval '31 min'")
    assert_html_page(await client.get("/dashboard"), 401)


async def test_session_ends_at_its_absolute_expiry_however_active(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await login(client)
    expires = await db.fetchval("SELECT expires_at FROM dashboard_sessions")
    assert_html_page(await client.get("/dashboard"), 200)
    assert await db.fetchval("SELECT expires_at FROM dashboard_sessions") == expires
    await db.execute("UPDATE dashboard_sessions SET expires_at = now() - interval '1 s'")
    assert_html_page(await client.get("/dashboard"), 401)


async def test_the_pages_own_refresh_does_not_keep_the_session_alive(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await login(client)
    await db.execute("UPDATE dashboard_sessions SET last_seen_at = now() - interval '10 min'")
    before = await db.fetchval("SELECT last_seen_at FROM dashboard_sessions")
    assert (await client.get("/dashboard/stats")).status_code == 200
    assert await db.fetchval("SELECT last_seen_at FROM dashboard_sessions") == before
    assert_html_page(await client.get("/dashboard"), 200)
    assert await db.fetchval("SELECT last_seen_at FROM dashboard_sessions") > before


async def test_logins_delete_sessions_that_have_ended(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await login(client)
    await db.execute("UPDATE dashboard_sessions SET expires_at = now() - interval '1 s'")
    client.cookies.clear()
    await login(client)
    assert await db.fetchval("SELECT count(*) FROM dashboard_sessions") == 1


async def test_a_session_is_shared_by_replicas_and_logout_ends_it_on_all(
    client: httpx.AsyncClient, make_client: ClientFactory
) -> None:
    await login(client)
    session_id = client.cookies[COOKIE]
    async with make_client() as other:
        other.cookies.set(COOKIE, session_id, path="/")
        page = await other.get("/dashboard")
        assert_html_page(page, 200)
        logout = await other.post("/dashboard/logout", data={"csrf": csrf_of(page)})
        assert logout.status_code == 303
    assert_html_page(await client.get("/dashboard"), 401)


@pytest.fixture
async def managed_admin(queue: Queue) -> AsyncIterator[tuple[str, PgTokenStore]]:
    tokens = PgTokenStore(queue.pool)
    token = new_token()
    await tokens.insert_api_token(
        hash_token(token), user_id=None, admin=True, name="ops", expires_at=None
    )
    yield token, tokens


async def test_revoking_the_admin_token_ends_its_sessions(
    make_client: ClientFactory,
    db: asyncpg.Connection,
    managed_admin: tuple[str, PgTokenStore],
) -> None:
    token, tokens = managed_admin
    async with make_client(api_token_cache_seconds=0) as client:
        response = await client.post("/dashboard/login", data={"token": token})
        assert response.status_code == 303, response.text
        assert_html_page(await client.get("/dashboard"), 200)
        [row] = await tokens.list_api_tokens()
        await tokens.revoke_api_token(row.id)
        assert_html_page(await client.get("/dashboard"), 401)
    assert await db.fetchval("SELECT count(*) FROM dashboard_sessions") == 0


async def test_login_goes_on_to_a_docs_page_but_nowhere_else(client: httpx.AsyncClient) -> None:
    for wanted, expected in [("/docs", "/docs"), ("/redoc", "/redoc"),
                             ("https://evil.example/", "/dashboard"), ("//evil", "/dashboard")]:
        response = await client.post(
            "/dashboard/login", data={"token": TOKENS["admin"], "next": wanted}
        )
        assert response.headers["location"] == expected, (wanted, response.headers)


async def test_a_user_token_opens_no_session(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    response = await client.post("/dashboard/login", data={"token": TOKENS["alice"]})
    assert_html_page(response, 401)
    assert await db.fetchval("SELECT count(*) FROM dashboard_sessions") == 0
    assert (await client.get("/jobs", headers=auth("alice"))).status_code == 200
