"""UUIDv7 job ids (queue_core.ids): layout, and strict order within one process."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import pytest

from queue_core import ids
from queue_core.ids import uuid7

FROZEN_NS = 1_735_689_600_123_456_789  # 2025-01-01T00:00:00.123456789Z
FROZEN_MS = FROZEN_NS // 1_000_000


def unix_ms(u: uuid.UUID) -> int:
    return u.int >> 80


def rand_a(u: uuid.UUID) -> int:
    """The 12 bits after the version: the same-millisecond counter."""
    return (u.int >> 64) & 0xFFF


def assert_strictly_increasing(generated: list[uuid.UUID]) -> None:
    as_bytes = [u.bytes for u in generated]
    as_str = [str(u) for u in generated]
    bad = [i for i in range(1, len(generated)) if not as_bytes[i - 1] < as_bytes[i]]
    assert not bad, f"{len(bad)} ids out of order, first: {generated[bad[0] - 1 : bad[0] + 1]}"
    assert all(as_str[i - 1] < as_str[i] for i in range(1, len(as_str)))


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every uuid7() call sees the same nanosecond, so only the counter can keep ids ordered.

    Replaces ``time`` in the ids module only (not the global time module), and resets the
    generator's state; monkeypatch restores both, so later tests get ids at the real time.
    """
    monkeypatch.setattr(ids, "time", SimpleNamespace(time_ns=lambda: FROZEN_NS))
    monkeypatch.setattr(ids, "_last_ms", 0)
    monkeypatch.setattr(ids, "_counter", 0)


def test_uuid7_has_version_7_and_rfc_4122_variant() -> None:
    for u in (uuid7() for _ in range(1000)):
        assert u.version == 7
        assert u.variant == uuid.RFC_4122


def test_uuid7_timestamp_is_now_in_unix_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    u = uuid7()
    after = time.time_ns() // 1_000_000
    # A burst earlier in the process may have borrowed a few ms from the future.
    assert before <= unix_ms(u) <= after + 100


def test_100k_ids_strictly_increase_in_byte_and_string_order() -> None:
    generated = [uuid7() for _ in range(100_000)]
    assert_strictly_increasing(generated)
    assert len(set(generated)) == len(generated)


@pytest.mark.usefixtures("frozen_clock")
def test_ids_within_one_millisecond_are_ordered_by_the_counter() -> None:
    generated = [uuid7() for _ in range(1000)]

    assert {unix_ms(u) for u in generated} == {FROZEN_MS}
    assert rand_a(generated[0]) <= 0x3FF, "a new millisecond starts low in the counter"
    counters = [rand_a(u) for u in generated]
    assert counters == list(range(counters[0], counters[0] + 1000))
    assert_strictly_increasing(generated)


@pytest.mark.usefixtures("frozen_clock")
def test_counter_overflow_borrows_the_next_millisecond_and_keeps_order() -> None:
    generated = [uuid7() for _ in range(100_000)]

    assert_strictly_increasing(generated)
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in generated)
    assert unix_ms(generated[0]) == FROZEN_MS
    first_borrowed = next(i for i, u in enumerate(generated) if unix_ms(u) != FROZEN_MS)
    assert rand_a(generated[first_borrowed - 1]) == 0xFFF
    assert unix_ms(generated[first_borrowed]) == FROZEN_MS + 1
    assert rand_a(generated[first_borrowed]) == 0
    # 100k ids at 4096 per ms need about 25 ms, no more.
    assert FROZEN_MS + 24 <= unix_ms(generated[-1]) <= FROZEN_MS + 25


def test_clock_moving_back_does_not_break_order(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"ns": FROZEN_NS}
    monkeypatch.setattr(ids, "time", SimpleNamespace(time_ns=lambda: clock["ns"]))
    monkeypatch.setattr(ids, "_last_ms", 0)

    first = [uuid7() for _ in range(10)]
    clock["ns"] -= 5_000_000_000  # NTP step back by 5 s
    second = [uuid7() for _ in range(10)]

    assert_strictly_increasing(first + second)
