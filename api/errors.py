"""Every error the API returns has one shape: ``{"error": {"code": ..., "message": ...}}``.
QueueErrors are translated to HTTP here, in one place."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from queue_core import (
    BackendUnavailable,
    DuplicateJob,
    InvalidJob,
    JobNotFound,
    JobStateConflict,
    QueueError,
)

from .headers import DEFAULT_HEADERS

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1
BODY_PARSE_ERROR = "There was an error parsing the body"  # FastAPI's 400 detail


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


_QUEUE_ERRORS: list[tuple[type[QueueError], int, str]] = [
    (InvalidJob, 422, "invalid_job"),
    (JobNotFound, 404, "not_found"),
    (JobStateConflict, 409, "state_conflict"),
    (DuplicateJob, 409, "idempotency_conflict"),
]


def _field_of(err: Any, job_types: frozenset[str]) -> str:
    """The field an error is about, as the client would name it: no "body"/"query" prefix,
    and without the job_type tag a discriminated union puts in the location
    ("email_processing.input.x" is "input.x" to the client that sent that job_type)."""
    kind = err.get("type", "")
    if kind == "json_invalid":
        return "body"
    if kind.startswith("union_tag"):  # unknown or missing job_type
        return "job_type"
    parts = [str(p) for p in err.get("loc", ())]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    if parts and parts[0] in job_types:
        parts = parts[1:]
    elif len(parts) >= 3 and parts[0] == "jobs" and parts[2] in job_types:
        del parts[2]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI, job_types: frozenset[str]) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"field": _field_of(err, job_types), "message": str(err.get("msg", ""))}
            for err in exc.errors()[:20]
        ]
        first = details[0] if details else {"field": "body", "message": "invalid request"}
        return error_response(
            422, "validation_error", f"{first['field']}: {first['message']}", details=details
        )

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == BODY_PARSE_ERROR:
            # FastAPI's answer to a body its JSON parser raised on (not a decode error):
            # malformed input is a 422 here, like every other malformed body.
            return error_response(422, "validation_error", "body: not parseable as JSON")
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(BackendUnavailable)
    async def unavailable(_: Request, exc: BackendUnavailable) -> JSONResponse:
        return error_response(
            503,
            f"{exc.backend}_unavailable",
            f"{exc.backend} is unreachable; retry shortly",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(QueueError)
    async def queue_error(_: Request, exc: QueueError) -> JSONResponse:
        for kind, status, code in _QUEUE_ERRORS:
            if isinstance(exc, kind):
                return error_response(status, code, str(exc))
        return error_response(400, "queue_error", str(exc))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in the API", exc_info=exc)
        # Sent by Starlette's outermost layer, outside SecurityHeaders: add them here.
        headers = {k.decode(): v.decode() for k, v in DEFAULT_HEADERS}
        return error_response(500, "internal", "internal error", headers=headers)
