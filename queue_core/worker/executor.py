"""What one attempt's end means for its job: an Outcome to record. No I/O: running the
handler is handler_call.py's job, recording the outcome the OutcomeBuffer's.

- input the type's model rejects (or a row that could not be decoded) fails the job at once;
- a return value is checked against the output model and the limits of a stored value;
- anything raised fails the attempt (retried after a backoff while retries remain),
  ``PermanentJobError`` fails the job; so does running past the type's timeout.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from queue_core.contracts import JobContract, describe_validation_error
from queue_core.errors import PermanentJobError
from queue_core.json_values import JsonValueError, encode_json
from queue_core.models import UNDECODABLE, Attempt, Job, JobEvent
from queue_core.retry import RetryPolicy

from .error_text import LAST_ERROR_MAX_CHARS, describe, safe_text
from .handler_call import Raised, Returned


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
    error: str | None = None  # "Type: message": every owner of the job may read it
    detail: str | None = None  # the innermost frames, for admins only
    delay_seconds: float = 0.0
    user_id: str | None = None  # the job's owner, for the live event of its new status

    def event(self) -> JobEvent:
        """The status change this outcome makes, once written (for live readers)."""
        status = {
            OutcomeKind.SUCCEEDED: "succeeded",
            OutcomeKind.RETRY: "queued",
            OutcomeKind.FAILED: "failed",
        }[self.kind]
        return JobEvent(
            str(self.attempt.id),
            self.job_type,
            self.user_id,
            status=status,
            attempts=self.attempt.attempt,
        )


class Decide:
    """Turns how a handler ended into the attempt's Outcome, for one worker's policy."""

    def __init__(self, policy: RetryPolicy, max_output_bytes: int) -> None:
        self.policy = policy
        self.max_output_bytes = max_output_bytes

    def rejected_input(self, contract: JobContract, job: Job, attempt: Attempt) -> Outcome | None:
        """The job's failure when its input cannot be run (the same input fails every
        retry), or None when the handler may start."""
        value = job.get("input")
        if not isinstance(value, dict) or UNDECODABLE in value:
            why = value.get(UNDECODABLE) if isinstance(value, dict) else type(value).__name__
            error = f"InvalidInput: the stored input cannot be read back: {why}"
            return self.failure(job, attempt, error, permanent=True)
        if contract.input_model is not None:
            try:
                contract.input_model.model_validate(value)
            except ValidationError as exc:
                error = f"InvalidInput: {describe_validation_error(exc)}"
                return self.failure(job, attempt, error, permanent=True)
        return None

    def ended(
        self, contract: JobContract, job: Job, attempt: Attempt, ended: Returned | Raised
    ) -> Outcome:
        """The Outcome of what the handler returned or raised. What it returned or raised
        is the handler's object and may misbehave when looked at (a hostile ``__class__``,
        ``items()``, ``__iter__``...): that fails the attempt too."""
        try:
            return self._ended(contract, job, attempt, ended)
        except Exception as exc:
            what = "returned" if isinstance(ended, Returned) else "raised"
            return self.failure(
                job,
                attempt,
                f"InvalidOutput: what the handler {what} could not be read "
                f"({describe(exc)[0][:200]})",
            )

    def _ended(
        self, contract: JobContract, job: Job, attempt: Attempt, ended: Returned | Raised
    ) -> Outcome:
        if isinstance(ended, Raised):
            message, detail = ended.description or describe(ended.error)
            permanent = isinstance(ended.error, PermanentJobError)
            return self.failure(job, attempt, message, detail, permanent=permanent)
        try:
            output_json = self._encoded_output(contract, ended.value)
        except (TypeError, JsonValueError) as exc:
            return self.failure(job, attempt, f"InvalidOutput: {exc}")
        return Outcome(
            attempt,
            job["job_type"],
            OutcomeKind.SUCCEEDED,
            output_json=output_json,
            user_id=job.get("user_id"),
        )

    def timed_out(self, contract: JobContract, job: Job, attempt: Attempt) -> Outcome:
        error = f"TimeoutError: handler ran longer than {contract.timeout}s"
        return self.failure(job, attempt, error)

    def failure(
        self,
        job: Job,
        attempt: Attempt,
        error: str,
        detail: str | None = None,
        *,
        permanent: bool = False,
    ) -> Outcome:
        error = safe_text(error, LAST_ERROR_MAX_CHARS)
        if not permanent and self.policy.should_retry(job["attempts"], job["max_retries"]):
            delay = self.policy.delay_seconds(job["attempts"])
            return Outcome(
                attempt,
                job["job_type"],
                OutcomeKind.RETRY,
                error=error,
                detail=detail,
                delay_seconds=delay,
                user_id=job.get("user_id"),
            )
        return Outcome(
            attempt,
            job["job_type"],
            OutcomeKind.FAILED,
            error=error,
            detail=detail,
            user_id=job.get("user_id"),
        )

    def _encoded_output(self, contract: JobContract, value: Any) -> str | None:
        """JSON text of a handler's return value (None stores SQL NULL); TypeError or
        JsonValueError naming what is wrong with anything else."""
        if value is None:
            return None
        if not isinstance(value, dict):
            raise TypeError(f"handler must return a dict or None, got {type(value).__name__}")
        if contract.output_model is not None:
            try:
                contract.output_model.model_validate(value)
            except ValidationError as exc:
                raise TypeError(f"breaks its contract: {describe_validation_error(exc)}") from None
        text = encode_json(value, "output", max_items=self.max_output_bytes)
        if len(text) > self.max_output_bytes:  # ASCII: one byte per character
            raise TypeError(
                f"output is {len(text)} bytes as JSON, over HYBRIDQ_MAX_OUTPUT_BYTES "
                f"({self.max_output_bytes})"
            )
        return text
