"""Example application handlers. A worker loads this module (``Settings.handlers_module``)
and calls ``register(runner)``; see docs/adding-a-job-type.md for the recipe.

    runner = queue.runner(concurrency=20)
    handlers.register(runner)                      # in-process stand-in services
    handlers.register(runner, Services(email=...)) # or services built at the edge
"""

from __future__ import annotations

from functools import partial
from typing import Any, Protocol

from .domain import Services, TransientServiceError
from .job_handlers import (
    handle_briefing_generation,
    handle_calendar_sync,
    handle_email_processing,
)

JOB_TYPES = ("email_processing", "calendar_sync", "briefing_generation")

# Per-attempt limits, in seconds: an attempt that runs longer fails and is retried like any
# other failure.
EMAIL_PROCESSING_TIMEOUT_SECONDS = 30.0
CALENDAR_SYNC_TIMEOUT_SECONDS = 120.0
BRIEFING_GENERATION_TIMEOUT_SECONDS = 300.0


class HandlerRegistry(Protocol):
    """What ``register`` needs of a runner (``queue_core.JobRunnerService`` is one)."""

    def register_handler(
        self, job_type: str, handler: Any, *, timeout: float | None = None
    ) -> None: ...


def register(runner: HandlerRegistry, services: Services | None = None) -> None:
    """Register a handler for each of ``JOB_TYPES``, bound to ``services`` (default: the
    in-process stand-ins)."""
    services = services or Services()
    runner.register_handler(
        "email_processing",
        partial(handle_email_processing, email=services.email),
        timeout=EMAIL_PROCESSING_TIMEOUT_SECONDS,
    )
    runner.register_handler(
        "calendar_sync",
        partial(handle_calendar_sync, calendar=services.calendar),
        timeout=CALENDAR_SYNC_TIMEOUT_SECONDS,
    )
    runner.register_handler(
        "briefing_generation",
        partial(handle_briefing_generation, briefing=services.briefing),
        timeout=BRIEFING_GENERATION_TIMEOUT_SECONDS,
    )


__all__ = [
    "JOB_TYPES",
    "Services",
    "TransientServiceError",
    "handle_briefing_generation",
    "handle_calendar_sync",
    "handle_email_processing",
    "register",
]
