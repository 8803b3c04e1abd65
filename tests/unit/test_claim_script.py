"""The claim_ready.lua script, run by fakeredis (Lua 5.1 through lupa) behind the real
RedisIndex wrapper: promotion of due scheduled jobs, pop order, batch size, wait_ms, the
scores handed back with the ids, and the lost-index signal."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import fakeredis
import pytest
from fakeredis.aioredis import FakeRedis

from queue_core import keys
from queue_core.ids import uuid7
from queue_core.index.redis_index import RedisIndex
from queue_core.models import PRIORITY_MAX, PRIORITY_MIN, IndexEntry

JOB_TYPE = "email_processing"
OTHER_TYPE = "calendar_sync"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NOW_MS = keys.due_ms(NOW)


async def mark_index_complete(index: RedisIndex, job_type: str) -> None:
    """Set the type's epoch key, as a finished rebuild does; without it claims report the
    index lost."""
    await index.client.set(index.keys_for(job_type).epoch, b"rebuild-token")


@pytest.fixture
async def index() -> AsyncIterator[RedisIndex]:
    # A server of its own, so no state leaks between tests.
    client = FakeRedis(server=fakeredis.FakeServer())
    index = RedisIndex(client, "ns")
    for job_type in (JOB_TYPE, OTHER_TYPE):
        await mark_index_complete(index, job_type)
    yield index
    await client.aclose()


def ready(priority: int = 0, due: datetime = NOW, job_id: uuid.UUID | None = None) -> IndexEntry:
    return IndexEntry(job_id or uuid7(), JOB_TYPE, priority, due, deferred=False)


def scheduled(due: datetime, priority: int = 0) -> IndexEntry:
    return IndexEntry(uuid7(), JOB_TYPE, priority, due, deferred=True)


async def claim_all(index: RedisIndex, now_ms: int = NOW_MS) -> list[uuid.UUID]:
    claimed = await index.claim_ids(JOB_TYPE, now_ms, 1000)
    return claimed.ids


async def test_pops_higher_priority_first_then_earlier_due_then_older_id(
    index: RedisIndex,
) -> None:
    earlier = NOW - timedelta(seconds=10)
    first_created, second_created = uuid7(), uuid7()
    expected = [
        ready(priority=PRIORITY_MAX),
        ready(priority=5, due=earlier),
        ready(priority=5, due=NOW, job_id=first_created),
        ready(priority=5, due=NOW, job_id=second_created),
        ready(priority=0, due=earlier - timedelta(days=300)),
        ready(priority=PRIORITY_MIN, due=earlier - timedelta(days=300)),
    ]
    shuffled = expected[:]
    random.Random(7).shuffle(shuffled)
    await index.add_jobs(shuffled)

    assert await claim_all(index) == [e.id for e in expected]


async def test_same_priority_and_due_pop_in_creation_order(index: RedisIndex) -> None:
    created = [uuid7() for _ in range(200)]
    shuffled = created[:]
    random.Random(1).shuffle(shuffled)
    await index.add_jobs([ready(job_id=i) for i in shuffled])

    assert await claim_all(index) == created


async def test_scheduled_job_is_not_returned_before_it_is_due(index: RedisIndex) -> None:
    job = scheduled(NOW + timedelta(seconds=30))
    await index.add_jobs([job])

    claimed = await index.claim_ids(JOB_TYPE, NOW_MS, 10)
    assert claimed.ids == []
    assert claimed.wait_ms == 30_000

    one_ms_early = await index.claim_ids(JOB_TYPE, NOW_MS + 29_999, 10)
    assert one_ms_early.ids == []
    assert one_ms_early.wait_ms == 1


async def test_scheduled_job_is_returned_once_due(index: RedisIndex) -> None:
    job = scheduled(NOW + timedelta(seconds=30))
    await index.add_jobs([job])

    claimed = await index.claim_ids(JOB_TYPE, NOW_MS + 30_000, 10)
    assert claimed.ids == [job.id]
    assert claimed.wait_ms == -1


async def test_promoted_jobs_take_their_place_by_priority_among_ready_jobs(
    index: RedisIndex,
) -> None:
    low_ready = ready(priority=-5, due=NOW - timedelta(minutes=1))
    high_scheduled = scheduled(NOW + timedelta(seconds=1), priority=50)
    mid_ready = ready(priority=0, due=NOW - timedelta(minutes=1))
    low_scheduled_earlier = scheduled(NOW + timedelta(milliseconds=500), priority=-5)
    await index.add_jobs([low_ready, high_scheduled, mid_ready, low_scheduled_earlier])

    ids = await claim_all(index, NOW_MS + 1_000)

    assert ids == [high_scheduled.id, mid_ready.id, low_ready.id, low_scheduled_earlier.id]


async def test_promotion_moves_due_members_out_of_the_scheduled_set(index: RedisIndex) -> None:
    due, later = scheduled(NOW), scheduled(NOW + timedelta(hours=1))
    await index.add_jobs([due, later])
    k = index.keys_for(JOB_TYPE)

    await index.claim_ids(JOB_TYPE, NOW_MS, 10)

    remaining = await index.client.zrange(k.scheduled, 0, -1)
    assert [keys.job_id_from_member(m) for m in remaining] == [later.id]


async def test_wait_ms_is_zero_while_ready_jobs_remain(index: RedisIndex) -> None:
    await index.add_jobs([ready() for _ in range(3)] + [scheduled(NOW + timedelta(seconds=5))])

    claimed = await index.claim_ids(JOB_TYPE, NOW_MS, 2)
    assert len(claimed.ids) == 2
    assert claimed.wait_ms == 0


async def test_wait_ms_counts_to_the_next_due_job_when_only_scheduled_remain(
    index: RedisIndex,
) -> None:
    await index.add_jobs(
        [
            ready(),
            scheduled(NOW + timedelta(seconds=9)),
            scheduled(NOW + timedelta(milliseconds=2_500)),
        ]
    )

    claimed = await index.claim_ids(JOB_TYPE, NOW_MS, 10)
    assert len(claimed.ids) == 1
    assert claimed.wait_ms == 2_500


async def test_wait_ms_is_minus_one_when_nothing_is_indexed(index: RedisIndex) -> None:
    claimed = await index.claim_ids(JOB_TYPE, NOW_MS, 10)
    assert claimed.ids == []
    assert claimed.wait_ms == -1


async def test_wait_ms_is_minus_one_after_the_last_job_is_popped(index: RedisIndex) -> None:
    await index.add_jobs([ready(), ready()])
    claimed = await index.claim_ids(JOB_TYPE, NOW_MS, 2)
    assert len(claimed.ids) == 2
    assert claimed.wait_ms == -1


async def test_count_limits_the_batch(index: RedisIndex) -> None:
    entries = [ready() for _ in range(10)]
    await index.add_jobs(entries)

    first = await index.claim_ids(JOB_TYPE, NOW_MS, 3)
    second = await index.claim_ids(JOB_TYPE, NOW_MS, 3)

    assert first.ids == [e.id for e in entries[:3]]
    assert second.ids == [e.id for e in entries[3:6]]


async def test_each_id_is_popped_exactly_once(index: RedisIndex) -> None:
    entries = [ready(priority=i % 7) for i in range(300)]
    entries += [scheduled(NOW + timedelta(milliseconds=i), priority=i % 3) for i in range(300)]
    await index.add_jobs(entries)

    popped: list[uuid.UUID] = []
    for step in range(100):
        claimed = await index.claim_ids(JOB_TYPE, NOW_MS + step * 10, 7)
        popped += claimed.ids
    popped += await claim_all(index, NOW_MS + 1_000)

    duplicates = {i for i in popped if popped.count(i) > 1}
    assert not duplicates, f"popped more than once: {duplicates}"
    assert set(popped) == {e.id for e in entries}, (
        f"missing: {len({e.id for e in entries} - set(popped))}"
    )


async def test_job_types_have_separate_queues(index: RedisIndex) -> None:
    other = IndexEntry(uuid7(), OTHER_TYPE, 0, NOW, deferred=False)
    mine = ready()
    await index.add_jobs([other, mine])

    assert await claim_all(index) == [mine.id]
    assert (await index.claim_ids(OTHER_TYPE, NOW_MS, 10)).ids == [other.id]


@pytest.mark.parametrize(
    ("priority", "due"),
    [
        (PRIORITY_MAX, NOW + timedelta(seconds=1)),
        (PRIORITY_MIN, NOW + timedelta(seconds=1)),
        (PRIORITY_MIN, datetime(2300, 1, 1, tzinfo=UTC)),  # clamped to DUE_MAX_MS
        (-1, NOW + timedelta(milliseconds=1)),
    ],
)
async def test_promoted_score_equals_ready_score_exactly(
    index: RedisIndex, priority: int, due: datetime
) -> None:
    # The blocker sorts before any promoted job, so a claim of one leaves the promoted job
    # in the ready set where its score can be read.
    blocker = ready(priority=PRIORITY_MAX, due=keys.EPOCH)
    job = scheduled(due, priority=priority)
    await index.add_jobs([blocker, job])

    claimed = await index.claim_ids(JOB_TYPE, keys.DUE_MAX_MS, 1)
    assert claimed.ids == [blocker.id]

    expected = keys.ready_score(priority, due)
    score = await index.client.zscore(index.keys_for(JOB_TYPE).ready, keys.ready_member(job.id))
    assert score == expected, f"score {score!r} != {expected} (lost precision?)"

    popped = await index.claim_ids(JOB_TYPE, keys.DUE_MAX_MS, 1)
    assert popped.ids == [job.id]
    assert popped.scores == [expected]


async def test_promoted_extreme_priorities_pop_in_priority_order(index: RedisIndex) -> None:
    lowest_last_due = scheduled(datetime(2300, 1, 1, tzinfo=UTC), PRIORITY_MIN)
    highest = scheduled(NOW, PRIORITY_MAX)
    lowest = scheduled(NOW, PRIORITY_MIN)
    await index.add_jobs([lowest_last_due, lowest, highest])

    ids = await claim_all(index, keys.DUE_MAX_MS)

    assert ids == [highest.id, lowest.id, lowest_last_due.id]


async def test_claim_returns_each_id_with_its_ready_score(index: RedisIndex) -> None:
    entries = [ready(priority=PRIORITY_MAX), ready(priority=0), ready(priority=PRIORITY_MIN)]
    await index.add_jobs(entries)

    claimed = await index.claim_ids(JOB_TYPE, NOW_MS, 10)

    assert claimed.ids == [e.id for e in entries]
    assert claimed.scores == [keys.ready_score(e.priority, e.scheduled_for) for e in entries]


async def test_restored_ids_pop_again_in_their_original_order(index: RedisIndex) -> None:
    entries = [ready(priority=p) for p in (PRIORITY_MAX, 3, 3, PRIORITY_MIN)]
    await index.add_jobs(entries)
    first = await index.claim_ids(JOB_TYPE, NOW_MS, 10)

    await index.restore_ids(JOB_TYPE, first.ids[::-1], first.scores[::-1])
    again = await index.claim_ids(JOB_TYPE, NOW_MS, 10)

    assert again.ids == first.ids
    assert again.scores == first.scores


async def test_missing_epoch_key_reports_index_lost_and_pops_nothing(index: RedisIndex) -> None:
    job, later = ready(), scheduled(NOW - timedelta(seconds=1))
    await index.add_jobs([job, later])
    k = index.keys_for(JOB_TYPE)
    await index.client.delete(k.epoch)  # as after a Redis restart or FLUSHALL

    claimed = await index.claim_ids(JOB_TYPE, NOW_MS, 10)

    assert claimed.index_lost is True
    assert claimed.ids == []
    assert await index.client.zcard(k.ready) == 1
    assert await index.client.zcard(k.scheduled) == 1, "nothing is promoted either"


async def test_complete_index_is_not_reported_lost(index: RedisIndex) -> None:
    await index.add_jobs([ready()])
    claimed = await index.claim_ids(JOB_TYPE, NOW_MS, 10)
    assert claimed.index_lost is False
    assert len(claimed.ids) == 1
