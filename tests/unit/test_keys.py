"""Redis key names and the ready-score encoding (queue_core.keys). Pure functions."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from queue_core import keys
from queue_core.ids import uuid7
from queue_core.models import PRIORITY_MAX, PRIORITY_MIN

DOUBLE_EXACT_LIMIT = 2**53
"""Integers below this survive a round trip through a double (Redis scores, Lua numbers)."""

FAR_FUTURE = datetime(2300, 1, 1, tzinfo=UTC)
BEFORE_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def cluster_hash_tag(key: str) -> str:
    """The part of a key Redis Cluster hashes: between the first '{' and the next '}'."""
    start = key.index("{")
    end = key.index("}", start + 1)
    assert end > start + 1, f"empty hash tag in {key!r}"
    return key[start + 1 : end]


def test_ready_score_orders_priority_desc_then_due_asc() -> None:
    priorities = [PRIORITY_MAX, 999, 1, 0, -1, PRIORITY_MIN + 1, PRIORITY_MIN]
    dues = [
        BEFORE_EPOCH,
        keys.EPOCH,
        keys.EPOCH + timedelta(milliseconds=1),
        datetime(2025, 6, 1, tzinfo=UTC),
        FAR_FUTURE,
    ]
    pairs = list(itertools.product(priorities, dues))

    by_score = sorted(pairs, key=lambda p: keys.ready_score(*p))
    by_rule = sorted(pairs, key=lambda p: (-p[0], keys.due_ms(p[1])))

    assert by_score == by_rule


def test_higher_priority_due_last_still_pops_before_lower_priority_due_first() -> None:
    # The due field must never spill into the priority bits.
    for priority in range(PRIORITY_MIN + 1, PRIORITY_MAX + 1):
        assert keys.ready_score(priority, FAR_FUTURE) < keys.ready_score(priority - 1, BEFORE_EPOCH)


def test_ready_score_differs_for_due_times_one_millisecond_apart() -> None:
    due = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    later = due + timedelta(milliseconds=1)
    assert keys.ready_score(0, later) - keys.ready_score(0, due) == 1


@pytest.mark.parametrize("priority", [PRIORITY_MIN, 0, PRIORITY_MAX])
@pytest.mark.parametrize("due", [BEFORE_EPOCH, keys.EPOCH, FAR_FUTURE])
def test_ready_score_is_a_non_negative_integer_exact_in_a_double(
    priority: int, due: datetime
) -> None:
    score = keys.ready_score(priority, due)
    assert type(score) is int
    assert 0 <= score < DOUBLE_EXACT_LIMIT
    assert int(float(score)) == score


def test_largest_ready_score_is_lowest_priority_due_at_the_clamp() -> None:
    score = keys.ready_score(PRIORITY_MIN, FAR_FUTURE)
    assert score == (PRIORITY_MAX - PRIORITY_MIN) * 2**keys.DUE_BITS + keys.DUE_MAX_MS
    assert score < DOUBLE_EXACT_LIMIT


def test_due_far_in_the_future_is_clamped_to_due_max() -> None:
    assert keys.due_ms(FAR_FUTURE) == keys.DUE_MAX_MS
    assert keys.due_ms(datetime(9999, 12, 31, tzinfo=UTC)) == keys.DUE_MAX_MS


def test_due_before_epoch_is_clamped_to_zero() -> None:
    assert keys.due_ms(BEFORE_EPOCH) == 0
    assert keys.due_ms(keys.EPOCH - timedelta(microseconds=1)) == 0
    assert keys.ready_score(PRIORITY_MAX, BEFORE_EPOCH) == 0


def test_due_ms_counts_whole_milliseconds_from_epoch_in_any_timezone() -> None:
    assert keys.due_ms(keys.EPOCH) == 0
    assert keys.due_ms(keys.EPOCH + timedelta(microseconds=1999)) == 1
    assert keys.due_ms(keys.EPOCH + timedelta(days=1, seconds=2, milliseconds=3)) == 86_402_003
    paris = timezone(timedelta(hours=1))
    same_instant = datetime(2024, 1, 1, 1, 0, 0, 5000, tzinfo=paris)
    assert keys.due_ms(same_instant) == 5


@pytest.mark.parametrize("priority", [PRIORITY_MIN, -1, 0, 1, PRIORITY_MAX])
def test_scheduled_member_round_trips_id_and_carries_priority_rank(priority: int) -> None:
    job_id = uuid7()
    member = keys.scheduled_member(job_id, priority)

    assert len(member) == 18
    assert keys.job_id_from_member(member) == job_id
    assert int.from_bytes(member[16:], "big") == keys.priority_rank(priority)
    assert keys.priority_rank(priority) == PRIORITY_MAX - priority


def test_ready_member_round_trips_id() -> None:
    job_id = uuid7()
    member = keys.ready_member(job_id)
    assert member == job_id.bytes
    assert keys.job_id_from_member(member) == job_id
    assert keys.job_id_from_member(bytearray(member)) == job_id


def test_ready_members_compare_in_creation_order() -> None:
    ids = [uuid7() for _ in range(1000)]
    members = [keys.ready_member(i) for i in ids]
    assert sorted(members) == members


def test_keys_of_one_job_type_share_the_namespace_and_type_hash_tag() -> None:
    # claim_ready.lua touches scheduled, ready and epoch in one call: one cluster slot.
    k = keys.type_keys("ns", "email_processing")
    names = [k.scheduled, k.ready, k.epoch, k.rebuild]

    assert {cluster_hash_tag(name) for name in names} == {"ns:email_processing"}
    assert len(set(names)) == len(names)


def test_type_keys_of_different_types_or_namespaces_do_not_collide() -> None:
    a = keys.type_keys("ns", "a")
    b = keys.type_keys("ns", "b")
    other = keys.type_keys("other", "a")

    assert cluster_hash_tag(a.ready) != cluster_hash_tag(b.ready)
    assert cluster_hash_tag(a.ready) != cluster_hash_tag(other.ready)
    assert len({a.ready, b.ready, other.ready, a.wake_channel, b.wake_channel}) == 5


@pytest.mark.parametrize("job_type", ["email_processing", "a", "v2:sync", "mail.send-now"])
def test_job_type_is_recovered_from_its_index_keys(job_type: str) -> None:
    k = keys.type_keys("ns", job_type)
    assert keys.job_type_of_key("ns", k.ready) == job_type
    assert keys.job_type_of_key("ns", k.scheduled) == job_type


@pytest.mark.parametrize("key", ["{other:email}:ready", "{ns2:email}:ready", "ns:wake:email"])
def test_keys_of_another_namespace_have_no_job_type(key: str) -> None:
    assert keys.job_type_of_key("ns", key) is None
