"""Several worker processes drain one backlog: every job succeeds, each handler runs once."""

from __future__ import annotations

from pathlib import Path

import pytest

from queue_core import Queue
from tests.support.aio import wait_until
from tests.support.recording import JOB_TYPE, read_counts, read_records
from tests.support.workers import worker_processes

JOBS = 20_000


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_four_workers_drain_20k_jobs_each_exactly_once(queue: Queue, tmp_path: Path) -> None:
    for start in range(0, JOBS, 5000):
        await queue.job_service.create_many(
            [{"job_type": JOB_TYPE, "input": {"n": n}} for n in range(start, start + 5000)]
        )
    record = tmp_path / "executions.log"

    async def all_finished() -> bool:
        left = await queue.pool.fetchval("SELECT count(*) FROM jobs WHERE status <> 'succeeded'")
        return left == 0

    with worker_processes(
        queue.settings, record, count=4, concurrency=20, log_dir=tmp_path
    ) as procs:
        await wait_until(all_finished, timeout=240, interval=0.25)
        assert all(p.poll() is None for p in procs), "a worker died during the drain"

    counts = read_counts(record)
    ids = {str(r["id"]) for r in await queue.pool.fetch("SELECT id FROM jobs")}
    missing = ids - counts.keys()
    twice = {i: c for i, c in counts.items() if c > 1}
    assert not missing, f"{len(missing)} jobs succeeded without a recorded execution"
    assert not twice, f"{len(twice)} jobs ran more than once, e.g. {list(twice.items())[:5]}"
    assert len(counts) == JOBS
    pids = {record[2] for record in read_records(record)}
    assert len(pids) == 4, f"work was not shared by all four workers: {len(pids)} did any"
