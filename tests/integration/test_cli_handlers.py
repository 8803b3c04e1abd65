"""Which job types a command knows: worker, reconcile and api need the application's handlers
module, never an implicit example; enqueue validates against it unless told not to."""

from __future__ import annotations

import json

import pytest

from queue_core import Queue, Settings
from tests.support.cli import assert_one_line_error, hybridq


@pytest.mark.parametrize(
    "args",
    [
        ["worker"],
        ["reconcile", "--once"],
        ["api", "--port", "1"],
        ["contracts"],
    ],
)
async def test_commands_that_load_handlers_refuse_to_start_without_a_module(
    settings: Settings, args: list[str]
) -> None:
    result = hybridq(settings, *args)
    assert_one_line_error(
        result, 2, f"{args[0]} needs the module that registers your job types: pass --handlers"
    )
    assert "HYBRIDQ_HANDLERS_MODULE" in result.stderr


async def test_reconcile_takes_the_module_from_the_setting(queue: Queue) -> None:
    result = hybridq(queue.settings, "reconcile", "--once", HYBRIDQ_HANDLERS_MODULE="handlers")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["skipped"] is False


@pytest.mark.parametrize(
    "job_type, job_input, text",
    [
        ("no_such_type", "{}", "unknown job_type 'no_such_type' (registered: "),
        ("email_processing", '{"message_id": 7}', "input for email_processing: message_id"),
        ("email_processing", "{}", "input for email_processing: message_id: Field required"),
    ],
)
async def test_enqueue_rejects_what_the_handlers_module_does_not_accept(
    queue: Queue, job_type: str, job_input: str, text: str
) -> None:
    result = hybridq(
        queue.settings, "enqueue", job_type, "--input", job_input, "--handlers", "handlers"
    )
    assert_one_line_error(result, 2, text)
    assert await queue.pool.fetchval("SELECT count(*) FROM jobs") == 0


async def test_enqueue_validates_against_the_module_in_the_setting(queue: Queue) -> None:
    result = hybridq(
        queue.settings, "enqueue", "no_such_type", "--input", "{}",
        HYBRIDQ_HANDLERS_MODULE="handlers",
    )
    assert_one_line_error(result, 2, "unknown job_type 'no_such_type'")


async def test_enqueue_without_a_module_asks_for_one_or_an_explicit_opt_out(
    queue: Queue,
) -> None:
    result = hybridq(queue.settings, "enqueue", "no_such_type", "--input", "{}")
    assert_one_line_error(result, 2, "enqueue needs the module that registers your job types")
    assert "--no-validate" in result.stderr

    unchecked = hybridq(queue.settings, "enqueue", "no_such_type", "--input", "{}",
                        "--no-validate")
    assert unchecked.returncode == 0, unchecked.stderr
    assert json.loads(unchecked.stdout)["job_type"] == "no_such_type"


async def test_enqueue_accepts_both_a_module_and_the_opt_out_only_one_at_a_time(
    settings: Settings,
) -> None:
    result = hybridq(settings, "enqueue", "t", "--input", "{}", "--handlers", "handlers",
                     "--no-validate")
    assert_one_line_error(result, 2, "not allowed with argument")
