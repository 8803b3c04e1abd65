"""hybridq's engine: durable jobs in PostgreSQL, claimed through a Redis ready-index.

Public names: everything application code needs to create jobs, write handlers and run
workers. Anything else in ``queue_core`` is an implementation detail; docs/architecture.md
maps the sub-packages.
"""

from .connect import Queue, connect
from .contracts import ContractRegistry, JobContract
from .enqueue.service import JobService
from .errors import (
    BackendUnavailable,
    DuplicateJob,
    HandlerNotFound,
    InvalidJob,
    JobNotFound,
    JobStateConflict,
    LeaseLost,
    NoCurrentJob,
    PermanentJobError,
    QueueError,
    WaitTimeout,
)
from .live import emit, progress
from .models import PRIORITY_MAX, PRIORITY_MIN, Job, JobStatus
from .settings import Settings
from .worker.runner import JobRunnerService

__all__ = [
    "BackendUnavailable",
    "ContractRegistry",
    "JobContract",
    "DuplicateJob",
    "HandlerNotFound",
    "InvalidJob",
    "Job",
    "JobNotFound",
    "JobRunnerService",
    "JobService",
    "JobStateConflict",
    "JobStatus",
    "LeaseLost",
    "NoCurrentJob",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "PermanentJobError",
    "Queue",
    "QueueError",
    "WaitTimeout",
    "Settings",
    "connect",
    "emit",
    "progress",
]
