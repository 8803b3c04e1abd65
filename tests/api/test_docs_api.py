"""The documentation routes: behind the same auth as the API unless
HYBRIDQ_API_PUBLIC_DOCS, every asset served by the API itself (no CDN), no inline script.
That the pages render in a browser without internet access is tests/browser/test_docs.py."""

from __future__ import annotations

import re

import httpx
import pytest

from .conftest import ClientFactory, assert_error, auth
from .test_dashboard_api import login

DOC_PAGES = ("/docs", "/redoc")


async def test_documentation_needs_a_token_or_a_session(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/openapi.json"), 401, "unauthorized")
    for page in DOC_PAGES:
        response = await client.get(page)
        assert response.status_code == 303, (page, response.status_code)
        assert response.headers["location"] == f"/dashboard?next={page}"
        login_form = await client.get(response.headers["location"])
        assert f'name="next" value="{page}"' in login_form.text


@pytest.mark.parametrize("who", ["alice", "admin"])
async def test_any_valid_bearer_token_reads_the_documentation(
    client: httpx.AsyncClient, who: str
) -> None:
    schema = await client.get("/openapi.json", headers=auth(who))
    assert schema.status_code == 200 and "/jobs" in schema.json()["paths"]
    for page in DOC_PAGES:
        assert (await client.get(page, headers=auth(who))).status_code == 200


async def test_a_dashboard_session_reads_the_documentation(client: httpx.AsyncClient) -> None:
    await login(client)
    assert (await client.get("/openapi.json")).status_code == 200
    for page in DOC_PAGES:
        assert (await client.get(page)).status_code == 200


async def test_a_setting_opens_the_documentation(make_client: ClientFactory) -> None:
    async with make_client(api_public_docs=True) as client:
        assert (await client.get("/openapi.json")).status_code == 200
        for page in DOC_PAGES:
            assert (await client.get(page)).status_code == 200


async def test_documentation_pages_load_only_same_origin_assets_and_no_inline_script(
    client: httpx.AsyncClient,
) -> None:
    for page in DOC_PAGES:
        response = await client.get(page, headers=auth("admin"))
        policy = response.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "'unsafe-inline'" not in policy.split(
            "script-src"
        )[1].split(";")[0]
        sources = re.findall(r'(?:src|href)="([^"]+)"', response.text)
        assert sources and all(s.startswith("/") for s in sources), sources
        assert not re.search(r"<script>(?!</script>)", response.text), "inline script"
        for source in sources:
            if source.startswith("/docs/assets/"):
                asset = await client.get(source)  # public: the libraries, not our docs
                assert asset.status_code == 200, source
                assert len(asset.content) > 1000 or source.endswith("docs.js")


async def test_unknown_asset_is_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/docs/assets/../app.py"), 404)
    assert_error(await client.get("/docs/assets/nothing.js"), 404)
