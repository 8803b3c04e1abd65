"""Periodic jobs against the real stores: each tick is enqueued exactly once however many
schedulers run and whatever retention or purge deletes later, a new schedule starts at its
next tick, and missed ticks follow the schedule's catch-up policy. Time is the ``now`` each
pass is given."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from queue_core import ContractRegistry, Queue, connect
from queue_core.maintenance.scheduler import PeriodicScheduler
from queue_core.periodic import PeriodicJob, make_periodic

EVERY_5_MIN = make_periodic(
    "digest", cron="*/5 * * * *", job_type="briefing_generation", input={"topic": "digest"}
)


def at(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2030, month, day, hour, minute, second, tzinfo=UTC)


def scheduler(queue: Queue, *periodic: PeriodicJob) -> PeriodicScheduler:
    return PeriodicScheduler(queue.store, queue.index, periodic)


async def periodic_rows(queue: Queue) -> list[tuple[str, str]]:
    rows = await queue.pool.fetch(
        "SELECT idempotency_key, job_type FROM jobs ORDER BY idempotency_key"
    )
    return [(r["idempotency_key"], r["job_type"]) for r in rows]


async def passes(queue: Queue, periodic: PeriodicJob, *times: datetime) -> list[int]:
    s = scheduler(queue, periodic)
    return [await s.run_once(now) for now in times]


async def test_two_schedulers_at_once_enqueue_each_tick_exactly_once(queue: Queue) -> None:
    await scheduler(queue, EVERY_5_MIN).run_once(at(1, 1, 9, 58))  # the schedule starts
    async with connect(queue.settings, validate=False) as other:  # a second process
        schedulers = [scheduler(queue, EVERY_5_MIN), scheduler(other, EVERY_5_MIN)]
        created = []
        for now in (at(1, 1, 10, 0, 30), at(1, 1, 10, 4), at(1, 1, 10, 6), at(1, 1, 10, 12)):
            results = await asyncio.gather(*(s.run_once(now) for _ in range(5) for s in schedulers))
            created.append(sum(results))
    assert created == [1, 0, 1, 1]  # 10:00, (10:00 again), 10:05, 10:10
    assert await periodic_rows(queue) == [
        ("periodic:digest:20300101T100000Z", "briefing_generation"),
        ("periodic:digest:20300101T100500Z", "briefing_generation"),
        ("periodic:digest:20300101T101000Z", "briefing_generation"),
    ]


async def test_a_new_daily_schedule_starts_at_its_next_tick_not_yesterdays(
    queue: Queue,
) -> None:
    daily = make_periodic("briefing", cron="0 7 * * *", job_type="t")
    deployed, before_seven, after_seven = at(3, 2, 6), at(3, 2, 6, 59), at(3, 2, 7, 0, 10)

    assert await passes(queue, daily, deployed, before_seven, after_seven) == [0, 0, 1]
    assert await periodic_rows(queue) == [("periodic:briefing:20300302T070000Z", "t")]


async def test_retention_deleting_a_ticks_job_never_runs_the_tick_again(queue: Queue) -> None:
    yearly = make_periodic("new-year", cron="0 0 1 1 *", job_type="t")
    await passes(queue, yearly, at(12, 31, 23, 59).replace(year=2029))
    assert await passes(queue, yearly, at(1, 1, 0, 0, 1)) == [1]

    for now in (at(1, 1, 0, 0, 4), at(1, 1, 0, 0, 7), at(1, 1, 0, 0, 10)):
        await queue.pool.execute("DELETE FROM jobs")  # retention / purge, every 3 s
        assert await passes(queue, yearly, now) == [0]
    assert await periodic_rows(queue) == []


async def test_a_monthly_tick_is_not_run_again_at_the_end_of_the_month(queue: Queue) -> None:
    monthly = make_periodic("invoices", cron="0 0 1 * *", job_type="t")
    await passes(queue, monthly, at(10, 31, 12))
    assert await passes(queue, monthly, at(11, 1, 0, 0, 15)) == [1]
    await queue.pool.execute("DELETE FROM jobs")

    assert await passes(queue, monthly, at(11, 30, 23)) == [0]
    assert await passes(queue, monthly, at(12, 1, 0, 0, 15)) == [1]


async def test_catch_up_none_skips_an_outage_and_resumes_at_the_next_tick(queue: Queue) -> None:
    daily = make_periodic("briefing", cron="0 7 * * *", job_type="t")
    await passes(queue, daily, at(3, 1, 6))
    # reconcilers down from Mar 1, 06:00 to Mar 4, 10:00
    assert await passes(queue, daily, at(3, 4, 10), at(3, 5, 7, 0, 20)) == [0, 1]
    assert await periodic_rows(queue) == [("periodic:briefing:20300305T070000Z", "t")]


async def test_catch_up_latest_runs_the_most_recent_missed_tick_once(queue: Queue) -> None:
    daily = make_periodic("briefing", cron="0 7 * * *", job_type="t", catch_up="latest")
    await passes(queue, daily, at(3, 1, 6))
    assert await passes(queue, daily, at(3, 4, 10), at(3, 4, 11)) == [1, 0]
    assert await periodic_rows(queue) == [("periodic:briefing:20300304T070000Z", "t")]


async def test_catch_up_all_runs_every_missed_tick_within_the_window(queue: Queue) -> None:
    hourly = make_periodic(
        "sync", cron="0 * * * *", job_type="t", catch_up="all", catch_up_window=timedelta(hours=3)
    )
    await passes(queue, hourly, at(3, 1, 4, 30))
    assert await passes(queue, hourly, at(3, 1, 10, 30)) == [3]
    keys = [key for key, _ in await periodic_rows(queue)]
    assert keys == [f"periodic:sync:20300301T{h:02d}0000Z" for h in (8, 9, 10)]
    jobs = await queue.pool.fetch("SELECT id FROM jobs ORDER BY id")
    assert [str(r["id"]) for r in jobs] == sorted(str(r["id"]) for r in jobs)  # oldest first


async def test_a_tick_an_earlier_release_already_enqueued_is_not_enqueued_again(
    queue: Queue,
) -> None:
    """During a rolling upgrade an older reconciler may still enqueue by idempotency key."""
    await passes(queue, EVERY_5_MIN, at(1, 1, 9, 58))
    await queue.job_service.create_once(
        "briefing_generation",
        {"topic": "digest"},
        idempotency_key="periodic:digest:20300101T100000Z",
    )
    assert await passes(queue, EVERY_5_MIN, at(1, 1, 10, 0, 5), at(1, 1, 10, 5, 5)) == [0, 1]
    assert len(await periodic_rows(queue)) == 2


async def test_enqueued_ticks_are_indexed_and_the_schedule_remembers_the_last(
    queue: Queue,
) -> None:
    await passes(queue, EVERY_5_MIN, at(1, 1, 9, 58), at(1, 1, 10, 0, 5))
    [job] = await queue.job_service.list_jobs(user_id=None)
    stats = await queue.index.depths(["briefing_generation"])
    assert stats["briefing_generation"] == (1, 0)  # ready in Redis at once
    schedule = await queue.pool.fetchrow("SELECT * FROM periodic_schedules")
    assert schedule["position"] == at(1, 1, 10)
    assert schedule["last_enqueued_tick"] == at(1, 1, 10)
    assert str(schedule["last_job_id"]) == job["id"]


async def test_reconciler_run_enqueues_registered_periodic_jobs(queue: Queue) -> None:
    registry = ContractRegistry()
    registry.register_periodic("every-minute", cron="* * * * *", job_type="t", input={"a": 1})
    reconciler = queue.reconciler(registry.periodic)
    first = await reconciler.run_once()  # the schedule starts now: nothing is due yet
    assert first.periodic_enqueued == 0
    await queue.pool.execute(  # as if it had started two minutes ago
        "UPDATE periodic_schedules SET position = position - interval '2 minutes'"
    )
    second = await reconciler.run_once()
    assert second.periodic_enqueued == 1
    [(key, job_type)] = await periodic_rows(queue)
    assert key.startswith("periodic:every-minute:") and job_type == "t"
    job = await queue.pool.fetchrow("SELECT input, status FROM jobs")
    assert job["status"] == "queued" and job["input"] == {"a": 1}
