"""Example application handlers. A worker loads this module (``Settings.handlers_module``)
and calls ``register(runner)``; see docs/adding-a-job-type.md for the recipe.

    runner = queue.runner(concurrency=20)
    handlers.register(runner)                      # in-process stand-in services
    handlers.register(runner, Services(email=...)) # or services built at the edge
"""

from __future__ import annotations

from functools import partial

from queue_core import ContractRegistry

from .domain import Services, TransientServiceError
from .job_handlers import (
    BriefingGenerationInput,
    BriefingGenerationOutput,
    CalendarSyncInput,
    CalendarSyncOutput,
    EmailProcessingInput,
    EmailProcessingOutput,
    handle_briefing_generation,
    handle_calendar_sync,
    handle_email_processing,
)

# Per-attempt limits, in seconds: an attempt that runs longer fails and is retried like any
# other failure.
EMAIL_PROCESSING_TIMEOUT_SECONDS = 30.0
CALENDAR_SYNC_TIMEOUT_SECONDS = 120.0
BRIEFING_GENERATION_TIMEOUT_SECONDS = 300.0
MORNING_BRIEFING_CRON = "0 7 * * *"


def register(runner: ContractRegistry, services: Services | None = None) -> None:
    """Declare every job type, the one list of them: its handler bound to ``services``
    (default: the in-process stand-ins), its timeout, and its input and output contracts. The API
    validates requests with the same input models the workers use. ``runner``: a worker
    (``JobRunnerService``) or a bare ``ContractRegistry`` (the API, ``hybridq contracts``)."""
    services = services or Services()
    runner.register_handler(
        "email_processing",
        partial(handle_email_processing, email=services.email),
        timeout=EMAIL_PROCESSING_TIMEOUT_SECONDS,
        input_model=EmailProcessingInput,
        output_model=EmailProcessingOutput,
    )
    runner.register_handler(
        "calendar_sync",
        partial(handle_calendar_sync, calendar=services.calendar),
        timeout=CALENDAR_SYNC_TIMEOUT_SECONDS,
        input_model=CalendarSyncInput,
        output_model=CalendarSyncOutput,
    )
    runner.register_handler(
        "briefing_generation",
        partial(handle_briefing_generation, briefing=services.briefing),
        timeout=BRIEFING_GENERATION_TIMEOUT_SECONDS,
        input_model=BriefingGenerationInput,
        output_model=BriefingGenerationOutput,
    )
    # Enqueued by the reconciler at every tick, exactly once (UTC).
    runner.register_periodic(
        "morning-briefing",
        cron=MORNING_BRIEFING_CRON,
        job_type="briefing_generation",
        input={"topic": "morning digest"},
    )


__all__ = [
    "Services",
    "TransientServiceError",
    "handle_briefing_generation",
    "handle_calendar_sync",
    "handle_email_processing",
    "register",
]
