"""Periodic jobs: each tick is enqueued exactly once, however many schedulers run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from queue_core import ContractRegistry, InvalidJob, Queue, connect
from queue_core.maintenance.scheduler import PeriodicScheduler
from queue_core.periodic import make_periodic

EVERY_5_MIN = make_periodic(
    "digest", cron="*/5 * * * *", job_type="briefing_generation", input={"topic": "digest"}
)


async def periodic_rows(queue: Queue) -> list[tuple[str, str]]:
    rows = await queue.pool.fetch(
        "SELECT idempotency_key, job_type FROM jobs ORDER BY idempotency_key"
    )
    return [(r["idempotency_key"], r["job_type"]) for r in rows]


async def test_two_schedulers_at_once_enqueue_each_tick_exactly_once(queue: Queue) -> None:
    async with connect(queue.settings, validate=False) as other:  # a second process's connections
        schedulers = [
            PeriodicScheduler(queue.job_service, [EVERY_5_MIN]),
            PeriodicScheduler(other.job_service, [EVERY_5_MIN]),
        ]
        ticks = [datetime(2030, 1, 1, 10, m, 30, tzinfo=UTC) for m in (1, 4, 6, 12)]
        created = []
        for now in ticks:
            results = await asyncio.gather(*(s.run_once(now) for _ in range(5) for s in schedulers))
            created.append(sum(results))
    assert created == [1, 0, 1, 1]  # 10:00, (10:00 again), 10:05, 10:10
    assert await periodic_rows(queue) == [
        ("periodic:digest:20300101T100000Z", "briefing_generation"),
        ("periodic:digest:20300101T100500Z", "briefing_generation"),
        ("periodic:digest:20300101T101000Z", "briefing_generation"),
    ]


async def test_a_tick_exactly_on_time_is_that_tick() -> None:
    now = datetime(2030, 1, 1, 10, 5, 0, tzinfo=UTC)
    assert EVERY_5_MIN.last_tick(now) == now


async def test_reconciler_run_enqueues_registered_periodic_jobs(queue: Queue) -> None:
    registry = ContractRegistry()
    registry.register_periodic("every-minute", cron="* * * * *", job_type="t", input={"a": 1})
    reconciler = queue.reconciler(registry.periodic)
    first = await reconciler.run_once()
    second = await reconciler.run_once()
    assert first.periodic_enqueued + second.periodic_enqueued >= 1
    rows = await periodic_rows(queue)
    assert rows and all(key.startswith("periodic:every-minute:") for key, _ in rows)
    job = await queue.pool.fetchrow("SELECT input, status FROM jobs")
    assert job["status"] == "queued"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cron": "every day", "job_type": "t"},
        {"cron": "* * * *", "job_type": "t"},
        {"cron": "61 * * * *", "job_type": "t"},
        {"cron": "* * * * *", "job_type": "bad type"},
        {"cron": "* * * * *", "job_type": "t", "input": {"x": float("nan")}},
    ],
)
def test_bad_periodic_declarations_are_rejected(kwargs: dict) -> None:
    with pytest.raises(InvalidJob):
        make_periodic("p", **kwargs)
