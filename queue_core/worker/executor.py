"""Run one attempt of one job and turn what happened into an Outcome. No I/O of its own:
recording the outcome is the OutcomeBuffer's job."""

from __future__ import annotations

import asyncio
import enum
import traceback
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from queue_core.contracts import JobContract, describe_validation_error
from queue_core.errors import PermanentJobError
from queue_core.models import Attempt, Job, encode_output
from queue_core.retry import RetryPolicy

LAST_ERROR_MAX_CHARS = 4000
"""last_error keeps the exception and the innermost frames, cut to this length."""


class OutcomeKind(enum.Enum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    attempt: Attempt
    job_type: str
    kind: OutcomeKind
    output_json: str | None = None
    error: str | None = None
    delay_seconds: float = 0.0


async def execute(
    registered: JobContract, job: Job, attempt: Attempt, policy: RetryPolicy
) -> Outcome:

    def failure(error: str, *, permanent: bool = False) -> Outcome:
        if not permanent and policy.should_retry(job["attempts"], job["max_retries"]):
            return Outcome(
                attempt,
                registered.job_type,
                OutcomeKind.RETRY,
                error=error,
                delay_seconds=policy.delay_seconds(job["attempts"]),
            )
        return Outcome(attempt, registered.job_type, OutcomeKind.FAILED, error=error)

    if registered.input_model is not None:
        try:
            registered.input_model.model_validate(job["input"])
        except ValidationError as exc:  # the same input fails every retry: fail now
            return failure(
                f"InvalidInput: {describe_validation_error(exc)}"[:LAST_ERROR_MAX_CHARS],
                permanent=True,
            )
    try:
        call = registered.handler(job)
        if registered.timeout is not None:
            result = await asyncio.wait_for(call, registered.timeout)
        else:
            result = await call
        output_json = encode_output(_checked_output(registered, result))
    except PermanentJobError as exc:
        return failure(_describe(exc), permanent=True)
    except TimeoutError:
        return failure(f"TimeoutError: handler ran longer than {registered.timeout}s")
    except Exception as exc:  # a handler's bug must fail the attempt, not the worker
        return failure(_describe(exc))
    return Outcome(attempt, registered.job_type, OutcomeKind.SUCCEEDED, output_json=output_json)


def _checked_output(registered: JobContract, result: Any) -> Any:
    if registered.output_model is not None and result is not None:
        try:
            registered.output_model.model_validate(result)
        except ValidationError as exc:
            raise TypeError(
                f"handler output breaks its contract: {describe_validation_error(exc)}"
            ) from None
    return result


def _describe(exc: BaseException) -> str:
    head = f"{type(exc).__name__}: {exc}"
    frames = traceback.format_tb(exc.__traceback__)[-3:]
    text = head + ("\n" + "".join(frames) if frames else "")
    return text[:LAST_ERROR_MAX_CHARS]
