"""The operator commands (stats, top, retry, purge), run as an operator would: a subprocess
with env configuration, stdin not a terminal (as in cron or CI)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from queue_core import Queue, Settings
from queue_core.index.presence import announce_worker
from tests.integration.test_retention import make_jobs, remaining
from tests.support.cli import assert_one_line_error, hybridq
from tests.support.workers import REPO, worker_env

SET_STATUS = "UPDATE jobs SET status = $2, finished_at = now() WHERE id = ANY($1::uuid[])"


async def create(queue: Queue, job_type: str, count: int, **options: object) -> list[uuid.UUID]:
    jobs = await queue.job_service.create_many(
        [{"job_type": job_type, "input": {}, **options}] * count
    )
    return [uuid.UUID(j["id"]) for j in jobs]


async def set_status(queue: Queue, ids: list[uuid.UUID], status: str) -> None:
    await queue.pool.execute(SET_STATUS, ids, status)


async def test_stats_json_counts_match_the_jobs_created(queue: Queue) -> None:
    a = await create(queue, "a", 4)
    await create(queue, "b", 2)
    await queue.job_service.create("b", {})
    await queue.job_service.create("b", {}, scheduled_for=datetime.now(UTC) + timedelta(days=1))
    await set_status(queue, a[:1], "failed")
    await set_status(queue, a[1:2], "succeeded")

    result = hybridq(queue.settings, "stats", "--json")

    assert result.returncode == 0, result.stderr
    rows = {row["job_type"]: row for row in json.loads(result.stdout)["job_types"]}
    assert set(rows) == {"a", "b"}
    assert rows["a"]["by_status"] == {
        "queued": 2,
        "running": 0,
        "succeeded": 1,
        "failed": 1,
        "cancelled": 0,
    }
    assert rows["b"]["by_status"]["queued"] == 4
    assert (rows["b"]["ready_in_index"], rows["b"]["scheduled_in_index"]) == (3, 1)
    assert rows["a"]["oldest_queued_age_seconds"] >= 0


async def test_stats_prints_a_table_of_types_and_statuses(queue: Queue) -> None:
    await create(queue, "email_processing", 3)
    result = hybridq(queue.settings, "stats")
    assert result.returncode == 0, result.stderr
    assert "email_processing" in result.stdout
    for column in ("queued", "running", "succeeded", "failed", "cancelled", "ready"):
        assert column in result.stdout


async def test_stats_warns_about_queued_jobs_no_live_worker_has_registered(
    queue: Queue,
) -> None:
    await create(queue, "emial_processing", 2)  # a typo'd type: no worker will ever run it
    await announce_worker(
        queue.redis, queue.settings.namespace, "w-1", ["email_processing"], ttl_seconds=30
    )

    result = hybridq(queue.settings, "stats", "--json")
    rows = {row["job_type"]: row for row in json.loads(result.stdout)["job_types"]}
    served = {t: (r["live_workers"], r["queued_without_worker"]) for t, r in rows.items()}
    assert served == {"emial_processing": (0, 2), "email_processing": (1, 0)}

    table = hybridq(queue.settings, "stats")
    assert table.returncode == 0, table.stderr
    assert "no live worker has registered: emial_processing" in table.stdout
    assert "live" in table.stdout and "workers" in table.stdout


async def test_top_without_a_terminal_prints_one_table_per_refresh_and_exits_0(
    queue: Queue,
) -> None:
    await create(queue, "a", 2)
    result = hybridq(queue.settings, "top", "--interval", "0.1", "--iterations", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("hybridq top · refresh") == 2, result.stdout
    assert "refresh 2" in result.stdout and "succeeded/s" in result.stdout
    assert "\x1b[" not in result.stdout  # plain text, no terminal control codes


async def test_top_exits_0_without_traceback_on_ctrl_c(queue: Queue) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "queue_core", "top", "--interval", "0.2"],
        env=worker_env(queue.settings, Path("/dev/null")),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        while "refresh" not in (line := proc.stdout.readline()):
            assert line, "top printed nothing"
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


async def test_retry_requeues_and_indexes_exactly_the_failed_jobs_of_one_type(
    queue: Queue,
) -> None:
    x = await create(queue, "x", 5)
    y = await create(queue, "y", 2)
    await set_status(queue, x[:3], "failed")
    await set_status(queue, x[3:4], "cancelled")
    await set_status(queue, y, "failed")
    index = queue.index.keys_for("x")
    await queue.redis.delete(index.ready, index.scheduled)  # failed jobs are not indexed

    result = hybridq(queue.settings, "retry", "--status", "failed", "--job-type", "x", "--yes")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "retried 3 jobs"
    rows = await queue.pool.fetch("SELECT id, job_type, status FROM jobs")
    status = {r["id"]: r["status"] for r in rows}
    assert [status[i] for i in x[:3]] == ["queued"] * 3
    assert status[x[3]] == "cancelled"
    assert [status[i] for i in y] == ["failed"] * 2
    # Retried jobs are indexed as due-now scheduled members; a claim promotes them to ready.
    members = await queue.redis.zrange(index.scheduled, 0, -1)
    members += await queue.redis.zrange(index.ready, 0, -1)
    assert sorted(uuid.UUID(bytes=m[:16]) for m in members) == sorted(x[:3])


async def test_retry_of_nothing_says_so(queue: Queue) -> None:
    result = hybridq(queue.settings, "retry", "--status", "cancelled", "--yes")
    assert result.returncode == 0 and result.stdout.strip() == "retried 0 jobs"


async def test_purge_deletes_only_finished_jobs_older_than_the_cutoff(queue: Queue) -> None:
    await make_jobs(queue, "succeeded", age_days=10, count=3)
    await make_jobs(queue, "cancelled", age_days=10, count=1)
    await make_jobs(queue, "failed", age_days=10, count=2)
    young = await make_jobs(queue, "succeeded", age_days=2, count=2)
    old_queued = await make_jobs(queue, "succeeded", age_days=10, count=1)
    await queue.pool.execute(
        "UPDATE jobs SET status = 'queued', finished_at = NULL WHERE id = $1", old_queued[0]
    )
    await create(queue, "t", 2)

    result = hybridq(queue.settings, "purge", "--older-than", "7d", "--yes")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "deleted 6 jobs"
    assert await remaining(queue) == {"succeeded": 2, "queued": 3}
    left = {
        r["id"] for r in await queue.pool.fetch("SELECT id FROM jobs WHERE status = 'succeeded'")
    }
    assert left == set(young)


async def test_purge_of_some_statuses_keeps_the_others(queue: Queue) -> None:
    await make_jobs(queue, "succeeded", age_days=10, count=2)
    await make_jobs(queue, "failed", age_days=10, count=2)
    result = hybridq(
        queue.settings, "purge", "--older-than", "12h", "--status", "succeeded", "--yes"
    )
    assert result.returncode == 0 and result.stdout.strip() == "deleted 2 jobs"
    assert await remaining(queue) == {"failed": 2}


async def test_purge_needs_only_postgres(queue: Queue) -> None:
    await make_jobs(queue, "succeeded", age_days=10, count=1)
    result = hybridq(
        queue.settings, "purge", "--older-than", "7d", "--yes", REDIS_URL="redis://127.0.0.1:1/0"
    )
    assert result.returncode == 0 and result.stdout.strip() == "deleted 1 job", result.stderr


@pytest.mark.parametrize(
    "args, text",
    [
        (["purge", "--older-than", "0d", "--yes"], "positive"),
        (["purge", "--older-than=-7d", "--yes"], "positive"),
        (["purge", "--older-than", "7w", "--yes"], "duration"),
        (["purge", "--older-than", "7d", "--status", "queued", "--yes"], "only finished jobs"),
        (["purge", "--older-than", "7d", "--status", "succeeded,running", "--yes"], "running"),
        (["purge", "--yes"], "--older-than"),
        (["retry", "--status", "queued", "--yes"], "invalid choice"),
        (["retry", "--yes"], "--status"),
        (["top", "--interval", "0"], ">= 0.1"),
        (["top", "--interval", "soon"], "number of seconds"),
        (["top", "--iterations", "0"], "positive integer"),
        (["stats", "--csv"], "unrecognized arguments"),
    ],
)
async def test_bad_arguments_give_one_line_error_and_exit_2(
    settings: Settings, args: list[str], text: str
) -> None:
    assert_one_line_error(hybridq(settings, *args), 2, text)


@pytest.mark.parametrize(
    "args",
    [
        ["retry", "--status", "failed"],
        ["purge", "--older-than", "1s", "--status", "failed"],
    ],
)
async def test_bulk_change_without_yes_and_without_a_terminal_is_refused(
    queue: Queue, args: list[str]
) -> None:
    failed = await create(queue, "x", 2)
    await set_status(queue, failed, "failed")
    await queue.pool.execute("UPDATE jobs SET finished_at = now() - interval '1 hour'")

    assert_one_line_error(hybridq(queue.settings, *args), 2, "--yes")
    assert await remaining(queue) == {"failed": 2}


async def test_stats_with_redis_unreachable_exits_3_with_one_line(queue: Queue) -> None:
    await create(queue, "a", 1)
    result = hybridq(queue.settings, "stats", REDIS_URL="redis://127.0.0.1:1/0")
    assert_one_line_error(result, 3, "redis unavailable")
