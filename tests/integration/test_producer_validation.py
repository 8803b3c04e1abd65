"""Producers validate against the application's job types when they know them, and say so
explicitly when they deliberately do not (connect(handlers=..., validate=...))."""

from __future__ import annotations

from typing import Any

import pytest

from queue_core import HandlerNotFound, InvalidJob, Settings, connect


async def jobs_in_table(settings: Settings) -> int:
    async with connect(settings, validate=False) as queue:
        count: int = await queue.pool.fetchval("SELECT count(*) FROM jobs")
    return count


@pytest.mark.parametrize(
    "job_type, job_input, message",
    [
        ("no_such_type", {}, "unknown job_type 'no_such_type' \\(registered: briefing_"),
        ("email_processing", {"message_id": 7}, "input for email_processing: message_id"),
        ("email_processing", {}, "input for email_processing: message_id: Field required"),
    ],
)
async def test_a_producer_naming_its_handlers_module_rejects_what_workers_would(
    settings: Settings, job_type: str, job_input: dict[str, Any], message: str
) -> None:
    async with connect(settings, handlers="handlers") as queue:
        with pytest.raises(InvalidJob, match=message):
            await queue.job_service.create(job_type, job_input, user_id="u-1")
        with pytest.raises(InvalidJob, match=f"jobs\\[1\\]: {message}"):
            await queue.job_service.create_many(
                [
                    {"job_type": "email_processing", "input": {"message_id": "ok"}},
                    {"job_type": job_type, "input": job_input},
                ]
            )
        good = await queue.job_service.create("email_processing", {"message_id": "m-1"})
    assert good["status"] == "queued"
    assert await jobs_in_table(settings) == 1  # only the valid job: nothing else written


async def test_the_handlers_module_setting_makes_every_producer_validate(
    settings: Settings,
) -> None:
    configured = settings.model_copy(update={"handlers_module": "handlers"})
    async with connect(configured) as queue:
        with pytest.raises(InvalidJob, match="unknown job_type 'emial_processing'"):
            await queue.job_service.create("emial_processing", {"message_id": "m"})


async def test_a_producer_that_names_no_module_must_opt_out_to_enqueue(
    settings: Settings,
) -> None:
    assert settings.handlers_module is None
    async with connect(settings) as queue:
        with pytest.raises(HandlerNotFound, match="validate=False"):
            await queue.job_service.create("anything", {})
        assert await queue.job_service.list_jobs(user_id=None) == []  # reads still work

    async with connect(settings, validate=False) as queue:
        job = await queue.job_service.create("anything", {"free": "form"})
    assert job["job_type"] == "anything"


async def test_a_handlers_module_that_cannot_be_loaded_fails_at_connect(
    settings: Settings,
) -> None:
    with pytest.raises(HandlerNotFound, match="cannot import handlers module 'no_such_mod'"):
        async with connect(settings, handlers="no_such_mod"):
            pass
