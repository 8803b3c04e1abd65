"""The example handlers, each with its domain service mocked. No database, no Redis."""

from __future__ import annotations

import json
import uuid
from typing import Any
from unittest.mock import create_autospec

import pytest

from handlers import Services, TransientServiceError, register
from handlers.domain import BriefingWriter, CalendarSyncer, EmailProcessor
from handlers.job_handlers import (
    handle_briefing_generation,
    handle_calendar_sync,
    handle_email_processing,
)
from queue_core import ContractRegistry, JobRunnerService, PermanentJobError


def make_job(job_type: str, input: Any, user_id: str | None = "user-1") -> dict[str, Any]:
    """A job as a worker hands it to a handler (the columns handlers read, and a few more)."""
    return {
        "id": str(uuid.uuid4()),
        "job_type": job_type,
        "input": input,
        "user_id": user_id,
        "status": "running",
        "attempts": 1,
        "max_retries": 3,
        "priority": 0,
    }


@pytest.fixture
def email() -> Any:
    return create_autospec(EmailProcessor, instance=True)


@pytest.fixture
def calendar() -> Any:
    return create_autospec(CalendarSyncer, instance=True)


@pytest.fixture
def briefing() -> Any:
    return create_autospec(BriefingWriter, instance=True)


async def test_email_processing_returns_labels_applied_by_the_processor(email: Any) -> None:
    email.process_message.return_value = 2
    job = make_job("email_processing", {"message_id": "msg-1"})

    output = await handle_email_processing(job, email=email)

    assert output == {"message_id": "msg-1", "labels_applied": 2}
    email.process_message.assert_awaited_once_with("user-1", "msg-1")


@pytest.mark.parametrize("bad_input", [{}, {"message_id": 42}, {"message_id": ""}, ["msg-1"], None])
async def test_email_processing_with_bad_input_fails_permanently(
    email: Any, bad_input: Any
) -> None:
    job = make_job("email_processing", bad_input)

    with pytest.raises(PermanentJobError, match="invalid input for email_processing"):
        await handle_email_processing(job, email=email)
    email.process_message.assert_not_awaited()


async def test_email_processing_without_user_id_fails_permanently(email: Any) -> None:
    job = make_job("email_processing", {"message_id": "msg-1"}, user_id=None)

    with pytest.raises(PermanentJobError, match="needs a user_id"):
        await handle_email_processing(job, email=email)
    email.process_message.assert_not_awaited()


async def test_email_processing_lets_transient_service_error_propagate(email: Any) -> None:
    email.process_message.side_effect = TransientServiceError("mail server timed out")
    job = make_job("email_processing", {"message_id": "msg-1"})

    with pytest.raises(TransientServiceError, match="timed out"):
        await handle_email_processing(job, email=email)


async def test_calendar_sync_defaults_to_seven_days(calendar: Any) -> None:
    calendar.sync.return_value = 5
    job = make_job("calendar_sync", {"calendar_id": "cal-1"})

    output = await handle_calendar_sync(job, calendar=calendar)

    assert output == {"calendar_id": "cal-1", "days": 7, "events_synced": 5}
    calendar.sync.assert_awaited_once_with("user-1", "cal-1", 7)


async def test_calendar_sync_passes_requested_days(calendar: Any) -> None:
    calendar.sync.return_value = 0
    job = make_job("calendar_sync", {"calendar_id": "cal-1", "days": 30})

    output = await handle_calendar_sync(job, calendar=calendar)

    assert output["days"] == 30
    calendar.sync.assert_awaited_once_with("user-1", "cal-1", 30)


@pytest.mark.parametrize(
    ("bad_input", "problem"),
    [
        ({}, "calendar_id"),
        ({"calendar_id": "cal-1", "days": "7"}, "days"),
        ({"calendar_id": "cal-1", "days": True}, "days"),
        ({"calendar_id": "cal-1", "days": 0}, "days"),
        ({"calendar_id": "cal-1", "days": 91}, "days"),
    ],
)
async def test_calendar_sync_with_bad_input_fails_permanently(
    calendar: Any, bad_input: dict[str, Any], problem: str
) -> None:
    job = make_job("calendar_sync", bad_input)

    with pytest.raises(PermanentJobError, match=f"invalid input for calendar_sync: {problem}"):
        await handle_calendar_sync(job, calendar=calendar)
    calendar.sync.assert_not_awaited()


async def test_calendar_sync_lets_transient_service_error_propagate(calendar: Any) -> None:
    calendar.sync.side_effect = TransientServiceError("provider returned 503")
    job = make_job("calendar_sync", {"calendar_id": "cal-1"})

    with pytest.raises(TransientServiceError):
        await handle_calendar_sync(job, calendar=calendar)


async def test_briefing_generation_returns_the_briefing(briefing: Any) -> None:
    briefing.write.return_value = "All quiet."
    job = make_job("briefing_generation", {"topic": "rates"})

    output = await handle_briefing_generation(job, briefing=briefing)

    assert output == {"topic": "rates", "briefing": "All quiet."}
    briefing.write.assert_awaited_once_with("rates", "user-1")


async def test_briefing_generation_runs_without_user_id(briefing: Any) -> None:
    briefing.write.return_value = "All quiet."
    job = make_job("briefing_generation", {"topic": "rates"}, user_id=None)

    await handle_briefing_generation(job, briefing=briefing)

    briefing.write.assert_awaited_once_with("rates", None)


@pytest.mark.parametrize("bad_input", [{}, {"topic": ""}, {"topic": ["rates"]}])
async def test_briefing_generation_with_bad_input_fails_permanently(
    briefing: Any, bad_input: dict[str, Any]
) -> None:
    job = make_job("briefing_generation", bad_input)

    with pytest.raises(PermanentJobError, match="invalid input for briefing_generation: topic"):
        await handle_briefing_generation(job, briefing=briefing)
    briefing.write.assert_not_awaited()


async def test_briefing_generation_lets_transient_service_error_propagate(
    briefing: Any,
) -> None:
    briefing.write.side_effect = TransientServiceError("rate limited")
    job = make_job("briefing_generation", {"topic": "rates"})

    with pytest.raises(TransientServiceError):
        await handle_briefing_generation(job, briefing=briefing)


def registered() -> ContractRegistry:
    """The job types as register() declares them: the one list of them. The tests below
    cover every type it registers, so adding one needs no edit here."""
    registry = ContractRegistry()
    register(registry)
    return registry


REGISTERED = [c.job_type for c in registered()]


@pytest.mark.parametrize("job_type", REGISTERED)
def test_every_registered_type_declares_a_timeout_models_and_an_example_input(
    job_type: str,
) -> None:
    contract = registered().get(job_type)
    assert contract is not None
    assert contract.timeout is not None and contract.timeout > 0
    assert contract.input_model is not None and contract.output_model is not None
    assert contract.example_input is not None, "add json_schema_extra examples to its model"
    contract.validate_input(contract.example_input)


def handler_for(registry: ContractRegistry, job_type: str) -> Any:
    contract = registry.get(job_type)
    assert contract is not None
    return contract.handler


async def test_registered_handlers_call_the_injected_services(
    email: Any, calendar: Any, briefing: Any
) -> None:
    email.process_message.return_value = 1
    calendar.sync.return_value = 1
    briefing.write.return_value = "ok"
    registry = ContractRegistry()
    register(registry, Services(email=email, calendar=calendar, briefing=briefing))

    await handler_for(registry, "email_processing")(
        make_job("email_processing", {"message_id": "m"})
    )
    await handler_for(registry, "calendar_sync")(make_job("calendar_sync", {"calendar_id": "c"}))
    await handler_for(registry, "briefing_generation")(
        make_job("briefing_generation", {"topic": "t"})
    )

    email.process_message.assert_awaited_once()
    calendar.sync.assert_awaited_once()
    briefing.write.assert_awaited_once()


@pytest.mark.parametrize("job_type", REGISTERED)
async def test_default_services_give_deterministic_json_output_of_the_declared_shape(
    job_type: str,
) -> None:
    contract = registered().get(job_type)
    assert contract is not None and contract.output_model is not None
    example = contract.example_input
    assert example is not None

    first = await contract.handler(make_job(job_type, example))
    second = await contract.handler(make_job(job_type, example))

    assert isinstance(first, dict)
    assert first == second
    json.dumps(first, allow_nan=False)
    contract.output_model.model_validate(first)  # the declared output contract holds


async def test_register_is_accepted_by_the_real_runner_as_async_handlers() -> None:
    # functools.partial of an async function must still count as async (not run in a thread).
    runner = JobRunnerService(store=None, index=None, lease_store=None)  # type: ignore[arg-type]

    register(runner)

    assert runner.job_types == sorted(REGISTERED)
    assert all(contract.is_async for contract in runner)


def test_register_declares_the_morning_briefing_as_a_periodic_job() -> None:
    registry = ContractRegistry()
    register(registry)
    [periodic] = registry.periodic
    assert periodic.job_type == "briefing_generation" and periodic.cron == "0 7 * * *"
    assert registry.get(periodic.job_type) is not None  # its job type has a handler
