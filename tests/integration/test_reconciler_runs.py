"""Whole reconciler runs against real PostgreSQL and Redis: a lost index rebuilt, a backlog
larger than one page, two reconcilers at once, a run or rebuild cut short by Redis losing its
data, and ``hybridq reconcile --once`` printing one JSON line of counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from queue_core import Queue, keys
from queue_core.index import IndexRepair
from queue_core.maintenance.reconciler import Reconciler
from tests.support.index_state import (
    NOTHING_TO_DO,
    assert_not_indexed,
    assert_ready,
    assert_scheduled,
    claim_by_dead_worker,
    counts,
    delete_namespace_keys,
    expect,
    in_an_hour,
    job_uuid,
    placement,
    set_sizes,
    settle,
    tkeys,
    unindex,
)
from tests.support.workers import REPO, worker_env


async def test_reconciler_detects_lost_index_and_marks_it_rebuilt(queue: Queue) -> None:
    alpha_now = await queue.job_service.create("alpha", {"n": 1}, priority=3)
    alpha_later = await queue.job_service.create("alpha", {"n": 2}, scheduled_for=in_an_hour())
    beta_now = await queue.job_service.create("beta", {"n": 3}, priority=-5)
    await settle(queue, "alpha", "beta")
    for t in ("alpha", "beta"):
        assert await queue.redis.exists(tkeys(queue, t).epoch) == 1
    assert await delete_namespace_keys(queue) == 6  # 3 sets + 2 epochs + alpha's wake set

    result = await queue.reconciler().run_once()

    assert counts(result) == expect(reindexed=3, indexes_rebuilt=["alpha", "beta"])
    await assert_ready(queue, alpha_now)
    await assert_scheduled(queue, alpha_later)
    await assert_ready(queue, beta_now)
    for t in ("alpha", "beta"):
        assert await queue.redis.exists(tkeys(queue, t).epoch) == 1
        assert await queue.redis.exists(tkeys(queue, t).rebuild) == 0

    again = await queue.reconciler().run_once()

    assert counts(again) == expect()


async def test_rebuild_index_marks_a_type_without_jobs(queue: Queue) -> None:
    """A worker of a type with no jobs finds no epoch; its rebuild must still mark it."""
    result = await queue.reconciler().rebuild_index(["idle"])

    assert counts(result) == expect(indexes_rebuilt=["idle"])
    assert await queue.redis.exists(tkeys(queue, "idle").epoch) == 1
    assert await set_sizes(queue, "idle") == (0, 0)


async def test_reconciler_pages_through_a_backlog_larger_than_one_page(queue: Queue) -> None:
    def spec(job_type: str, n: int, future: bool) -> dict[str, Any]:
        return {
            "job_type": job_type,
            "input": {"n": n},
            "priority": n % 3 - 1,
            "scheduled_for": in_an_hour() if future else None,
        }

    alpha = await queue.job_service.create_many([spec("alpha", n, n % 4 == 0) for n in range(30)])
    beta = await queue.job_service.create_many(
        [spec("beta", n, n < 8 and n % 2 == 0) for n in range(20)]
    )
    await settle(queue, "alpha", "beta")
    missing = alpha[0:10] + beta[0:5]
    drifted = alpha[10:14] + beta[5:8]
    expired = beta[8:17]  # more than a page of leases to rescue
    for job in missing:
        await unindex(queue, job)
    for job in drifted:
        k = tkeys(queue, job["job_type"])
        ready, scheduled = await placement(queue, job)
        if ready is not None:
            await queue.redis.zadd(k.ready, {keys.ready_member(job_uuid(job)): ready + 1})
        else:
            member = keys.scheduled_member(job_uuid(job), job["priority"])
            await queue.redis.zadd(k.scheduled, {member: scheduled + 1})
    await claim_by_dead_worker(queue, *expired)
    # Over 128 members: the ready set leaves listpack encoding, so ZSCAN walks it in pages.
    due = keys.due_ms(datetime.now(UTC))
    await queue.redis.zadd(
        tkeys(queue, "alpha").ready, {uuid.uuid4().bytes: due + n for n in range(200)}
    )
    await queue.redis.zadd(
        tkeys(queue, "beta").scheduled,
        {uuid.uuid4().bytes + b"\x03\xe8": due + n for n in range(8)},
    )

    result = await Reconciler(
        queue.store, queue.index, IndexRepair(queue.index), queue.settings, page_size=7
    ).run_once()

    assert counts(result) == expect(
        leases_rescued=9, reindexed=15, drift_fixed=7, orphans_removed=208
    )
    expired_ids = {j["id"] for j in expired}
    for job in alpha + beta:
        if job["id"] in expired_ids or job["scheduled_for"] > datetime.now(UTC):
            await assert_scheduled(queue, job)
        else:
            await assert_ready(queue, job)
    assert await set_sizes(queue, "alpha") == (22, 8)
    assert await set_sizes(queue, "beta") == (20 - 4 - 9, 4 + 9)
    statuses = await queue.pool.fetch("SELECT status, count(*) FROM jobs GROUP BY status")
    assert {r["status"]: r["count"] for r in statuses} == {"queued": 50}

    again = await Reconciler(
        queue.store, queue.index, IndexRepair(queue.index), queue.settings, page_size=7
    ).run_once()

    assert counts(again) == expect()


async def test_second_concurrent_reconciler_skips_its_run(queue: Queue) -> None:
    job = await queue.job_service.create("t", {"n": 1})
    await settle(queue, "t")
    await unindex(queue, job)

    async with queue.store.reconcile_lock() as acquired:
        assert acquired
        result = await queue.reconciler().run_once()

    assert counts(result) == expect(skipped=True)
    await assert_not_indexed(queue, job)

    after_release = await queue.reconciler().run_once()

    assert counts(after_release) == expect(reindexed=1)
    await assert_ready(queue, job)


async def test_rebuild_interrupted_by_redis_data_loss_leaves_index_unmarked(
    queue: Queue,
) -> None:
    repair = IndexRepair(queue.index)
    k = tkeys(queue, "t")
    token = await repair.begin_rebuild("t")
    assert await queue.redis.get(k.rebuild) == token.encode()
    await queue.redis.delete(k.rebuild)  # FLUSHALL / restart while the rebuild ran

    assert await repair.finish_rebuild("t", token) is False
    assert await queue.redis.exists(k.epoch) == 0

    token = await repair.begin_rebuild("t")
    assert await repair.finish_rebuild("t", "another rebuild's token") is False
    assert await queue.redis.exists(k.epoch) == 0
    assert await repair.finish_rebuild("t", token) is True
    assert await queue.redis.get(k.epoch) == token.encode()
    assert await queue.redis.exists(k.rebuild) == 0


async def test_run_interrupted_by_redis_data_loss_is_finished_by_the_next_run(
    queue: Queue,
) -> None:
    jobs = await queue.job_service.create_many(
        [{"job_type": "t", "input": {"n": n}} for n in range(3)]
    )
    await settle(queue, "t")
    reconciler = queue.reconciler()
    original = reconciler.repair.scores_of
    lost: list[int] = []

    async def scores_of_then_flush(job_type: str, entries: Any) -> Any:
        scores = await original(job_type, entries)
        if not lost:  # Redis loses everything after the scores were read
            lost.append(await delete_namespace_keys(queue))
        return scores

    reconciler.repair.scores_of = scores_of_then_flush  # type: ignore[method-assign]

    result = await reconciler.run_once()

    assert lost == [3]  # the ready set, the epoch and the rebuild marker
    assert counts(result) == expect()  # the scores it read showed nothing to repair
    assert await queue.redis.exists(tkeys(queue, "t").epoch) == 0  # so workers keep off Redis
    for job in jobs:
        await assert_not_indexed(queue, job)

    again = await queue.reconciler().run_once()

    assert counts(again) == expect(reindexed=3, indexes_rebuilt=["t"])
    for job in jobs:
        await assert_ready(queue, job)
    assert await queue.redis.exists(tkeys(queue, "t").epoch) == 1


async def test_reconcile_cli_once_prints_one_json_line_of_counts(queue: Queue) -> None:
    job = await queue.job_service.create("t", {"n": 1})
    await unindex(queue, job)

    proc = subprocess.run(
        # a handlers module without periodic jobs: this run must only repair
        [
            sys.executable,
            "-m",
            "queue_core",
            "reconcile",
            "--once",
            "--handlers",
            "tests.support.recording",
        ],
        env=worker_env(queue.settings, Path("/dev/null")),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    printed = json.loads(lines[0])
    assert set(printed) == set(NOTHING_TO_DO) | {"duration_ms"}
    assert isinstance(printed.pop("duration_ms"), float)
    assert printed == expect(reindexed=1, indexes_rebuilt=["t"])
    await assert_ready(queue, job)
    assert await queue.redis.exists(tkeys(queue, "t").epoch) == 1
