"""The operator commands of ``hybridq``: stats, top, retry and purge.

``cli.py`` parses their arguments and calls one function here each. Results go to stdout;
prompts, progress bars and (off a terminal) top's errors go to stderr, so ``stats --json``
and the final ``retried N jobs`` / ``deleted N jobs`` lines stay machine-readable. Every
number comes from ``operations`` (the same code as the API's /stats and the reconciler's
retention).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from rich.console import Console
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.prompt import Confirm
from rich.table import Table
from rich.text import Text

from queue_core.connect import Queue, connect
from queue_core.errors import BackendUnavailable, InvalidJob
from queue_core.maintenance.operations import TypeStats, delete_finished, queue_stats, retry_in_bulk
from queue_core.models import TERMINAL_STATUSES, JobStatus
from queue_core.settings import Settings

from .exits import EXIT_FAILED, EXIT_UNAVAILABLE

EXIT_DECLINED = EXIT_FAILED
"""The operator answered no to a confirmation: nothing was changed."""

MIN_REFRESH_SECONDS = 0.1
"""top's shortest interval: each refresh counts every job (a full scan of ``jobs``)."""

PLAIN_WIDTH = 200
"""Columns for tables written to a pipe or file (rich would otherwise wrap them at 80)."""

STATUSES = tuple(JobStatus)  # table columns, in lifecycle order


async def show_stats(settings: Settings, *, as_json: bool) -> int:
    """Print the stats table, or with ``as_json`` the same numbers as the API's /stats."""
    async with connect(settings) as queue:
        stats = await queue_stats(queue.store, queue.index)
    if as_json:
        print(json.dumps(stats_payload(stats), indent=2))
    else:
        stdout_console().print(_stats_table(stats, title="hybridq stats"))
    return 0


async def watch_top(settings: Settings, *, interval: float, iterations: int | None) -> int:
    """Refresh the stats table with throughput every ``interval`` seconds until SIGINT or
    SIGTERM (exit 0), or after ``iterations`` refreshes. A refresh that cannot reach a
    backend shows the error and the next one tries again; exit 3 if the last one failed."""
    console = stdout_console()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        stop.set()
        # A second Ctrl-C interrupts at once (e.g. a refresh stuck on a dead backend).
        loop.remove_signal_handler(signal.SIGINT)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    async with connect(settings) as queue:
        views = _refreshes(queue, interval, iterations, stop)
        failed = await (
            _show_live(views, console) if console.is_terminal else _print_plain(views, console)
        )
    return EXIT_UNAVAILABLE if failed else 0


async def retry_jobs(settings: Settings, *, status: str, job_type: str | None, yes: bool) -> int:
    """Queue again every ``status`` job (of ``job_type``, or all types), after a
    confirmation unless ``yes``; prints ``retried N jobs``."""
    _refuse_unattended(yes, "retry")
    err = _stderr()
    async with connect(settings) as queue:
        stats = await queue_stats(queue.store, queue.index)
        expected = sum(t.by_status.get(status, 0) for t in stats if job_type in (None, t.job_type))
        if not yes:
            if not expected:
                print("retried 0 jobs")
                return 0
            what = f"{expected} {status} job{'' if expected == 1 else 's'}"
            what += f" of type {job_type}" if job_type else ""
            if not _confirm(err, f"Retry {what}? They are queued again at once."):
                print("hybridq: nothing retried", file=sys.stderr)
                return EXIT_DECLINED
        batches = retry_in_bulk(queue.store, queue.index, status=status, job_type=job_type)
        retried = await _drain(batches, err, "retrying", expected, "retried")
    print(f"retried {_jobs(retried)}")
    return 0


async def purge_jobs(
    settings: Settings, *, older_than: timedelta, statuses: Sequence[str], yes: bool
) -> int:
    """Delete jobs of ``statuses`` that finished more than ``older_than`` ago, after a
    confirmation unless ``yes``; prints ``deleted N jobs``."""
    _refuse_unattended(yes, "purge")
    err = _stderr()
    async with connect(settings) as queue:
        await queue.store.ping()  # fail with exit 3 before asking, not after
        if not yes:
            cutoff = (datetime.now(UTC) - older_than).isoformat(timespec="seconds")
            question = f"Delete every {', '.join(statuses)} job that finished before {cutoff}?"
            if not _confirm(err, question):
                print("hybridq: nothing deleted", file=sys.stderr)
                return EXIT_DECLINED
        batches = delete_finished(queue.store, older_than=older_than, statuses=statuses)
        deleted = await _drain(batches, err, "deleting", None, "deleted")
    print(f"deleted {_jobs(deleted)}")
    return 0


def finished_statuses(text: str) -> list[str]:
    """argparse type of ``purge --status``: comma-separated terminal statuses."""
    names = list(dict.fromkeys(s.strip() for s in text.split(",")))
    wrong = [n for n in names if n not in TERMINAL_STATUSES]
    if wrong:
        raise argparse.ArgumentTypeError(
            f"only finished jobs can be purged (succeeded, cancelled, failed), got {wrong[0]!r}"
        )
    return names


def refresh_interval(text: str) -> float:
    """argparse type of ``top --interval``: seconds, at least MIN_REFRESH_SECONDS."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not MIN_REFRESH_SECONDS <= value < float("inf"):
        raise argparse.ArgumentTypeError(
            f"expected a finite number of seconds >= {MIN_REFRESH_SECONDS}, got {text!r}"
        )
    return value


def stats_payload(stats: Sequence[TypeStats]) -> dict[str, object]:
    """The shape of the API's /stats, with every status present (0 when there are none)."""
    rows = []
    for t in stats:
        row = asdict(t)
        row["by_status"] = {s.value: t.by_status.get(s, 0) for s in STATUSES}
        row["queued_without_worker"] = t.queued_without_worker
        rows.append(row)
    return {"job_types": rows}


async def _show_live(views: AsyncIterator[Table | Text], console: Console) -> bool:
    """Draw each view in place; returns whether the last one was an error."""
    failed = False
    with Live(console=console, auto_refresh=False) as live:
        async for view in views:
            live.update(view, refresh=True)
            failed = isinstance(view, Text)
    return failed


async def _print_plain(views: AsyncIterator[Table | Text], console: Console) -> bool:
    """Not a terminal (a pipe, a file): a plain table per refresh, errors to stderr."""
    failed = False
    async for view in views:
        failed = isinstance(view, Text)
        if isinstance(view, Text):
            print(view.plain.replace("\n", ": "), file=sys.stderr, flush=True)
        else:
            console.print(view)
    return failed


async def _refreshes(
    queue: Queue, interval: float, iterations: int | None, stop: asyncio.Event
) -> AsyncIterator[Table | Text]:
    """top's views: a table per refresh, or the error line when a backend is unreachable;
    one every ``interval`` seconds until ``stop`` or ``iterations``."""
    previous: tuple[float, list[TypeStats]] | None = None
    refresh = 0
    while not stop.is_set():
        refresh += 1
        stamp = datetime.now().strftime("%H:%M:%S")
        title = f"hybridq top · refresh {refresh} · {stamp} · every {interval:g}s"
        last = iterations is not None and refresh >= iterations
        try:
            stats = await queue_stats(queue.store, queue.index)
        except BackendUnavailable as exc:
            again = "" if last else f" (trying again in {interval:g}s)"
            yield Text(f"{title}\nhybridq: error: {exc}{again}")
        else:
            now = time.monotonic()
            rates = _rates(previous, now, stats) if previous else {}
            yield _stats_table(stats, title=title, rates=rates)
            previous = (now, stats)
        if last:
            return
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            pass


def _rates(
    previous: tuple[float, list[TypeStats]], now: float, stats: Sequence[TypeStats]
) -> dict[str, tuple[float, float]]:
    """(succeeded/s, failed/s) per type from the change in counts since ``previous``.
    Deletions (retention, purge) and retries lower the counts; such a drop shows as 0."""
    then, before = previous
    old = {t.job_type: t.by_status for t in before}
    elapsed = max(now - then, 1e-9)

    def rate(t: TypeStats, status: str) -> float:
        change = t.by_status.get(status, 0) - old.get(t.job_type, {}).get(status, 0)
        return max(change, 0) / elapsed

    return {t.job_type: (rate(t, JobStatus.SUCCEEDED), rate(t, JobStatus.FAILED)) for t in stats}


def _stats_table(
    stats: Sequence[TypeStats],
    *,
    title: str,
    rates: dict[str, tuple[float, float]] | None = None,
) -> Table:
    """Job types × statuses, the Redis index and the oldest due job's wait; a total row
    when there are several types. With ``rates`` (top), throughput columns: succeeded/s
    and failed/s per type, '-' where unknown yet (top's first refresh passes {})."""
    show_rates = rates is not None
    table = Table(title=title, title_justify="left", caption=_caption(stats))
    table.add_column("job type")
    for status in STATUSES:
        table.add_column(status.value, justify="right")
    table.add_column("ready\n(index)", justify="right")
    table.add_column("scheduled\n(index)", justify="right")
    table.add_column("oldest\nqueued", justify="right")
    table.add_column("live\nworkers", justify="right")
    if show_rates:
        table.add_column("succeeded/s", justify="right")
        table.add_column("failed/s", justify="right")
    for t in stats:
        row: list[str | Text] = [Text(t.job_type)]  # Text: never parsed as rich markup
        row += [str(t.by_status.get(s, 0)) for s in STATUSES]
        row += [str(t.ready_in_index), str(t.scheduled_in_index)]
        row.append(_age(t.oldest_queued_age_seconds))
        row.append(str(t.live_workers))
        if show_rates:
            pair = rates.get(t.job_type) if rates else None
            row += [f"{pair[0]:.1f}", f"{pair[1]:.1f}"] if pair else ["-", "-"]
        table.add_row(*row, style="bold red" if t.queued_without_worker else None)
    if len(stats) > 1:
        table.add_section()
        table.add_row(*_total_row(stats, rates), style="bold")
    return table


def _total_row(
    stats: Sequence[TypeStats], rates: dict[str, tuple[float, float]] | None
) -> list[str]:
    row = ["total", *(str(sum(t.by_status.get(s, 0) for t in stats)) for s in STATUSES)]
    row += [str(sum(t.ready_in_index for t in stats))]
    row += [str(sum(t.scheduled_in_index for t in stats))]
    ages = [t.oldest_queued_age_seconds for t in stats if t.oldest_queued_age_seconds is not None]
    row.append(_age(max(ages) if ages else None))
    row.append("")  # a worker may serve several types: a sum would count it twice
    if rates:
        row += [f"{sum(r[0] for r in rates.values()):.1f}"]
        row += [f"{sum(r[1] for r in rates.values()):.1f}"]
    elif rates is not None:
        row += ["-", "-"]
    return row


def _caption(stats: Sequence[TypeStats]) -> Text | None:
    """'no jobs', or the warning that queued jobs wait for a worker that is not there."""
    if not stats:
        return Text("no jobs")
    unserved = [t.job_type for t in stats if t.queued_without_worker]
    if not unserved:
        return None
    return Text(
        f"no live worker has registered: {', '.join(unserved)} (their queued jobs wait)",
        style="bold red",
    )


def _age(seconds: float | None) -> str:
    """'-' for none, else the largest two units: 4.2s, 3m12s, 2h05m, 3d04h."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86_400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86_400}d{whole % 86_400 // 3600:02d}h"


async def _drain(
    batches: AsyncIterator[int], console: Console, label: str, total: int | None, verb: str
) -> int:
    """Run a bulk operation batch by batch behind a progress bar (on a terminal only);
    returns the rows it changed. ``total`` None: an indeterminate bar."""
    done = 0
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task(label, total=total)
        try:
            async for n in batches:
                done += n
                # More may have failed since the count was taken: grow the bar, don't overflow.
                grown = None if total is None else max(total, done)
                progress.update(task, completed=done, total=grown)
        except BackendUnavailable as exc:
            raise BackendUnavailable(
                exc.backend, f"{exc.detail} ({_jobs(done)} {verb} before this)"
            ) from exc
    return done


def _refuse_unattended(yes: bool, command: str) -> None:
    """Without --yes a confirmation is needed; with no terminal to ask on, refuse now
    (exit 2) rather than wait for input that never comes."""
    if not yes and not sys.stdin.isatty():
        raise InvalidJob(f"{command} changes jobs in bulk: pass --yes (stdin is not a terminal)")


def _confirm(console: Console, question: str) -> bool:
    """Ask yes/no on the terminal (default no; end of input is no). Ctrl-C interrupts the
    prompt at once: asyncio's own SIGINT handler would only act once input() returns."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return Confirm.ask(question, console=console, default=False)
    except EOFError:  # Ctrl-D
        console.print()
        return False
    finally:
        signal.signal(signal.SIGINT, previous)


def _jobs(n: int) -> str:
    return f"{n} job" if n == 1 else f"{n} jobs"


def stdout_console() -> Console:
    """The console for results: a terminal's width, or PLAIN_WIDTH off a terminal."""
    return Console() if sys.stdout.isatty() else Console(width=PLAIN_WIDTH)


def _stderr() -> Console:
    return Console(stderr=True)
