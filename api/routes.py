"""The API's routes. Built per app because the body of POST /jobs depends on the registered
job contracts (no ``from __future__ import annotations`` here: FastAPI reads these
annotations when the routes are defined)."""

import hashlib
import json
import math
import uuid
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, create_model

from queue_core import BackendUnavailable, Job, JobNotFound, JobStatus, Settings
from queue_core.maintenance.operations import queue_stats

from .auth import Principal, TokenVerifier
from .backend import ApiBackend
from .errors import ApiError, error_response
from .schemas import (
    BatchOut,
    ErrorOut,
    HealthOut,
    InputCheck,
    JobOut,
    JobPage,
    ReadyOut,
    StatsOut,
    TypeStats,
)

LIST_LIMIT_MAX = 200
BEARER = HTTPBearer(
    auto_error=False,  # the route answers 401 in the API's error shape itself
    description="An API token: `hybridq token new --user U` (or --admin).",
)
"""Declares the bearer scheme in OpenAPI (the docs' Authorize button); the token itself is
read and checked by TokenVerifier."""
ADMIN_BUCKET = "admin"  # the rate-limit bucket every admin token (and the dashboard) shares
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (401, 403, 404, 409, 413, 422, 429, 503)
}


def build_router(
    job_create: Any, inputs: InputCheck, settings: Settings, verifier: TokenVerifier
) -> APIRouter:
    router = APIRouter(responses=ERRORS)
    batch_model: Any = create_model(
        "JobBatch",
        __config__=ConfigDict(extra="forbid"),
        jobs=(list[job_create], Field(min_length=1, max_length=settings.api_batch_max)),
    )

    def backend(request: Request) -> ApiBackend:
        return request.app.state.backend  # type: ignore[no-any-return]

    async def principal(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
    ) -> Principal:
        found = await verifier.verify(request.headers.get("authorization"))
        if found is None:
            raise ApiError(
                401,
                "unauthorized",
                "a valid bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return found

    Backend = Annotated[ApiBackend, Depends(backend)]
    Caller = Annotated[Principal, Depends(principal)]

    async def owned_job(b: ApiBackend, caller: Principal, job_id: uuid.UUID) -> Job:
        """The job, if the caller may see it; another user's job is as absent as a missing one."""
        job = await b.service.get(job_id)
        if caller.scope is not None and job["user_id"] != caller.scope:
            raise JobNotFound(f"no job with id {job_id}")
        return job

    def owner_for(caller: Principal, requested: str | None) -> str | None:
        if requested is not None and not caller.admin and requested != caller.user_id:
            raise ApiError(422, "validation_error", "user_id: only an admin token may set it")
        return requested if caller.admin else caller.user_id

    async def rate_limit(b: ApiBackend, caller: Principal, cost: int) -> None:
        if cost > b.limiter.burst and b.limiter.rate > 0:
            raise ApiError(
                422,
                "batch_too_large",
                f"jobs: a batch of {cost} exceeds the enqueue burst of {b.limiter.burst}; "
                "send smaller batches",
            )
        # Admins share one bucket, apart from every user's (no user id can collide with it).
        bucket = ADMIN_BUCKET if caller.admin else f"user:{caller.user_id}"
        wait = await b.limiter.take(bucket, cost)
        if wait > 0:
            raise ApiError(
                429,
                "rate_limited",
                f"enqueue rate exceeded; retry in {wait:.2f}s",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )

    @router.post(
        "/jobs",
        status_code=201,
        response_model=JobOut,
        tags=["jobs"],
        responses={200: {"model": JobOut, "description": "Idempotent replay"}},
    )
    async def create_job(
        body: Annotated[job_create, Body()],
        b: Backend,
        caller: Caller,
        request: Request,
        response: Response,
        idempotency_key: Annotated[
            str | None, Header(min_length=1, max_length=200, alias="Idempotency-Key")
        ] = None,
    ) -> JobOut:
        """Enqueue one job. With an Idempotency-Key, the same key and body return the same
        job (200); the same key with a different body is a 409."""
        raw = await request.json()
        _check_inputs(inputs, [(("body", "input"), body.job_type, raw["input"])])
        await rate_limit(b, caller, 1)
        spec = _spec(body, owner_for(caller, body.user_id), raw["input"])
        if idempotency_key is None:
            return JobOut.of(await b.service.create(**spec), admin=caller.admin)
        fingerprint = hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()
        job, created = await b.service.create_once(
            **spec, idempotency_key=idempotency_key, fingerprint=fingerprint
        )
        if not created:
            response.status_code = 200
        return JobOut.of(job, admin=caller.admin)

    @router.post("/jobs/batch", status_code=201, response_model=BatchOut, tags=["jobs"])
    async def create_jobs(
        body: Annotated[batch_model, Body()],
        b: Backend,
        caller: Caller,
        request: Request,
    ) -> BatchOut:
        """Enqueue up to HYBRIDQ_API_BATCH_MAX jobs in one round trip per store; all or none."""
        items: list[Any] = getattr(body, "jobs")  # noqa: B009 (a model built at runtime)
        raw = (await request.json())["jobs"]
        _check_inputs(
            inputs,
            [
                (("body", "jobs", i, "input"), item.job_type, sent["input"])
                for i, (item, sent) in enumerate(zip(items, raw, strict=True))
            ],
        )
        await rate_limit(b, caller, len(items))
        specs = [
            _spec(item, owner_for(caller, item.user_id), sent["input"])
            for item, sent in zip(items, raw, strict=True)
        ]
        return BatchOut(
            jobs=[JobOut.of(j, admin=caller.admin) for j in await b.service.create_many(specs)]
        )

    @router.get("/jobs/{job_id}", response_model=JobOut, tags=["jobs"])
    async def get_job(job_id: uuid.UUID, b: Backend, caller: Caller) -> JobOut:
        return JobOut.of(await owned_job(b, caller, job_id), admin=caller.admin)

    @router.get("/jobs", response_model=JobPage, tags=["jobs"])
    async def list_jobs(
        b: Backend,
        caller: Caller,
        status: JobStatus | None = None,
        job_type: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
        limit: Annotated[int, Query(ge=1, le=LIST_LIMIT_MAX)] = 50,
        cursor: uuid.UUID | None = None,
    ) -> JobPage:
        """The caller's jobs (an admin's: everyone's), newest first, by keyset pages."""
        jobs = await b.service.list_jobs(
            user_id=caller.scope, status=status, job_type=job_type, limit=limit, before=cursor
        )
        next_cursor = jobs[-1]["id"] if len(jobs) == limit else None
        return JobPage(
            jobs=[JobOut.of(j, admin=caller.admin) for j in jobs], next_cursor=next_cursor
        )

    @router.post("/jobs/{job_id}/cancel", response_model=JobOut, tags=["jobs"])
    async def cancel_job(job_id: uuid.UUID, b: Backend, caller: Caller) -> JobOut:
        """A queued job is cancelled; a running one is cancelled and its handler stopped at
        the worker's next heartbeat. A finished job: 409."""
        await owned_job(b, caller, job_id)
        return JobOut.of(await b.service.cancel(job_id), admin=caller.admin)

    @router.post("/jobs/{job_id}/retry", response_model=JobOut, tags=["jobs"])
    async def retry_job(job_id: uuid.UUID, b: Backend, caller: Caller) -> JobOut:
        """A failed or cancelled job is queued again now. Any other status: 409. Costs one
        rate-limit token, as an enqueue does: it puts a job in the queue."""
        await rate_limit(b, caller, 1)
        await owned_job(b, caller, job_id)
        return JobOut.of(await b.service.retry(job_id), admin=caller.admin)

    @router.get("/stats", response_model=StatsOut, tags=["operations"])
    async def stats(b: Backend, caller: Caller) -> StatsOut:
        """Jobs by type and status, ready-index depth, age of the oldest due queued job.
        Admin only."""
        if not caller.admin:
            raise ApiError(403, "forbidden", "stats need an admin token")
        stats = await queue_stats(b.store, b.index)
        return StatsOut(
            job_types=[
                TypeStats(**asdict(t), queued_without_worker=t.queued_without_worker)
                for t in stats
            ]
        )

    @router.get(
        "/metrics",
        tags=["operations"],
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def metrics(b: Backend, caller: Caller) -> PlainTextResponse:
        """Prometheus metrics of this API process, with queue depth by type and status, the
        Redis index depth and the queued jobs no live worker runs, read now. Admin only (it
        counts every user's jobs)."""
        if not caller.admin:
            raise ApiError(403, "forbidden", "metrics need an admin token")
        b.metrics.queue_depth.clear()
        b.metrics.queued_without_worker.clear()
        for t in await queue_stats(b.store, b.index):
            for status, jobs in t.by_status.items():
                b.metrics.queue_depth.labels(t.job_type, status).set(jobs)
            b.metrics.index_depth.labels(t.job_type, "ready").set(t.ready_in_index)
            b.metrics.index_depth.labels(t.job_type, "scheduled").set(t.scheduled_in_index)
            b.metrics.queued_without_worker.labels(t.job_type).set(t.queued_without_worker)
        return PlainTextResponse(b.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/healthz", response_model=HealthOut, tags=["operations"])
    async def healthz() -> HealthOut:
        """The process is up (no backend is checked)."""
        return HealthOut(status="ok")

    @router.get(
        "/readyz",
        response_model=ReadyOut,
        tags=["operations"],
        responses={503: {"model": ErrorOut}},
    )
    async def readyz(b: Backend) -> Any:
        """PostgreSQL and Redis both answer; else 503 naming the one that does not."""
        state = {"postgres": "ok", "redis": "ok"}
        for name, check in (("postgres", b.store.ping), ("redis", b.index.ping)):
            try:
                await check()
            except BackendUnavailable:
                state[name] = "unavailable"
        down = [name for name, value in state.items() if value != "ok"]
        if down:
            return error_response(
                503,
                "not_ready",
                f"unreachable: {', '.join(down)}",
                headers={"Retry-After": "1"},
                details=[{"field": name, "message": "unavailable"} for name in down],
            )
        return ReadyOut(status="ready", postgres="ok", redis="ok")

    return router


def _check_inputs(inputs: InputCheck, sent: list[tuple[tuple[str | int, ...], str, Any]]) -> None:
    """Raises RequestValidationError (a 422 naming the field) for the first inputs that
    fail InputCheck: (location, job_type, input as sent) per job."""
    errors = [e for loc, job_type, value in sent for e in inputs.errors(job_type, value, loc)]
    if errors:
        raise RequestValidationError(errors[:20])


def _spec(body: BaseModel, user_id: str | None, sent_input: Any) -> dict[str, Any]:
    """create() keyword arguments from a validated request. The input is stored as the
    client sent it (the model only validated it): keys the contract does not declare yet
    reach newer workers, and no defaults are filled in, as with JobService.create()."""
    data: Any = body
    return {
        "job_type": data.job_type,
        "input": sent_input,
        "user_id": user_id,
        "priority": data.priority,
        "max_retries": data.max_retries,
        "scheduled_for": data.due(),
    }
