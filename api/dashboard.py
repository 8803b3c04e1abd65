"""The admin dashboard: server-rendered HTML (Jinja2, autoescaped) under /dashboard, with a
few lines of same-origin JS that refresh the depth table.

A browser sends no bearer header when it navigates: POST /dashboard/login checks an admin
token once and opens a server-side session (sessions.py); the cookie holds only the
session's random id. Every page checks the session again; every POST (retry, cancel, bulk
retry, logout) also needs the CSRF field of the form it came from, else 403. Errors are HTML
pages, never a traceback or the API's JSON.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Coroutine
from contextlib import aclosing
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from queue_core import BackendUnavailable, InvalidJob, JobNotFound, JobStateConflict, JobStatus
from queue_core.maintenance.operations import queue_stats, retry_in_bulk

from .backend import ApiBackend
from .dashboard_views import (
    DEPTH_LINES,
    SPARK_HEIGHT,
    SPARK_WIDTH,
    DepthHistory,
    field_text,
    pretty_json,
    type_rows,
)
from .routes import ADMIN_BUCKET
from .sessions import COOKIE, LEGACY_COOKIE, DashboardSessions, cookie_secure, csrf_ok, csrf_token

log = logging.getLogger(__name__)

PREFIX = "/dashboard"
DOCS_PAGES = frozenset({"/docs", "/redoc"})
"""Where a login may send the browser next (the documentation pages need a session too):
a fixed list, so the login form cannot be turned into an open redirect."""
FAILURES_SHOWN = 100
RECENT_FAILURES_SHOWN = 10
JOB_TYPE_MAX = 100  # the jobs table's CHECK on job_type
FORM_FIELDS_MAX = 10
BULK_RETRY_BATCH = 1000  # jobs per statement of a bulk retry (fewer when the burst is smaller)
REFRESH_SECONDS = 5  # how often the page's JS reloads the depth table
HERE = Path(__file__).parent
STATIC_TYPES = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
HEADERS = {
    # Scripts and styles only from this origin: an injected tag would not run.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
NOTICES = {"retried": "Job queued again.", "cancelled": "Job cancelled."}
# Job fields shown in their own sections of the detail page rather than the field table.
BLOCK_FIELDS = ("input", "output", "last_error", "error_detail")


class DashboardError(Exception):
    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def build_dashboard_router(
    sessions: DashboardSessions,
    clock: Callable[[], float] = time.monotonic,
) -> APIRouter:
    """The dashboard for the admins of ``sessions``' verifier. Its depth history lives in
    this router, so each API process keeps its own; sessions live in Postgres, shared."""
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        prefix=PREFIX,
        statuses=list(JobStatus),
        depth_lines=[str(s) for s in DEPTH_LINES],
        spark_width=SPARK_WIDTH,
        spark_height=SPARK_HEIGHT,
        refresh_seconds=REFRESH_SECONDS,
    )
    static = {name: (HERE / "static" / name).read_bytes() for name in STATIC_TYPES}
    history = DepthHistory(clock)

    def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("csrf", None)
        return HTMLResponse(env.get_template(name).render(**context), status, headers=HEADERS)

    def error_page(exc: Exception) -> HTMLResponse:
        if isinstance(exc, DashboardError):
            return render("error.html", exc.status, title=exc.title, message=exc.message)
        if isinstance(exc, JobNotFound):
            return render("error.html", 404, title="Not found", message=str(exc))
        if isinstance(exc, JobStateConflict):
            return render("error.html", 409, title="Not possible now", message=str(exc))
        if isinstance(exc, InvalidJob | RequestValidationError):
            return render("error.html", 422, title="Invalid request", message=str(exc))
        if isinstance(exc, BackendUnavailable):
            log.warning("dashboard backend unavailable", extra={"error": str(exc)})
            message = f"{exc.backend} is unreachable; retry shortly."
            page = render("error.html", 503, title="Unavailable", message=message)
            page.headers["Retry-After"] = "1"
            return page
        log.exception("unhandled error in the dashboard", exc_info=exc)
        return render("error.html", 500, title="Internal error", message="Something failed.")

    class HtmlErrorRoute(APIRoute):
        """Turns anything a dashboard route raises into an HTML error page."""

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                try:
                    return await handler(request)
                except Exception as exc:  # an over-size body lands here too, after the
                    return error_page(exc)  # size-limit middleware already sent its 413

            return guarded

    router = APIRouter(prefix=PREFIX, route_class=HtmlErrorRoute, include_in_schema=False)

    async def session(request: Request, activity: bool = True) -> str | None:
        """The id of the request's live admin session, or None."""
        session_id = request.cookies.get(COOKIE)
        live = await sessions.check(backend(request).sessions, session_id, activity)
        return session_id if live else None

    async def form(request: Request) -> dict[str, str]:
        try:
            pairs = parse_qsl(
                (await request.body()).decode("utf-8", "replace"), max_num_fields=FORM_FIELDS_MAX
            )
        except ValueError:
            raise DashboardError(400, "Bad request", "Too many form fields.") from None
        return dict(pairs)

    async def authorized_form(request: Request) -> dict[str, str]:
        """The fields of a POSTed form that carries a live session and its CSRF token."""
        fields = await form(request)
        session_id = await session(request)
        if session_id is None or not csrf_ok(session_id, fields.get("csrf")):
            raise DashboardError(
                403,
                "Forbidden",
                "This action needs a dashboard session and the form it was sent from. "
                "Reload the page (log in again if asked) and retry.",
            )
        return fields

    def login_page(
        request: Request, status: int = 401, error: str | None = None
    ) -> HTMLResponse:
        next_page = request.query_params.get("next")
        return render(
            "login.html", status, error=error, next=next_page if next_page in DOCS_PAGES else None
        )

    def backend(request: Request) -> ApiBackend:
        return request.app.state.backend  # type: ignore[no-any-return]

    async def depth_context(request: Request) -> dict[str, Any]:
        stats = await queue_stats(backend(request).store, backend(request).index)
        history.record(stats)
        return {"rows": type_rows(stats, history), "span": history.span_seconds()}

    @router.get("")
    async def overview(request: Request) -> HTMLResponse:
        session_id = await session(request)
        if session_id is None:
            return login_page(request)
        failures = await backend(request).store.list_failures(None, RECENT_FAILURES_SHOWN)
        return render(
            "overview.html",
            csrf=csrf_token(session_id),
            failures=failures,
            **await depth_context(request),
        )

    @router.get("/stats")
    async def depth_fragment(request: Request) -> HTMLResponse:
        """The depth table alone, for the page's periodic refresh."""
        session_id = await session(request, activity=False)
        if session_id is None:
            return HTMLResponse("", 401, headers=HEADERS)
        return render(
            "_depth.html", csrf=csrf_token(session_id), **await depth_context(request)
        )

    @router.post("/login")
    async def login(request: Request) -> Response:
        fields = await form(request)
        secure = cookie_secure(request)
        if secure is None:
            raise DashboardError(
                403,
                "HTTPS required",
                "The dashboard is served over plain http to another machine, so a login would "
                "send the admin token in clear. Serve the API over https (behind a TLS proxy, "
                "start it with --proxy-headers --forwarded-allow-ips PROXY_IP).",
            )
        session_id = await sessions.open(backend(request).sessions, fields.get("token", ""))
        if session_id is None:
            return login_page(request, error="That is not an admin token.")
        next_page = fields.get("next", "")
        response = RedirectResponse(
            next_page if next_page in DOCS_PAGES else PREFIX, status_code=303, headers=HEADERS
        )
        response.delete_cookie(LEGACY_COOKIE[0], path=LEGACY_COOKIE[1])
        response.set_cookie(
            COOKIE,
            session_id,
            max_age=int(sessions.max_seconds),
            path="/",  # the documentation pages accept the session too
            httponly=True,
            samesite="strict",
            secure=secure,
        )
        log.info("dashboard login", extra={"action": "dashboard_login"})
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        await authorized_form(request)
        await sessions.close(backend(request).sessions, request.cookies[COOKIE])
        response = RedirectResponse(PREFIX, status_code=303, headers=HEADERS)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @router.get("/failures")
    async def failures(
        request: Request,
        job_type: str | None = None,
        retried: str | None = None,
        wait: str | None = None,
    ) -> HTMLResponse:
        session_id = await session(request)
        if session_id is None:
            return login_page(request)
        job_type = _job_type(job_type) if job_type else None
        store = backend(request).store
        types = sorted({c.job_type for c in await store.count_jobs()})
        return render(
            "failures.html",
            csrf=csrf_token(session_id),
            failures=await store.list_failures(job_type, FAILURES_SHOWN),
            job_type=job_type,
            job_types=types,
            retried=_count(retried),
            wait=_count(wait),
        )

    @router.post("/failures/retry")
    async def retry_failures(request: Request) -> Response:
        """Queue again every failed job of one type (maintenance.operations.retry_in_bulk),
        a batch at a time, each batch paid for in the admins' rate-limit bucket first: a
        bulk retry puts jobs in the queue like an enqueue does. When the bucket runs dry the
        jobs retried so far stay queued and the page says how long to wait for the rest."""
        job_type = _job_type((await authorized_form(request)).get("job_type"))
        b = backend(request)
        failed = sum(
            c.jobs for c in await b.store.count_jobs()
            if c.job_type == job_type and c.status == JobStatus.FAILED
        )
        size = max(1, min(BULK_RETRY_BATCH, b.limiter.burst))
        batches = cast(
            AsyncGenerator[int, None],
            retry_in_bulk(b.store, b.index, job_type=job_type, batch=size),
        )
        retried, wait = 0, 0.0
        async with aclosing(batches):
            while retried < failed:
                wait = await b.limiter.take(ADMIN_BUCKET, min(size, failed - retried))
                if wait > 0:
                    break
                done = await anext(batches, 0)
                if not done:
                    break
                retried += done
        log.info("bulk retry from the dashboard", extra={"job_type": job_type, "jobs": retried})
        query = {"job_type": job_type, "retried": retried}
        if wait > 0:
            query["wait"] = max(1, math.ceil(wait))
        return RedirectResponse(
            f"{PREFIX}/failures?{urlencode(query)}", status_code=303, headers=HEADERS
        )

    @router.get("/jobs/{job_id}")
    async def job_detail(request: Request, job_id: str, done: str | None = None) -> HTMLResponse:
        session_id = await session(request)
        if session_id is None:
            return login_page(request)
        job = await backend(request).service.get(_job_id(job_id))
        return render(
            "job.html",
            csrf=csrf_token(session_id),
            job=job,
            fields=[(k, field_text(v)) for k, v in job.items() if k not in BLOCK_FIELDS],
            input_json=pretty_json(job.get("input")),
            output_json=pretty_json(job.get("output")),
            notice=NOTICES.get(done or ""),
        )

    @router.post("/jobs/{job_id}/retry")
    async def retry_job(request: Request, job_id: str) -> Response:
        await authorized_form(request)
        wait = await backend(request).limiter.take(ADMIN_BUCKET, 1)
        if wait > 0:
            raise DashboardError(
                429, "Rate limited", f"The enqueue rate limit is reached; retry in {wait:.1f} s."
            )
        job = await backend(request).service.retry(_job_id(job_id))
        return RedirectResponse(
            f"{PREFIX}/jobs/{job['id']}?done=retried", status_code=303, headers=HEADERS
        )

    @router.post("/jobs/{job_id}/cancel")
    async def cancel_job(request: Request, job_id: str) -> Response:
        await authorized_form(request)
        job = await backend(request).service.cancel(_job_id(job_id))
        return RedirectResponse(
            f"{PREFIX}/jobs/{job['id']}?done=cancelled", status_code=303, headers=HEADERS
        )

    @router.get("/static/{name}")
    async def static_file(name: str) -> Response:
        if name not in static:
            raise DashboardError(404, "Not found", "No such file.")
        return Response(static[name], media_type=STATIC_TYPES[name], headers=HEADERS)

    @router.get("/{rest:path}")
    async def unknown_page(rest: str) -> Response:
        raise DashboardError(404, "Not found", "No such dashboard page.")

    return router


def _job_id(text: str) -> uuid.UUID:
    """A job id from a URL; anything but a UUID is a job that does not exist."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise DashboardError(404, "Not found", "No job with that id.") from None


def _count(text: str | None) -> int | None:
    """A small count from the query string (a redirect's notice), or None."""
    return int(text) if text and text.isdigit() and len(text) < 10 else None


def _job_type(text: str | None) -> str:
    if not text or len(text) > JOB_TYPE_MAX:
        raise DashboardError(422, "Invalid request", f"job_type must be 1..{JOB_TYPE_MAX} chars.")
    return text
