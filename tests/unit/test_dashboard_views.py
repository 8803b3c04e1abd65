"""The dashboard's pure parts: depth history, throughput and sparkline points."""

from __future__ import annotations

from hybridq_api.dashboard_views import SPARK_HEIGHT, SPARK_WIDTH, DepthHistory, spark_points

from queue_core.maintenance.operations import TypeStats


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def stats(**by_status: int) -> list[TypeStats]:
    return [TypeStats(job_type="email_processing", by_status=by_status)]


def test_throughput_is_succeeded_jobs_per_second_between_samples() -> None:
    clock = Clock()
    history = DepthHistory(clock)
    for at, succeeded in ((0.0, 10), (5.0, 20), (10.0, 20)):
        clock.now = at
        history.record(stats(succeeded=succeeded, queued=1))
    assert history.throughput("email_processing") == [2.0, 0.0]
    assert history.series("email_processing", "queued") == [1, 1, 1]
    assert history.span_seconds() == 10.0


def test_refreshes_closer_than_the_minimum_interval_add_no_sample() -> None:
    clock = Clock()
    history = DepthHistory(clock)
    history.record(stats(succeeded=1))
    clock.now = 0.5
    history.record(stats(succeeded=50))
    assert history.series("email_processing", "succeeded") == [1]


def test_throughput_never_goes_negative_when_retention_deletes_succeeded_jobs() -> None:
    clock = Clock()
    history = DepthHistory(clock)
    history.record(stats(succeeded=100))
    clock.now = 5.0
    history.record(stats(succeeded=10))
    assert history.throughput("email_processing") == [0.0]
    assert history.throughput("no_such_type") == [0.0]


def test_spark_points_span_the_box_and_scale_to_the_top() -> None:
    points = [tuple(map(float, p.split(","))) for p in spark_points([0, 5, 10], 10).split()]
    assert [x for x, _ in points] == [0.0, SPARK_WIDTH / 2, SPARK_WIDTH]
    assert points[0][1] == SPARK_HEIGHT - 1 and points[2][1] == 1.0
    assert spark_points([], 1) == ""
    assert len(spark_points([3], 0).split()) == 2  # one sample: a flat line
