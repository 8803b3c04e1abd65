"""Which ticks of a periodic job a scheduler pass enqueues (periodic.py). Pure: time is the
``now`` each test passes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from queue_core import InvalidJob
from queue_core.periodic import CATCH_UP_MAX_TICKS, CatchUp, make_periodic


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2030, 1, day, hour, minute, second, tzinfo=UTC)


DAILY_7 = make_periodic("briefing", cron="0 7 * * *", job_type="t")


def test_nothing_is_due_before_the_next_tick() -> None:
    plan = DAILY_7.plan(position=at(1, 6), now=at(1, 6, 59, 59))
    assert plan.due == [] and plan.position == at(1, 6)


def test_a_tick_found_a_few_seconds_late_runs_under_every_policy() -> None:
    for catch_up, window in (("none", None), ("latest", None), ("all", timedelta(hours=1))):
        periodic = make_periodic(
            "p", cron="0 7 * * *", job_type="t", catch_up=catch_up, catch_up_window=window
        )
        plan = periodic.plan(position=at(1, 6), now=at(1, 7, 0, 15))
        assert plan.due == [at(1, 7)] and plan.position == at(1, 7), catch_up
        assert plan.skipped is None


def test_a_handled_tick_is_never_due_again() -> None:
    plan = DAILY_7.plan(position=at(1, 7), now=at(1, 23))
    assert plan.due == [] and plan.position == at(1, 7)


def test_none_skips_every_tick_missed_during_an_outage() -> None:
    plan = DAILY_7.plan(position=at(1, 7), now=at(4, 10))  # down from day 1 to day 4, 10:00
    assert plan.due == []
    assert plan.position == at(4, 7)  # resumes at day 5, 07:00
    assert plan.skipped == (at(2, 7), at(4, 7))


def test_none_runs_a_tick_up_to_ten_minutes_late_but_not_later() -> None:
    assert DAILY_7.plan(at(1, 6), now=at(1, 7, 10)).due == [at(1, 7)]
    late = DAILY_7.plan(at(1, 6), now=at(1, 7, 10, 1))
    assert late.due == [] and late.skipped == (at(1, 7), at(1, 7))


def test_none_with_a_slow_reconciler_runs_the_latest_tick_not_the_superseded_ones() -> None:
    every_minute = make_periodic("p", cron="* * * * *", job_type="t")
    plan = every_minute.plan(position=at(1, 10, 0), now=at(1, 10, 5, 30))  # cron every 5 min
    assert plan.due == [at(1, 10, 5)]
    assert plan.skipped == (at(1, 10, 1), at(1, 10, 4))


def test_latest_runs_the_most_recent_missed_tick_once() -> None:
    latest = make_periodic("p", cron="0 7 * * *", job_type="t", catch_up="latest")
    plan = latest.plan(position=at(1, 7), now=at(4, 10))
    assert plan.due == [at(4, 7)] and plan.position == at(4, 7)
    assert plan.skipped == (at(2, 7), at(3, 7))
    assert latest.plan(plan.position, now=at(4, 11)).due == []


def test_all_runs_every_missed_tick_within_the_window_oldest_first() -> None:
    hourly = make_periodic(
        "p", cron="0 * * * *", job_type="t", catch_up="all", catch_up_window=timedelta(hours=3)
    )
    plan = hourly.plan(position=at(1, 5), now=at(1, 10, 30))
    assert plan.due == [at(1, 8), at(1, 9), at(1, 10)]  # 07:30 onwards is within 3 h
    assert plan.position == at(1, 10)
    assert plan.skipped == (at(1, 6), at(1, 7))


def test_all_enqueues_a_bounded_number_of_ticks_per_pass_and_continues() -> None:
    every_minute = make_periodic(
        "p", cron="* * * * *", job_type="t", catch_up="all", catch_up_window=timedelta(days=2)
    )
    first = every_minute.plan(position=at(1, 0), now=at(2, 0))  # 1,440 ticks missed
    assert len(first.due) == CATCH_UP_MAX_TICKS
    assert first.position == first.due[-1] == at(1, 0) + timedelta(minutes=CATCH_UP_MAX_TICKS)
    second = every_minute.plan(first.position, now=at(2, 0))
    assert second.due[0] == first.due[-1] + timedelta(minutes=1)
    assert second.due[-1] == at(2, 0) and second.position == at(2, 0)


def test_a_tick_exactly_on_time_is_that_tick() -> None:
    assert DAILY_7.last_tick(at(1, 7)) == at(1, 7)
    assert DAILY_7.next_tick(at(1, 7)) == at(2, 7)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cron": "every day"}, "cron"),
        ({"cron": "* * * *"}, "cron"),
        ({"cron": "61 * * * *"}, "cron"),
        ({"job_type": "bad type"}, "job_type"),
        ({"input": {"x": float("nan")}}, "input is not JSON-serialisable"),
        ({"catch_up": "sometimes"}, "catch_up of 'p' must be one of none, latest, all"),
        ({"catch_up": "all"}, "needs catch_up_window"),
        ({"catch_up": "all", "catch_up_window": timedelta(days=400)}, "needs catch_up_window"),
        ({"catch_up": "all", "catch_up_window": 3600}, "needs catch_up_window"),
        ({"catch_up_window": timedelta(hours=1)}, "applies to catch_up='all' only"),
    ],
)
def test_bad_periodic_declarations_are_rejected(kwargs: dict, message: str) -> None:
    declaration = {"cron": "* * * * *", "job_type": "t", **kwargs}
    with pytest.raises(InvalidJob, match=message):
        make_periodic("p", **declaration)


def test_the_default_policy_is_none() -> None:
    assert DAILY_7.catch_up == CatchUp.NONE and DAILY_7.catch_up_window is None
