"""The API documentation in a real browser with the network cut: Swagger UI (/docs) and
ReDoc (/redoc) must render from what the API serves itself, since an operator's network
may have no internet access. Every request that leaves the API's origin is aborted (and
reported), and any CSP violation or script error fails the test."""

from __future__ import annotations

from typing import Any

from .test_dashboard import ADMIN_TOKEN, ARTIFACTS, WAIT_MS, Browser, Stack, sync_api
from .test_dashboard import browser as browser  # noqa: F401 (fixtures shared with the dashboard)
from .test_dashboard import pytestmark as pytestmark  # noqa: F401
from .test_dashboard import stack as stack  # noqa: F401

REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def cut_the_network(stack: Stack, browser: Browser) -> list[str]:
    """Abort every request that does not go to the API; returns the aborted URLs."""
    aborted: list[str] = []

    def route(route: Any) -> None:
        if route.request.url.startswith(stack.base_url):
            route.continue_()
        else:
            aborted.append(route.request.url)
            route.abort("internetdisconnected")

    browser.context.route("**/*", route)
    return aborted


def test_docs_render_with_the_network_cut_after_login(stack: Stack, browser: Browser) -> None:
    page, expect = browser.page, sync_api.expect
    aborted = cut_the_network(stack, browser)

    page.goto("/docs")  # no session yet: the dashboard's login, which comes back here
    expect(page.locator("h1")).to_have_text("Dashboard login")
    page.fill("#token", ADMIN_TOKEN)
    page.click("form.login button")
    page.wait_for_url("**/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("hybridq", timeout=WAIT_MS)
    expect(page.locator(".opblock").first).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/jobs/batch")).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "docs.png"))

    page.goto("/redoc")
    expect(page.locator("h1").first).to_contain_text("hybridq", timeout=WAIT_MS)
    expect(page.get_by_text("/jobs/batch").first).to_be_attached()
    page.screenshot(path=str(ARTIFACTS / "redoc.png"))

    assert aborted == [], f"the docs tried to leave the API: {aborted}"
    # ReDoc always shows its vendor's logo from a CDN ("API docs by Redocly"); the page's
    # CSP blocks it before any request leaves, and ReDoc hides the image. Nothing else may.
    logo = REDOC_LOGO
    blocked = [p for p in browser.problems if logo in p]
    assert len(blocked) == 2 and any("Content Security Policy" in p for p in blocked), blocked
    assert [p for p in browser.problems if logo not in p] == [], browser.problems
