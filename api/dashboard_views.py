"""What the dashboard's pages show, computed without I/O: the ring of depth samples, the
throughput derived from it, SVG sparkline points. The routes in ``dashboard.py`` feed it
and render it."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from queue_core import JobStatus
from queue_core.maintenance.operations import TypeStats

SAMPLES_KEPT = 120
"""Depth samples kept per API process: at one per JS refresh (5 s), ten minutes of history."""
SAMPLE_MIN_INTERVAL_SECONDS = 2.0
"""Refreshes closer together than this (several open tabs) add no sample, so the ring keeps
covering minutes, not seconds."""
DEPTH_LINES = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.FAILED)
"""Statuses drawn over time. Succeeded only grows; its rate is the throughput line."""
SPARK_WIDTH, SPARK_HEIGHT = 120, 32  # SVG user units (CSS pixels at scale 1)


@dataclass(frozen=True)
class Sample:
    at: float  # seconds on the history's clock (monotonic)
    counts: dict[str, dict[str, int]]  # job_type -> status -> jobs


class DepthHistory:
    """The last ``SAMPLES_KEPT`` samples of jobs by type and status, in this process only
    (every API process keeps its own; a restart starts empty)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._samples: deque[Sample] = deque(maxlen=SAMPLES_KEPT)

    def record(self, stats: Sequence[TypeStats]) -> None:
        now = self._clock()
        if self._samples and now - self._samples[-1].at < SAMPLE_MIN_INTERVAL_SECONDS:
            return
        self._samples.append(Sample(now, {t.job_type: dict(t.by_status) for t in stats}))

    def series(self, job_type: str, status: str) -> list[int]:
        return [s.counts.get(job_type, {}).get(status, 0) for s in self._samples]

    def throughput(self, job_type: str) -> list[float]:
        """Succeeded jobs per second between consecutive samples. Never negative: retention
        deleting succeeded jobs lowers the count without undoing any work."""
        samples = list(self._samples)
        done = self.series(job_type, JobStatus.SUCCEEDED)
        return [
            max(done[i] - done[i - 1], 0) / (samples[i].at - samples[i - 1].at)
            for i in range(1, len(samples))
        ]

    def span_seconds(self) -> float:
        return self._samples[-1].at - self._samples[0].at if self._samples else 0.0


def spark_points(values: Sequence[float], top: float) -> str:
    """SVG polyline points for ``values`` scaled so that ``top`` touches the upper edge.
    Oldest on the left; a single value is drawn as a flat line."""
    if not values:
        return ""
    if len(values) == 1:
        values = [values[0], values[0]]
    top = top if top > 0 else 1.0
    step = SPARK_WIDTH / (len(values) - 1)
    usable = SPARK_HEIGHT - 2  # one unit of margin so a line at 0 or at top stays visible
    return " ".join(
        f"{i * step:.1f},{SPARK_HEIGHT - 1 - usable * min(v, top) / top:.1f}"
        for i, v in enumerate(values)
    )


@dataclass(frozen=True)
class TypeRow:
    """One job type's line of the depth table."""

    job_type: str
    counts: dict[str, int]  # every status, 0 when there is none
    ready_in_index: int
    scheduled_in_index: int
    oldest_wait: str
    live_workers: int  # workers alive now that registered the type
    queued_without_worker: int  # queued jobs waiting for a worker that is not there
    throughput: float | None  # succeeded/s over the last interval; None before two samples
    depth_lines: list[tuple[str, str]]  # (status, polyline points)
    throughput_points: str


def type_rows(stats: Sequence[TypeStats], history: DepthHistory) -> list[TypeRow]:
    rows = []
    for t in stats:
        lines = {status: history.series(t.job_type, status) for status in DEPTH_LINES}
        top = max((max(v) for v in lines.values() if v), default=0)
        rates = history.throughput(t.job_type)
        rows.append(
            TypeRow(
                job_type=t.job_type,
                counts={s: t.by_status.get(s, 0) for s in JobStatus},
                ready_in_index=t.ready_in_index,
                scheduled_in_index=t.scheduled_in_index,
                oldest_wait=duration(t.oldest_queued_age_seconds),
                live_workers=t.live_workers,
                queued_without_worker=t.queued_without_worker,
                throughput=rates[-1] if rates else None,
                depth_lines=[(s, spark_points(v, top)) for s, v in lines.items()],
                throughput_points=spark_points(rates, max(rates, default=0.0)),
            )
        )
    return rows


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def pretty_json(value: Any) -> str:
    return "—" if value is None else json.dumps(value, indent=2, sort_keys=True, default=str)


def field_text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="milliseconds")
    return str(value)
