"""The hybridq command, run as a user would: a subprocess with env configuration."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from queue_core import Queue, Settings
from queue_core.contracts import load_contracts
from tests.support.aio import wait_for_status
from tests.support.cli import assert_one_line_error, hybridq
from tests.support.workers import REPO, worker_env


async def test_migrate_is_idempotent(settings: Settings) -> None:
    result = hybridq(settings, "migrate")
    assert result.returncode == 0 and "applied 0 migration(s)" in result.stdout


async def test_enqueue_then_get_round_trip(queue: Queue) -> None:
    result = hybridq(
        queue.settings,
        "enqueue",
        "email_processing",
        "--input",
        '{"message_id": "m-1"}',
        "--priority",
        "5",
        "--user-id",
        "u-1",
        "--handlers",
        "handlers",
    )
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["status"] == "queued" and created["priority"] == 5
    fetched = json.loads(hybridq(queue.settings, "get", created["id"]).stdout)
    assert fetched["input"] == {"message_id": "m-1"} and fetched["user_id"] == "u-1"


async def test_enqueue_with_delay_schedules_the_job(queue: Queue) -> None:
    result = hybridq(
        queue.settings, "enqueue", "t", "--input", "{}", "--delay", "60", "--no-validate"
    )
    job = json.loads(result.stdout)
    assert job["scheduled_for"] > job["created_at"]


@pytest.mark.parametrize(
    "args, code, text",
    [
        (["enqueue", "t", "--no-validate", "--input", "{bad"], 2, "not valid JSON"),
        (["enqueue", "t", "--no-validate", "--input", "[1]"], 2, "JSON object"),
        (["enqueue", "t", "--no-validate", "--input", "{}", "--priority", "5000"], 2, "priority"),
        (["enqueue", "t", "--no-validate", "--input", "{}", "--priority", "hi"], 2, "invalid int"),
        (["enqueue", "t", "--no-validate", "--input", "{}", "--delay", "-3"], 2, "number"),
        (["enqueue", "bad type", "--no-validate", "--input", "{}"], 2, "job_type"),
        (["enqueue", "t"], 2, "--input"),
        (["get", "not-a-uuid"], 2, "expected a job id"),
        (["get", "123"], 2, "expected a job id"),
        (["get", "01900000-0000-7000-8000-000000000000"], 1, "no job"),
        (["worker", "--concurrency", "0"], 2, "positive integer"),
        (["worker", "--handlers", "no_such_module_xyz"], 2, "cannot import"),
        (["worker", "--handlers", "json"], 2, "register(runner)"),
        (["frobnicate"], 2, "invalid choice"),
    ],
)
async def test_bad_arguments_give_one_line_error_and_nonzero_exit(
    settings: Settings, args: list[str], code: int, text: str
) -> None:
    assert_one_line_error(hybridq(settings, *args), code, text)


async def test_unreachable_postgres_exits_3_with_one_line(settings: Settings) -> None:
    result = hybridq(
        settings,
        "get",
        "01900000-0000-7000-8000-000000000000",
        DATABASE_URL="postgresql://127.0.0.1:1/x",
    )
    assert_one_line_error(result, 3, "postgres unavailable")


async def test_invalid_configuration_is_reported(settings: Settings) -> None:
    result = hybridq(settings, "migrate", HYBRIDQ_LEASE_SECONDS="soon")
    assert_one_line_error(result, 2, "HYBRIDQ_LEASE_SECONDS")


def test_help_lists_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "queue_core", "--help"], capture_output=True, text=True, cwd=REPO
    )
    for command in ("migrate", "worker", "enqueue", "get"):
        assert command in result.stdout


async def test_worker_runs_jobs_and_exits_0_on_sigterm(queue: Queue, tmp_path: Path) -> None:
    job = await queue.job_service.create("recorded", {"n": 1})
    env = worker_env(queue.settings, tmp_path / "rec.log")
    proc = subprocess.Popen(
        [sys.executable, "-m", "queue_core", "worker", "--handlers", "tests.support.recording"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        await wait_for_status(queue.job_service, job["id"], {"succeeded"})
    finally:
        time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "Traceback" not in out


def test_contracts_prints_every_registered_job_type_with_its_schemas() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "queue_core", "contracts", "--handlers", "handlers", "--format",
         "json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    contracts = {c["job_type"]: c for c in json.loads(result.stdout)}
    assert list(contracts) == [c.job_type for c in load_contracts("handlers")]
    assert contracts["email_processing"]["input_schema"]["required"] == ["message_id"]
    assert contracts["calendar_sync"]["handler"] == "handlers.job_handlers.handle_calendar_sync"
    assert contracts["email_processing"]["example_input"] == {"message_id": "msg-1"}


def test_the_installed_hybridq_command_runs() -> None:
    """The console script pyproject declares (what the README, compose and the image run),
    not only ``python -m queue_core``."""
    script = Path(sys.executable).with_name("hybridq")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: hybridq")
