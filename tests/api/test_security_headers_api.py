"""Security headers on every kind of response (JSON, errors, the size limit's 413, HTML),
no server banner, and no redirect built from the Host header."""

from __future__ import annotations

import httpx
import pytest

from .conftest import JSON, ClientFactory, auth, email_job

JSON_POLICY = "default-src 'none'; frame-ancestors 'none'"


def assert_security_headers(response: httpx.Response) -> None:
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff", dict(headers)
    assert headers["cache-control"] == "no-store", dict(headers)
    assert headers["x-frame-options"] == "DENY", dict(headers)
    assert headers["referrer-policy"] == "no-referrer", dict(headers)
    assert "frame-ancestors 'none'" in headers["content-security-policy"], dict(headers)
    assert "server" not in headers, dict(headers)


async def test_responses_carrying_job_data_are_never_cached(client: httpx.AsyncClient) -> None:
    created = await client.post("/jobs", json=email_job(), headers=auth("alice"))
    assert created.status_code == 201
    listed = await client.get("/jobs", headers=auth("alice"))
    one = await client.get(f"/jobs/{created.json()['id']}", headers=auth("alice"))
    for response in (created, listed, one):
        assert_security_headers(response)
        assert response.headers["content-security-policy"] == JSON_POLICY


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/jobs", 401),
        ("GET", "/nowhere", 404),
        ("DELETE", "/jobs", 405),
        ("GET", "/jobs/not-a-uuid", 422),
        ("GET", "/dashboard", 401),
    ],
)
async def test_every_kind_of_response_carries_the_security_headers(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path, headers=auth("alice") if status == 422 else {})
    assert response.status_code == status, response.text
    assert_security_headers(response)


async def test_the_size_limits_413_carries_the_security_headers(
    make_client: ClientFactory,
) -> None:
    async with make_client(api_max_body_bytes=1024) as client:
        response = await client.post("/jobs", content=b"x" * 4096, headers=JSON)
        assert response.status_code == 413
        assert_security_headers(response)


async def test_https_responses_ask_browsers_for_https_only(
    client: httpx.AsyncClient,
) -> None:
    secure = await client.get("https://test/healthz")
    assert secure.headers["strict-transport-security"] == "max-age=31536000"
    plain = await client.get("/healthz")
    assert "strict-transport-security" not in plain.headers


async def test_trailing_slash_is_404_without_a_redirect_built_from_host(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/jobs/", "/stats/", "/healthz/"):
        response = await client.get(path, headers={**auth("admin"), "Host": "evil.example"})
        assert response.status_code == 404, (path, response.status_code, response.headers)
        assert "location" not in response.headers
        assert "evil.example" not in response.text
