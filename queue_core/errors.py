"""The one exception hierarchy of hybridq.

Adapters (the Postgres store, the Redis index) translate driver exceptions into these at
their boundary, so nothing above them catches an ``asyncpg`` or ``redis`` error.
"""

from __future__ import annotations


class QueueError(Exception):
    """Base class of every error hybridq raises on purpose."""


class InvalidJob(QueueError, ValueError):
    """A job's arguments are malformed (bad job_type, input not a JSON object, priority out of
    range, naive datetime, ...). Nothing was written."""


class JobNotFound(QueueError, LookupError):
    """No job has that id (or the id is not a UUID)."""


class JobStateConflict(QueueError):
    """The job exists but is in a status the operation does not apply to
    (e.g. ``retry()`` of a job that is still queued)."""

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(message)
        self.status = status


class DuplicateJob(QueueError):
    """A job with the same id (or idempotency key) already exists."""


class LeaseLost(QueueError):
    """A worker tried to record the outcome of an attempt it no longer owns: its lease
    expired and the job was rescued, cancelled, or claimed again. The write was discarded."""


class BackendUnavailable(QueueError):
    """PostgreSQL or Redis could not be reached. ``backend`` says which."""

    def __init__(self, backend: str, detail: str) -> None:
        super().__init__(f"{backend} unavailable: {detail}")
        self.backend = backend
        self.detail = detail


class ConfigurationError(QueueError):
    """A setting or the environment is wrong: a database or role that does not exist, a
    schema never migrated, a Redis that refuses the password... Retrying will not help; the
    message names the setting and the fix."""


class HandlerNotFound(QueueError):
    """A handlers module could not be imported, did not define ``register(runner)``, or its
    ``register`` rejected one of its own declarations; or no handler is registered."""


class PermanentJobError(QueueError):
    """Raised by a handler to fail the job at once, without retry."""


class WaitTimeout(QueueError):
    """``JobService.wait()`` gave up: the job was not finished within the timeout.
    ``job`` is its state at that moment."""

    def __init__(self, message: str, *, job: dict[str, object]) -> None:
        super().__init__(message)
        self.job = job


class NoCurrentJob(QueueError):
    """``progress()`` or ``emit()`` was called outside an async handler run by a worker (they
    report for the job being run, and there is none)."""
