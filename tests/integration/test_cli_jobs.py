"""The single-job commands (get, list, cancel ID, retry ID), the command line's usage and
version, and its exit codes: run as a user would, a subprocess with env configuration."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from importlib.metadata import version

import pytest

from queue_core import Queue, Settings
from queue_core.cli.main import COMMANDS
from tests.support.cli import assert_one_line_error, hybridq
from tests.support.workers import REPO

MISSING = "01900000-0000-7000-8000-000000000000"


async def fail(queue: Queue, job_id: str, error: str = "boom\nat line 3") -> None:
    await queue.pool.execute(
        "UPDATE jobs SET status = 'failed', attempts = 1, last_error = $2, finished_at = now()"
        " WHERE id = $1",
        uuid.UUID(job_id),
        error,
    )


def test_bare_hybridq_prints_the_usage_with_every_command_and_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "queue_core"], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 2
    assert result.stderr.startswith("usage: hybridq")
    for command in {name.split()[0] for name in COMMANDS}:
        assert f"\n    {command} " in result.stderr or f"\n    {command}\n" in result.stderr
    assert "exit codes:" in result.stderr


def test_version_prints_the_installed_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "queue_core", "--version"], capture_output=True, text=True
    )
    assert (result.returncode, result.stdout) == (0, f"hybridq {version('hybridq-queue')}\n")


@pytest.mark.parametrize(
    "args, text",
    [
        (["get", "123"], "expected a job id"),
        (["cancel", "123"], "expected a job id"),
        (["retry", "123"], "expected a job id"),
        (["retry"], "retry needs a job ID, or --status"),
        (["retry", MISSING, "--status", "failed"], "retry ID takes no --status"),
        (["list", "--limit", "0"], "positive integer"),
        (["list", "--limit", "1001"], "at most 1000"),
        (["list", "--status", "done"], "invalid choice"),
        (["purge", "--older-than", "7", "--yes"], "with its unit"),
        (["reconcile", "--every", "15", "--handlers", "handlers"], "with its unit"),
    ],
)
async def test_malformed_arguments_exit_2_before_anything_connects(
    settings: Settings, args: list[str], text: str
) -> None:
    # A dead database: exit 2, not 3, proves the argument was refused before connecting.
    result = hybridq(settings, *args, DATABASE_URL="postgresql://127.0.0.1:1/x")
    assert_one_line_error(result, 2, text)


async def test_get_cancel_and_retry_of_a_missing_job_exit_1(settings: Settings) -> None:
    for command in ("get", "cancel", "retry"):
        assert_one_line_error(hybridq(settings, command, MISSING), 1, f"no job with id {MISSING}")


async def test_cancel_id_cancels_a_queued_job_and_refuses_a_finished_one(queue: Queue) -> None:
    job = await queue.job_service.create("t", {})

    result = hybridq(queue.settings, "cancel", job["id"])

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "cancelled"
    assert (await queue.job_service.get(job["id"]))["status"] == "cancelled"
    again = hybridq(queue.settings, "cancel", job["id"])
    assert_one_line_error(again, 1, "it is cancelled, not queued or running")


async def test_retry_id_queues_one_failed_job_again_and_refuses_a_queued_one(
    queue: Queue,
) -> None:
    failed, other = await queue.job_service.create("t", {}), await queue.job_service.create("t", {})
    await fail(queue, failed["id"])
    await fail(queue, other["id"])

    result = hybridq(queue.settings, "retry", failed["id"])

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "queued"
    assert (await queue.job_service.get(other["id"]))["status"] == "failed"  # only that one
    again = hybridq(queue.settings, "retry", failed["id"])
    assert_one_line_error(again, 1, "it is queued, not failed or cancelled")


async def test_list_filters_by_status_type_and_user_newest_first(queue: Queue) -> None:
    a1 = await queue.job_service.create("a", {}, user_id="ann")
    a2 = await queue.job_service.create("a", {}, user_id="bob")
    b1 = await queue.job_service.create("b", {}, user_id="ann")
    await fail(queue, a2["id"])

    def listed(*args: str) -> list[str]:
        result = hybridq(queue.settings, "list", "--json", *args)
        assert result.returncode == 0, result.stderr
        return [job["id"] for job in json.loads(result.stdout)]

    assert listed() == [b1["id"], a2["id"], a1["id"]]
    assert listed("--type", "a") == [a2["id"], a1["id"]]
    assert listed("--user", "ann") == [b1["id"], a1["id"]]
    assert listed("--status", "failed") == [a2["id"]]
    assert listed("--type", "a", "--status", "queued", "--user", "ann") == [a1["id"]]
    assert listed("--limit", "1") == [b1["id"]]


async def test_list_prints_a_table_with_the_first_line_of_the_last_error(queue: Queue) -> None:
    job = await queue.job_service.create("email_processing", {}, user_id="ann")
    await fail(queue, job["id"], "TransientServiceError: mail server timed out\n  at frame")

    result = hybridq(queue.settings, "list")

    assert result.returncode == 0, result.stderr
    assert job["id"] in result.stdout and "email_processing" in result.stdout
    assert "TransientServiceError: mail server timed out" in result.stdout
    assert "at frame" not in result.stdout
    assert "1 job" in result.stdout
