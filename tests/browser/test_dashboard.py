"""The admin dashboard in a real browser: headless Chromium (the Debian package `chromium`,
never a browser Playwright downloads) driven by Playwright against the API server started
as a user would (`python -m queue_core api`), on the test's own schema and namespace.

Skipped, with the reason, when the machine has no Chromium or no Playwright package;
.ci/run installs Chromium before `make test`, so CI always runs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from hybridq_api.auth import config_entry

from queue_core import Settings, connect
from tests.conftest import REPO, delete_namespace

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (extra 'dev')"
)
CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no `chromium` on PATH: apt-get install chromium (.ci/run does this)",
    ),
]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
ADMIN_TOKEN = "hq_browser-test-admin-token-0123456789abcdefghijkl"
USER_TOKEN = "hq_browser-test-user-token-0123456789abcdefghijklm"
CALENDAR_ERROR = "ConnectionError: calendar provider timed out after 30 s"
EMAIL_ERROR = "SMTPTimeout: mail server did not answer <mx.example.com>"
FAILED_LOAD = "Failed to load resource:"
# The login form is served with 401: where the test meets it, and the refused login.
EXPECTED_ERRORS = {(401, "/dashboard"), (401, "/dashboard/login"), (401, "/dashboard/failures")}
WAIT_MS = 15_000  # the page refreshes its depth table every 5 s

T = TypeVar("T")


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion in a thread of its own: Playwright's sync API keeps
    an event loop in this one."""
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(make()))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    if errors:
        raise errors[0]
    return result[0]


@dataclass(frozen=True)
class Stack:
    base_url: str
    settings: Settings
    calendar_failures: list[str]  # ids of the failed calendar_sync jobs, oldest first

    def sql(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(
                self.settings.database_url,
                server_settings={"search_path": self.settings.db_schema or "public"},
            )
            try:
                return await conn.fetch(query, *args)
            finally:
                await conn.close()

        return run_async(run)

    def statuses(self, job_type: str) -> dict[str, int]:
        rows = self.sql(
            "SELECT status, count(*) AS n FROM jobs WHERE job_type = $1 GROUP BY status", job_type
        )
        return {r["status"]: r["n"] for r in rows}


async def seed(settings: Settings) -> list[str]:
    """Jobs of the three example types in every state but running; returns the ids of the
    failed calendar_sync jobs."""
    specs: list[tuple[str, dict[str, Any], str, str | None]] = [
        *[("email_processing", {"message_id": f"m-{i}"}, "succeeded", None) for i in range(3)],
        *[("email_processing", {"message_id": f"m-f{i}"}, "failed", EMAIL_ERROR) for i in range(2)],
        ("email_processing", {"message_id": "m-q"}, "queued", None),
        ("calendar_sync", {"calendar_id": "c-ok", "days": 7}, "succeeded", None),
        *[("calendar_sync", {"calendar_id": f"c-{i}"}, "failed", CALENDAR_ERROR) for i in range(3)],
        *[("briefing_generation", {"topic": f"t-{i}"}, "queued", None) for i in range(2)],
    ]
    async with connect(settings, handlers="handlers") as queue:
        jobs = await queue.job_service.create_many(
            [{"job_type": t, "input": i} for t, i, _, _ in specs]
        )
        for job, (_, _, status, error) in zip(jobs, specs, strict=True):
            if status != "queued":
                await queue.pool.execute(
                    "UPDATE jobs SET status = $2, attempts = 1, last_error = $3,"
                    " finished_at = now(), output = $4 WHERE id = $1",
                    uuid.UUID(job["id"]),
                    status,
                    error,
                    {"done": True} if status == "succeeded" else None,
                )
    return [j["id"] for j, s in zip(jobs, specs, strict=True) if s[0] == "calendar_sync" and s[3]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_serving(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the API server exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"the API server did not answer /healthz in 30 s:\n{log.read_text()}")


@pytest.fixture
def stack(server_urls: tuple[str, str], tmp_path: Path) -> Iterator[Stack]:
    """A migrated schema with seeded jobs and the API server serving it."""
    database_url, redis_url = server_urls
    name = "b_" + uuid.uuid4().hex[:12]
    settings = Settings(
        database_url=database_url, redis_url=redis_url, db_schema=name, namespace=name
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HYBRIDQ_")},
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "HYBRIDQ_DB_SCHEMA": name,
        "HYBRIDQ_NAMESPACE": name,
        "HYBRIDQ_API_TOKENS": json.dumps(
            [config_entry(ADMIN_TOKEN, admin=True), config_entry(USER_TOKEN, user_id="alice")]
        ),
        "HYBRIDQ_LOG_JSON": "true",  # structured fields in api.log, shown when a test fails
        "PYTHONPATH": str(REPO),
    }
    command = [sys.executable, "-m", "queue_core"]
    log = tmp_path / "api.log"
    server: subprocess.Popen[bytes] | None = None
    try:
        migrated = subprocess.run(
            [*command, "migrate"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert migrated.returncode == 0, migrated.stderr
        calendar_failures = run_async(lambda: seed(settings))
        port = free_port()
        with open(log, "wb") as out:
            server = subprocess.Popen(
                [*command, "api", "--handlers", "handlers", "--port", str(port)],
                env=env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        base_url = f"http://127.0.0.1:{port}"
        wait_until_serving(base_url, server, log)
        yield Stack(base_url, settings, calendar_failures)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)
        run_async(lambda: drop(settings))


async def drop(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.db_schema}" CASCADE')
    finally:
        await conn.close()
    await delete_namespace(settings.redis_url, settings.namespace)


@dataclass
class Browser:
    page: Any  # playwright.sync_api.Page
    context: Any  # playwright.sync_api.BrowserContext
    problems: list[str]  # console errors, page errors, requests leaving the origin


@pytest.fixture
def browser(stack: Stack) -> Iterator[Browser]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = chromium.new_context(base_url=stack.base_url)
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)
            problems: list[str] = []

            def on_console(message: Any) -> None:
                # A failed load is logged as an error too; on_response judges those.
                if message.type == "error" and not message.text.startswith(FAILED_LOAD):
                    problems.append(f"console error: {message.text}")

            def on_request(request: Any) -> None:
                if not request.url.startswith(stack.base_url):
                    problems.append(f"request off the origin: {request.url}")

            def on_response(response: Any) -> None:
                path = response.url.removeprefix(stack.base_url).partition("?")[0]
                if response.status >= 400 and (response.status, path) not in EXPECTED_ERRORS:
                    problems.append(f"{response.status} from {response.url}")

            page.on("console", on_console)
            page.on("response", on_response)
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("request", on_request)
            page.on("dialog", lambda dialog: dialog.accept())  # the confirm() of bulk actions
            yield Browser(page, context, problems)
        finally:
            chromium.close()


def test_admin_logs_in_inspects_and_retries_failures(stack: Stack, browser: Browser) -> None:
    page, expect = browser.page, sync_api.expect
    ARTIFACTS.mkdir(exist_ok=True)

    page.goto("/dashboard")
    expect(page.locator("h1")).to_have_text("Dashboard login")

    page.fill("#token", USER_TOKEN)
    with page.expect_response("**/dashboard/login") as refused:
        page.click("form.login button")
    assert refused.value.status == 401
    expect(page.locator(".error")).to_contain_text("not an admin token")
    assert browser.context.cookies() == []

    page.fill("#token", ADMIN_TOKEN)
    page.click("form.login button")
    expect(page.locator("h1")).to_have_text("Queues")
    [cookie] = browser.context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (
        "hybridq_session",
        True,
        "Strict",
        "/",
    )
    assert cookie["value"] != ADMIN_TOKEN, "the cookie holds a session id, never the token"
    depth = page.locator("table.depth")
    for job_type in ("email_processing", "calendar_sync", "briefing_generation"):
        expect(depth).to_contain_text(job_type)
    email = page.locator("tr[data-job-type=email_processing]")
    expect(email.locator("td.status-succeeded")).to_have_text("3")
    expect(email.locator("td.status-failed")).to_have_text("2")

    # Work finishes while the page is open: the JS refresh shows it, with a throughput.
    stack.sql("UPDATE jobs SET status = 'succeeded' WHERE job_type = 'briefing_generation'")
    briefing = page.locator("tr[data-job-type=briefing_generation]")
    expect(briefing.locator("td.status-succeeded")).to_have_text("2", timeout=WAIT_MS)
    expect(briefing.locator("td.throughput")).to_have_text(re.compile(r"^(?!0\.00$)\d+\.\d\d$"))

    page.click("nav >> text=Failures")
    failures = page.locator("table.failures")
    expect(failures).to_contain_text(CALENDAR_ERROR)
    expect(failures).to_contain_text(EMAIL_ERROR)  # escaped <...>, shown as text
    page.select_option("#job_type", "calendar_sync")
    page.click("form.filter button")
    expect(failures.locator("tbody tr")).to_have_count(3)
    expect(failures).not_to_contain_text(EMAIL_ERROR)

    oldest = stack.calendar_failures[0]
    page.click(f"a[href='/dashboard/jobs/{oldest}']")
    expect(page.locator("h1")).to_contain_text(oldest)
    expect(page.locator("#job-last-error")).to_have_text(CALENDAR_ERROR)
    expect(page.locator("#job-input")).to_contain_text('"calendar_id": "c-0"')
    page.screenshot(path=str(ARTIFACTS / "dashboard-job.png"), full_page=True)
    page.click("#retry")
    expect(page.locator("#job-status")).to_have_text("queued")
    expect(page.locator(".notice")).to_have_text("Job queued again.")
    page.click("#cancel")
    expect(page.locator("#job-status")).to_have_text("cancelled")

    page.goto("/dashboard/failures?job_type=calendar_sync")
    expect(failures.locator("tbody tr")).to_have_count(2)
    page.click("button.bulk-retry")
    expect(page.locator(".notice")).to_have_text("2 failed calendar_sync jobs queued again.")
    expect(failures).to_contain_text("No failed jobs.")
    assert stack.statuses("calendar_sync") == {"queued": 2, "cancelled": 1, "succeeded": 1}

    page.click("nav >> text=Queues")
    expect(page.locator("tr[data-job-type=calendar_sync] td.status-failed")).to_have_text("0")
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    page.click("#logout")
    expect(page.locator("h1")).to_have_text("Dashboard login")
    assert browser.context.cookies() == []
    page.goto("/dashboard/failures")
    expect(page.locator("form.login")).to_be_visible()
    browser.context.add_cookies([cookie])  # a copy of the cookie, replayed after logout
    page.goto("/dashboard/failures")
    expect(page.locator("form.login")).to_be_visible()
    assert browser.problems == [], browser.problems
