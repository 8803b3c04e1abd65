"""Authentication (401), the admin-only route (403) and isolation between users: another
user's job is as absent as a missing one, on every route; an admin sees every job."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from .conftest import TOKENS, assert_error, auth, email_job

JOB_ID = str(uuid.uuid4())
PROTECTED: list[tuple[str, str, Any]] = [
    ("POST", "/jobs", email_job()),
    ("POST", "/jobs/batch", {"jobs": [email_job()]}),
    ("GET", "/jobs", None),
    ("GET", f"/jobs/{JOB_ID}", None),
    ("POST", f"/jobs/{JOB_ID}/cancel", None),
    ("POST", f"/jobs/{JOB_ID}/retry", None),
    ("GET", "/stats", None),
    ("GET", "/metrics", None),
]
BAD_AUTHORIZATION = [
    pytest.param(None, id="no-header"),
    pytest.param("", id="empty"),
    pytest.param("Bearer", id="scheme-only"),
    pytest.param("Bearer ", id="scheme-and-space"),
    pytest.param(TOKENS["alice"], id="token-without-scheme"),
    pytest.param(f"Basic {TOKENS['alice']}", id="basic-scheme"),
    pytest.param(f"Token {TOKENS['alice']}", id="other-scheme"),
    pytest.param("Bearer hq_not-a-configured-token", id="unknown-token"),
    pytest.param(f"Bearer {TOKENS['alice']}x", id="token-with-extra-char"),
    pytest.param(f"Bearer {TOKENS['alice'][:-1]}", id="truncated-token"),
    pytest.param("Bearer " + "x" * 10_000, id="very-long-token"),
    pytest.param(f"Bearer {TOKENS['alice']} {TOKENS['bob']}", id="two-tokens"),
    pytest.param("Bearer ' OR 1=1 --", id="sql-metacharacters"),
]


@pytest.mark.parametrize("authorization", BAD_AUTHORIZATION)
async def test_protected_routes_without_a_valid_token_are_401(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path, body in PROTECTED:
        response = await client.request(method, path, json=body, headers=headers)
        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"] == "Bearer", (method, path)


async def test_unauthenticated_request_creates_nothing(client: httpx.AsyncClient) -> None:
    await client.post("/jobs", json=email_job(), headers={"Authorization": "Bearer nope"})
    listed = await client.get("/jobs", headers=auth("admin"))
    assert listed.json()["jobs"] == []


async def test_bad_token_is_401_even_when_the_body_is_invalid(client: httpx.AsyncClient) -> None:
    response = await client.post("/jobs", json={"job_type": 1}, headers={"Authorization": "x"})
    assert_error(response, 401, "unauthorized")


async def test_scheme_is_case_insensitive(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/jobs", headers={"Authorization": f"bearer {TOKENS['alice']}"}
    )
    assert response.status_code == 200, response.text


async def test_admin_routes_with_a_user_token_are_403(client: httpx.AsyncClient) -> None:
    for path in ("/stats", "/metrics"):
        for who in ("alice", "bob"):
            assert_error(await client.get(path, headers=auth(who)), 403, "forbidden")


async def test_metrics_for_an_admin_count_every_users_jobs(client: httpx.AsyncClient) -> None:
    for who in ("alice", "bob"):
        await client.post("/jobs", json=email_job(), headers=auth(who))
    response = await client.get("/metrics", headers=auth("admin"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert 'job_type="email_processing"' in response.text


async def test_health_and_readiness_need_no_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200


async def test_another_users_job_is_404_on_every_route(client: httpx.AsyncClient) -> None:
    bobs = (await client.post("/jobs", json=email_job("secret"), headers=auth("bob"))).json()
    for method, path in (
        ("GET", f"/jobs/{bobs['id']}"),
        ("POST", f"/jobs/{bobs['id']}/cancel"),
        ("POST", f"/jobs/{bobs['id']}/retry"),
    ):
        response = await client.request(method, path, headers=auth("alice"))
        error = assert_error(response, 404, "not_found")
        # The same answer as for an id that does not exist: nothing about the owner leaks.
        assert "bob" not in error["message"] and "secret" not in error["message"]
    still = await client.get(f"/jobs/{bobs['id']}", headers=auth("bob"))
    assert still.json()["status"] == "queued", "alice's cancel must not have touched it"


async def test_another_users_cancelled_job_cannot_be_retried(client: httpx.AsyncClient) -> None:
    bobs = (await client.post("/jobs", json=email_job(), headers=auth("bob"))).json()
    await client.post(f"/jobs/{bobs['id']}/cancel", headers=auth("bob"))
    assert_error(
        await client.post(f"/jobs/{bobs['id']}/retry", headers=auth("alice")), 404, "not_found"
    )
    still = await client.get(f"/jobs/{bobs['id']}", headers=auth("bob"))
    assert still.json()["status"] == "cancelled"


async def test_list_shows_users_only_their_own_jobs_and_admin_all(
    client: httpx.AsyncClient,
) -> None:
    ids: dict[str, set[str]] = {"alice": set(), "bob": set(), "admin": set()}
    for who in ("alice", "bob", "alice", "admin", "bob", "alice"):
        created = await client.post("/jobs", json=email_job(who), headers=auth(who))
        ids[who].add(created.json()["id"])

    async def listed(who: str, **params: str) -> set[str]:
        response = await client.get("/jobs", params=params, headers=auth(who))
        assert response.status_code == 200, response.text
        return {j["id"] for j in response.json()["jobs"]}

    assert await listed("alice") == ids["alice"]
    assert await listed("bob") == ids["bob"]
    assert await listed("admin") == ids["alice"] | ids["bob"] | ids["admin"]
    assert await listed("alice", status="queued", job_type="email_processing") == ids["alice"]


async def test_cursor_from_another_users_job_reveals_nothing(client: httpx.AsyncClient) -> None:
    alices = (await client.post("/jobs", json=email_job(), headers=auth("alice"))).json()
    bobs = (await client.post("/jobs", json=email_job(), headers=auth("bob"))).json()
    response = await client.get(f"/jobs?cursor={bobs['id']}", headers=auth("alice"))
    assert [j["id"] for j in response.json()["jobs"]] == [alices["id"]]


async def test_admin_reads_cancels_and_retries_any_job(client: httpx.AsyncClient) -> None:
    alices = (await client.post("/jobs", json=email_job(), headers=auth("alice"))).json()
    got = await client.get(f"/jobs/{alices['id']}", headers=auth("admin"))
    assert got.status_code == 200 and got.json()["user_id"] == "alice"
    cancelled = await client.post(f"/jobs/{alices['id']}/cancel", headers=auth("admin"))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    retried = await client.post(f"/jobs/{alices['id']}/retry", headers=auth("admin"))
    assert retried.status_code == 200 and retried.json()["status"] == "queued"


async def test_users_cannot_see_ownerless_admin_jobs(client: httpx.AsyncClient) -> None:
    ownerless = (await client.post("/jobs", json=email_job(), headers=auth("admin"))).json()
    assert ownerless["user_id"] is None
    assert_error(
        await client.get(f"/jobs/{ownerless['id']}", headers=auth("alice")), 404, "not_found"
    )
