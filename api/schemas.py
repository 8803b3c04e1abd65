"""Request and response bodies. The body of POST /jobs is a union discriminated by
``job_type``, built from the job contracts: OpenAPI shows each type's input schema, and an
unknown job type or a bad input is a 422 that names the field.

Strict types everywhere: JSON ``true`` is not the number 1 and ``"7"`` is not 7. The common
fields are declared strict here; a job's input is validated again by ``InputCheck`` in JSON
strict mode against its type's model (whatever that model's own config), with the limits
of queue_core.json_values, so the API refuses what ``create()`` refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from queue_core import PRIORITY_MAX, PRIORITY_MIN, ContractRegistry, JobStatus
from queue_core.json_values import JsonValueError, encode_json
from queue_core.models import MAX_RETRIES_LIMIT

MAX_DELAY_SECONDS = 366 * 86_400
"""scheduled_for / delay_seconds reach at most a year ahead."""
PAST_TOLERANCE = timedelta(minutes=5)
"""scheduled_for may be this far in the past (client clock skew); earlier is a mistake."""


class JobCreateBase(BaseModel):
    """Fields common to every job type. Unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid")

    priority: StrictInt = Field(
        0, ge=PRIORITY_MIN, le=PRIORITY_MAX, description="Higher runs first."
    )
    max_retries: StrictInt = Field(
        3, ge=0, le=MAX_RETRIES_LIMIT, description="Retries after the first attempt."
    )
    scheduled_for: AwareDatetime | None = Field(
        None, description="Run no sooner than this (ISO 8601 with offset). Within a year."
    )
    delay_seconds: float | None = Field(
        None,
        strict=True,  # an int is a number of seconds too; a bool or a string is not
        ge=0,
        le=MAX_DELAY_SECONDS,
        allow_inf_nan=False,
        description="Run no sooner than this many seconds from now (instead of scheduled_for).",
    )
    user_id: StrictStr | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Owner of the job: admin tokens only; a user token enqueues as its user.",
    )

    @field_validator("scheduled_for", mode="before")
    @classmethod
    def _a_string(cls, value: Any) -> Any:
        """JSON has no date type: a date is an ISO 8601 string, never a number of seconds."""
        if value is not None and not isinstance(value, str):
            raise ValueError("must be an ISO 8601 date-time string with a UTC offset")
        return value

    @field_validator("scheduled_for")
    @classmethod
    def _within_range(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        now = datetime.now(UTC)
        if value < now - PAST_TOLERANCE:
            raise ValueError("must not be in the past")
        if value > now + timedelta(seconds=MAX_DELAY_SECONDS):
            raise ValueError("must be within a year from now")
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> JobCreateBase:
        if self.scheduled_for is not None and self.delay_seconds is not None:
            raise ValueError("give scheduled_for or delay_seconds, not both")
        return self

    def due(self) -> datetime | None:
        if self.delay_seconds:
            return datetime.now(UTC) + timedelta(seconds=self.delay_seconds)
        return self.scheduled_for


def job_create_model(contracts: ContractRegistry) -> Any:
    """The POST /jobs body: one variant per registered job type, keyed by job_type."""
    variants = []
    for contract in contracts:
        input_type: Any = contract.input_model or dict[str, Any]
        variant = create_model(
            f"Create_{contract.job_type.replace('.', '_').replace(':', '_').replace('-', '_')}",
            __base__=JobCreateBase,
            job_type=(Literal[contract.job_type], ...),  # type: ignore[arg-type]
            input=(input_type, ...),
        )
        variants.append(variant)
    if not variants:
        raise ValueError("no job type is registered: the API would accept nothing")
    if len(variants) == 1:
        return variants[0]
    return Annotated[Union[tuple(variants)], Field(discriminator="job_type")]  # noqa: UP007


class InputCheck:
    """A job's input as the client sent it (the parsed JSON object), checked the way
    ``create()`` checks it and then strictly: the limits of queue_core.json_values (depth,
    number size, NUL, lone surrogates), at most ``max_input_bytes`` as compact JSON, and its
    type's input model in JSON strict mode."""

    def __init__(self, contracts: ContractRegistry, max_input_bytes: int) -> None:
        self._models = {c.job_type: c.input_model for c in contracts}
        self._max_input_bytes = max_input_bytes

    def errors(self, job_type: str, value: Any, loc: tuple[str | int, ...]) -> list[Any]:
        """Pydantic-style error dicts (``type``, ``loc`` under ``loc``, ``msg``); empty when
        the input is acceptable."""
        try:
            text = encode_json(value, "the value")
        except JsonValueError as exc:
            return [{"type": "value_error", "loc": loc, "msg": str(exc), "input": None}]
        if len(text) > self._max_input_bytes:  # ASCII: characters are bytes
            message = f"input exceeds {self._max_input_bytes} bytes as JSON"
            return [{"type": "value_error", "loc": loc, "msg": message, "input": None}]
        model = self._models.get(job_type)
        if model is None:
            return []
        try:
            model.model_validate_json(text, strict=True)
        except ValidationError as exc:
            return [
                {"type": e["type"], "loc": (*loc, *e["loc"]), "msg": e["msg"], "input": None}
                for e in exc.errors()
            ]
        return []


class JobOut(BaseModel):
    id: str
    job_type: str
    user_id: str | None
    status: JobStatus
    input: dict[str, Any]
    output: dict[str, Any] | None
    priority: int
    attempts: int
    max_retries: int
    scheduled_for: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    last_error: str | None = Field(
        description="Why the last attempt failed: the error's type and message."
    )
    error_detail: str | None = Field(
        None,
        description="Where it failed: the innermost frames of the traceback, or the worker "
        "that lost the lease. Admin tokens only; null for everyone else.",
    )

    @classmethod
    def of(cls, job: dict[str, Any], *, admin: bool = False) -> JobOut:
        """The job as the API shows it; ``error_detail`` only to an admin (it names files,
        hosts and processes of the deployment)."""
        fields = {k: job.get(k) for k in cls.model_fields}
        if not admin:
            fields["error_detail"] = None
        return cls.model_validate(fields)


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None = Field(
        None, description="Pass as ?cursor= for the next (older) page; null on the last page."
    )


class BatchOut(BaseModel):
    jobs: list[JobOut]


class TypeStats(BaseModel):
    job_type: str
    by_status: dict[str, int]
    ready_in_index: int
    scheduled_in_index: int
    oldest_queued_age_seconds: float | None
    live_workers: int = Field(description="Workers alive now that have registered this type.")
    queued_without_worker: int = Field(
        description="Queued jobs of this type while no live worker has registered it."
    )


class StatsOut(BaseModel):
    job_types: list[TypeStats]


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ready", "unavailable"]
    postgres: Literal["ok", "unavailable"]
    redis: Literal["ok", "unavailable"]


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, str]] | None = None


class ErrorOut(BaseModel):
    error: ErrorBody
