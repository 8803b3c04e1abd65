"""The admin dashboard: server-rendered HTML (Jinja2, autoescaped) under /dashboard, with a
few lines of same-origin JS that refresh the depth table.

A browser sends no bearer header when it navigates, so the admin token travels in a
cookie: POST /dashboard/login checks it with the API's TokenVerifier and sets it HttpOnly,
SameSite=Strict, Path=/dashboard. Every page verifies the cookie again; every POST (retry,
cancel, bulk retry, logout) also needs the CSRF field of the form it came from, else 403.
Errors are HTML pages, never a traceback or the API's JSON.
"""

from __future__ import annotations

import logging
import math
import secrets
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

from .auth import TokenVerifier
from .backend import ApiBackend
from .dashboard_views import (
    DEPTH_LINES,
    SPARK_HEIGHT,
    SPARK_WIDTH,
    DepthHistory,
    Sessions,
    field_text,
    pretty_json,
    type_rows,
)
from .routes import ADMIN_BUCKET

log = logging.getLogger(__name__)

PREFIX = "/dashboard"
COOKIE = "hybridq_dashboard"
COOKIE_MAX_AGE_SECONDS = 8 * 3600
"""A session lasts a working day; the token itself stays valid, so logging in again is cheap."""
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
BLOCK_FIELDS = ("input", "output", "last_error")


class DashboardError(Exception):
    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def build_dashboard_router(
    verifier: TokenVerifier,
    clock: Callable[[], float] = time.monotonic,
    csrf_secret: bytes | None = None,
) -> APIRouter:
    """The dashboard for the admins of ``verifier``. Its depth history lives in this router,
    so each API process keeps its own. ``csrf_secret`` defaults to random bytes made here:
    forms then stay valid only in the process that rendered them (one API process, or
    replicas behind sticky sessions); replicas without them need one shared secret."""
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
    sessions = Sessions(verifier, csrf_secret or secrets.token_bytes(32))
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

    def session(request: Request) -> str | None:
        """The admin token of the request's cookie, or None."""
        token = request.cookies.get(COOKIE)
        return token if token and sessions.is_admin(token) else None

    async def form(request: Request) -> dict[str, str]:
        try:
            pairs = parse_qsl(
                (await request.body()).decode("utf-8", "replace"), max_num_fields=FORM_FIELDS_MAX
            )
        except ValueError:
            raise DashboardError(400, "Bad request", "Too many form fields.") from None
        return dict(pairs)

    async def authorized_form(request: Request) -> dict[str, str]:
        """The fields of a POSTed form that carries a valid session and CSRF token."""
        token = request.cookies.get(COOKIE)
        fields = await form(request)
        if not (token and sessions.is_admin(token) and sessions.csrf_ok(token, fields.get("csrf"))):
            raise DashboardError(
                403,
                "Forbidden",
                "This action needs a dashboard session and the form it was sent from. "
                "Reload the page (log in again if asked) and retry.",
            )
        return fields

    def login_page(status: int = 401, error: str | None = None) -> HTMLResponse:
        return render("login.html", status, error=error)

    def backend(request: Request) -> ApiBackend:
        return request.app.state.backend  # type: ignore[no-any-return]

    async def depth_context(request: Request) -> dict[str, Any]:
        stats = await queue_stats(backend(request).store, backend(request).index)
        history.record(stats)
        return {"rows": type_rows(stats, history), "span": history.span_seconds()}

    @router.get("")
    async def overview(request: Request) -> HTMLResponse:
        token = session(request)
        if token is None:
            return login_page()
        failures = await backend(request).store.list_failures(None, RECENT_FAILURES_SHOWN)
        return render(
            "overview.html",
            csrf=sessions.csrf_token(token),
            failures=failures,
            **await depth_context(request),
        )

    @router.get("/stats")
    async def depth_fragment(request: Request) -> HTMLResponse:
        """The depth table alone, for the page's periodic refresh."""
        token = session(request)
        if token is None:
            return HTMLResponse("", 401, headers=HEADERS)
        return render(
            "_depth.html", csrf=sessions.csrf_token(token), **await depth_context(request)
        )

    @router.post("/login")
    async def login(request: Request) -> Response:
        token = (await form(request)).get("token", "").strip()
        if not sessions.is_admin(token):
            return login_page(error="That is not an admin token.")
        response = RedirectResponse(PREFIX, status_code=303, headers=HEADERS)
        response.set_cookie(
            COOKIE,
            token,
            max_age=COOKIE_MAX_AGE_SECONDS,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        await authorized_form(request)
        response = RedirectResponse(PREFIX, status_code=303, headers=HEADERS)
        response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
        return response

    @router.get("/failures")
    async def failures(
        request: Request,
        job_type: str | None = None,
        retried: str | None = None,
        wait: str | None = None,
    ) -> HTMLResponse:
        token = session(request)
        if token is None:
            return login_page()
        job_type = _job_type(job_type) if job_type else None
        store = backend(request).store
        types = sorted({c.job_type for c in await store.count_jobs()})
        return render(
            "failures.html",
            csrf=sessions.csrf_token(token),
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
        token = session(request)
        if token is None:
            return login_page()
        job = await backend(request).service.get(_job_id(job_id))
        return render(
            "job.html",
            csrf=sessions.csrf_token(token),
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
