"""The example job handlers: thin adapters from a job dict to a domain service.

Each handler is a plain module-level ``async def handle_x(job, *, service)``: it validates
``job["input"]`` against a pydantic contract, calls one domain service method, and returns a
small dict that becomes the job's output. The service is a required keyword argument rather
than a global, so a test passes a mock directly and ``handlers.register`` binds the real one
with ``functools.partial`` (the runner then calls ``handler(job)`` as usual).

Error contract:
- input that does not match the contract, or a missing ``user_id`` where one is needed,
  raises ``PermanentJobError``: the same job would fail the same way on every retry;
- anything the service raises (e.g. ``TransientServiceError``) propagates, and the queue
  retries the job with backoff until ``max_retries`` is spent.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from queue_core import Job, PermanentJobError

from .domain import BriefingWriter, CalendarSyncer, EmailProcessor


class JobInput(BaseModel):
    # strict: "7" is not a day count and True is not an int; a producer bug should fail
    # loudly, not be coerced. Unknown keys are ignored so a producer can add an optional
    # field before every worker runs the version that reads it.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


# Each input model carries an example: the API's OpenAPI shows it, and the tests and
# `make up`'s demo enqueue it for every registered type.


class EmailProcessingInput(JobInput):
    model_config = ConfigDict(json_schema_extra={"examples": [{"message_id": "msg-1"}]})

    message_id: str = Field(min_length=1, max_length=200)


class CalendarSyncInput(JobInput):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"calendar_id": "cal-1", "days": 3}]}
    )

    calendar_id: str = Field(min_length=1, max_length=200)
    days: int = Field(7, ge=1, le=90)  # how far ahead to sync, in days


class BriefingGenerationInput(JobInput):
    model_config = ConfigDict(json_schema_extra={"examples": [{"topic": "rates"}]})

    topic: str = Field(min_length=1, max_length=200)


class EmailProcessingOutput(BaseModel):
    message_id: str
    labels_applied: int


class CalendarSyncOutput(BaseModel):
    calendar_id: str
    days: int
    events_synced: int


class BriefingGenerationOutput(BaseModel):
    topic: str
    briefing: str


InputT = TypeVar("InputT", bound=JobInput)


def parse_input(model: type[InputT], job: Job) -> InputT:
    """``job["input"]`` as ``model``, or PermanentJobError naming every problem."""
    try:
        return model.model_validate(job["input"])
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or 'input'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise PermanentJobError(f"invalid input for {job['job_type']}: {problems}") from None


def require_user_id(job: Job) -> str:
    user_id = job.get("user_id")
    if not user_id:
        raise PermanentJobError(f"{job['job_type']} needs a user_id; the job has none")
    return str(user_id)


async def handle_email_processing(job: Job, *, email: EmailProcessor) -> dict[str, Any]:
    args = parse_input(EmailProcessingInput, job)
    labels = await email.process_message(require_user_id(job), args.message_id)
    return {"message_id": args.message_id, "labels_applied": labels}


async def handle_calendar_sync(job: Job, *, calendar: CalendarSyncer) -> dict[str, Any]:
    args = parse_input(CalendarSyncInput, job)
    synced = await calendar.sync(require_user_id(job), args.calendar_id, args.days)
    return {"calendar_id": args.calendar_id, "days": args.days, "events_synced": synced}


async def handle_briefing_generation(job: Job, *, briefing: BriefingWriter) -> dict[str, Any]:
    args = parse_input(BriefingGenerationInput, job)
    text = await briefing.write(args.topic, job.get("user_id"))
    return {"topic": args.topic, "briefing": text}
