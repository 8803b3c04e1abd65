"""The ``hybridq`` command. Each subcommand parses its arguments and calls one function.

Exit codes: 0 success; 1 the operation failed (e.g. job not found); 2 bad arguments or
input; 3 PostgreSQL or Redis unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import asyncpg
from pydantic import ValidationError

from . import cli_ops
from .contracts import load_contracts, load_register, shape_of
from .errors import BackendUnavailable, HandlerNotFound, InvalidJob, QueueError
from .logs import configure_logging
from .metrics import Metrics
from .migrate import apply_migrations
from .models import MAX_RETRIES_LIMIT, PRIORITY_MAX, PRIORITY_MIN, JobStatus
from .pg_store import translate_errors
from .settings import Settings
from .wiring import connect

EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, no usage dump: ``hybridq enqueue: error: ...``."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hybridq",
        description="hybridq: a job queue durable in PostgreSQL, fast through Redis. "
        "Configuration comes from DATABASE_URL, REDIS_URL and HYBRIDQ_* variables.",
        epilog="Exit codes: 0 ok, 1 failed, 2 bad arguments or input, 3 backend unreachable.",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    p = sub.add_parser("migrate", help="create or upgrade the jobs table (idempotent)")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("worker", help="run a worker until SIGTERM/SIGINT")
    p.add_argument(
        "--handlers",
        default=None,
        metavar="MODULE",
        help="module defining register(runner) (default: HYBRIDQ_HANDLERS_MODULE or 'handlers')",
    )
    p.add_argument(
        "--concurrency",
        type=_positive_int,
        default=None,
        metavar="N",
        help="jobs run at once (default: HYBRIDQ_CONCURRENCY or 10)",
    )
    p.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics on this port (default: none)",
    )
    p.add_argument(
        "--grace",
        type=_non_negative_float,
        default=None,
        metavar="SECONDS",
        help="on SIGTERM, how long running jobs may finish before they are released "
        "(default: HYBRIDQ_SHUTDOWN_GRACE_SECONDS or 30)",
    )
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser(
        "reconcile",
        help="repair drift between Postgres and Redis, rescue expired "
        "leases; prints one JSON line of counts per run",
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true", help="one run, then exit (for cron)")
    mode.add_argument(
        "--every",
        type=_duration,
        metavar="DURATION",
        help="run in a loop, e.g. 15s, 2m, 500ms (until SIGTERM/SIGINT)",
    )
    p.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics on this port while the loop runs",
    )
    _add_handlers_option(p, "whose periodic jobs the reconciler enqueues")
    p.set_defaults(func=cmd_reconcile)

    p = sub.add_parser("enqueue", help="create one job and print it as JSON")
    p.add_argument("job_type", metavar="TYPE")
    p.add_argument("--input", required=True, metavar="JSON", help="the job's input, a JSON object")
    p.add_argument(
        "--priority",
        type=int,
        default=0,
        metavar="N",
        help=f"higher runs first, {PRIORITY_MIN}..{PRIORITY_MAX} (default 0)",
    )
    p.add_argument(
        "--delay",
        type=_non_negative_float,
        default=0.0,
        metavar="SECONDS",
        help="run no sooner than this many seconds from now (default 0)",
    )
    p.add_argument(
        "--max-retries",
        type=int,
        default=3,
        metavar="N",
        help=f"retries after the first attempt, 0..{MAX_RETRIES_LIMIT} (default 3)",
    )
    p.add_argument("--user-id", default=None, metavar="USER", help="owner of the job")
    p.set_defaults(func=cmd_enqueue)

    p = sub.add_parser("api", help="serve the HTTP API (uvicorn)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    _add_handlers_option(p, "whose job types the API accepts")
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("token", help="API tokens")
    token_sub = p.add_subparsers(
        dest="token_command", required=True, metavar="ACTION", parser_class=_Parser
    )
    t = token_sub.add_parser("new", help="print a new token and its HYBRIDQ_API_TOKENS entry")
    who = t.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="USER_ID", help="the token enqueues and reads as USER_ID")
    who.add_argument("--admin", action="store_true", help="the token sees every user's jobs")
    t.set_defaults(func=cmd_token_new)

    p = sub.add_parser(
        "contracts",
        help="print the job types of a handlers module: job_type, input shape, handler, returns",
    )
    p.add_argument(
        "--handlers",
        default=None,
        metavar="MODULE",
        help="module defining register(runner) (default: HYBRIDQ_HANDLERS_MODULE or 'handlers')",
    )
    p.add_argument(
        "--format",
        choices=["table", "markdown", "json"],
        default="table",
        help="table (default), markdown, or json with the full JSON schemas",
    )
    p.set_defaults(func=cmd_contracts)

    p = sub.add_parser("get", help="print one job as JSON")
    p.add_argument("job_id", metavar="ID")
    p.set_defaults(func=cmd_get)
    _add_operator_commands(sub)
    return parser


def _add_operator_commands(sub: argparse._SubParsersAction[_Parser]) -> None:
    """stats, top, retry, purge: implemented in cli_ops."""
    needs_both = "Needs PostgreSQL and Redis: exit 3 if either is unreachable."
    p = sub.add_parser(
        "stats",
        help="jobs per type and status, ids in the Redis index, oldest due job's wait",
        description="Per job type: jobs queued, running, succeeded, failed and cancelled; "
        "ready and scheduled ids in the Redis index; how long the oldest due queued job has "
        f"waited. {needs_both}",
    )
    p.add_argument(
        "--json", action="store_true", help="print JSON (the shape of the API's GET /stats)"
    )
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser(
        "top",
        help="the stats table refreshed live, with succeeded/s and failed/s",
        description="Redraw the stats table every interval with throughput (succeeded/s, "
        "failed/s per type, from the change in counts since the previous refresh; deletions "
        "by retention show as 0) until Ctrl-C or SIGTERM (exit 0). Not on a terminal: one "
        "plain table per refresh. A refresh that cannot reach a backend shows the error and "
        "the next one tries again; the exit code is 3 if the last refresh failed.",
    )
    p.add_argument(
        "--interval",
        type=cli_ops.refresh_interval,
        default=2.0,
        metavar="SECONDS",
        help=f"seconds between refreshes, >= {cli_ops.MIN_REFRESH_SECONDS} (default 2)",
    )
    p.add_argument(
        "--iterations",
        type=_positive_int,
        default=None,
        metavar="N",
        help="stop after N refreshes (default: until interrupted)",
    )
    p.set_defaults(func=cmd_top)

    yes_help = "do not ask for confirmation (required when stdin is not a terminal)"
    p = sub.add_parser(
        "retry",
        help="queue again every failed (or cancelled) job, optionally of one type",
        description="Queue again, at once and with a fresh allowance of retries, every job "
        "in STATUS (of TYPE, or of every type), in batches of 1000. Asks first unless --yes; "
        "without --yes and with no terminal on stdin it refuses (exit 2); answering no exits 1. "
        f"Prints 'retried N jobs'. {needs_both} Jobs retried before a Redis failure stay "
        "queued; the reconciler indexes them.",
    )
    p.add_argument(
        "--status",
        required=True,
        choices=[JobStatus.FAILED.value, JobStatus.CANCELLED.value],
        help="the jobs to retry: failed or cancelled",
    )
    p.add_argument("--job-type", default=None, metavar="TYPE", help="only jobs of this type")
    p.add_argument("--yes", action="store_true", help=yes_help)
    p.set_defaults(func=cmd_retry)

    p = sub.add_parser(
        "purge",
        help="delete finished jobs older than a duration",
        description="Delete jobs in STATUSES whose finished_at is more than DURATION ago, "
        "in batches of 1000 (queued and running jobs are never deleted). Asks first unless "
        "--yes; without --yes and with no terminal on stdin it refuses (exit 2); answering no "
        "exits 1. Prints 'deleted N jobs'. Needs PostgreSQL only (exit 3 if unreachable).",
    )
    p.add_argument(
        "--older-than",
        required=True,
        type=_duration,
        metavar="DURATION",
        help="finished more than this long ago: 7d, 12h, 30m, 90s (must be positive)",
    )
    p.add_argument(
        "--status",
        type=cli_ops.finished_statuses,
        default=[JobStatus.SUCCEEDED.value, JobStatus.CANCELLED.value, JobStatus.FAILED.value],
        metavar="STATUSES",
        help="comma-separated, among succeeded, cancelled, failed (default: all three)",
    )
    p.add_argument("--yes", action="store_true", help=yes_help)
    p.set_defaults(func=cmd_purge)


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        _fail(EXIT_USAGE, f"invalid configuration: {_first_error(exc)}")
    configure_logging(json_lines=settings.log_json, level=settings.log_level)
    func: Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]] = args.func
    try:
        code = _run(func(args, settings))
    except BackendUnavailable as exc:
        _fail(EXIT_UNAVAILABLE, str(exc))
    except (InvalidJob, HandlerNotFound) as exc:
        _fail(EXIT_USAGE, str(exc))
    except QueueError as exc:
        _fail(EXIT_FAILED, str(exc))
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


async def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    async with translate_errors():
        conn = await asyncpg.connect(settings.database_url)
    try:
        async with translate_errors():
            applied = await apply_migrations(conn, settings.db_schema)
    finally:
        await conn.close()
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
    return 0


async def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    overrides: dict[str, Any] = {}
    if args.grace is not None:
        overrides["shutdown_grace_seconds"] = args.grace
    if args.handlers is not None:
        overrides["handlers_module"] = args.handlers
    settings = settings.model_copy(update=overrides)
    register = load_register(settings.handlers_module)
    async with connect(settings, _metrics(args.metrics_port)) as queue:
        runner = queue.runner(concurrency=args.concurrency)
        register(runner)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runner.stop)
        await runner.run()
    return 0


async def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    periodic = load_contracts(args.handlers or settings.handlers_module).periodic
    async with connect(settings, _metrics(args.metrics_port)) as queue:
        reconciler = queue.reconciler(periodic)
        if args.once:
            print((await reconciler.run_once()).to_json(), flush=True)
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await reconciler.run_forever(args.every, stop)
    return 0


async def cmd_enqueue(args: argparse.Namespace, settings: Settings) -> int:
    try:
        payload = json.loads(args.input)
    except json.JSONDecodeError as exc:
        raise InvalidJob(f"--input is not valid JSON: {exc}") from None
    scheduled_for = None
    if args.delay:
        scheduled_for = datetime.now(UTC) + timedelta(seconds=args.delay)
    async with connect(settings) as queue:
        job = await queue.job_service.create(
            job_type=args.job_type,
            input=payload,
            user_id=args.user_id,
            priority=args.priority,
            max_retries=args.max_retries,
            scheduled_for=scheduled_for,
        )
    print(json.dumps(job, default=_json_default, indent=2))
    return 0


async def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from api.app import create_app

    if args.handlers is not None:
        settings = settings.model_copy(update={"handlers_module": args.handlers})
    app = create_app(settings)  # fails here, with one line, on bad config or handlers
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=False,
    )
    await uvicorn.Server(config).serve()
    return 0


async def cmd_token_new(args: argparse.Namespace, settings: Settings) -> int:
    from api.auth import config_entry, new_token

    if args.user is not None and not 0 < len(args.user) <= 200:
        raise InvalidJob("--user must be 1..200 characters")
    token = new_token()
    print(f"token: {token}")
    print("add to HYBRIDQ_API_TOKENS (a JSON list; the token itself is not stored):")
    print(json.dumps(config_entry(token, user_id=args.user, admin=args.admin)))
    return 0


async def cmd_contracts(args: argparse.Namespace, settings: Settings) -> int:
    registry = load_contracts(args.handlers or settings.handlers_module)
    if args.format == "json":
        print(
            json.dumps(
                [
                    {
                        "job_type": c.job_type,
                        "handler": c.handler_name,
                        "timeout": c.timeout,
                        "input_schema": c.input_model.model_json_schema()
                        if c.input_model
                        else None,
                        "output_schema": c.output_model.model_json_schema()
                        if c.output_model
                        else None,
                    }
                    for c in registry
                ],
                indent=2,
            )
        )
        return 0
    header = ("job_type", "input shape", "handler", "returns")
    rows = [header] + [
        (
            c.job_type,
            shape_of(c.input_model),
            c.handler_name,
            shape_of(c.output_model) if c.output_model else "dict or None",
        )
        for c in registry
    ]
    if args.format == "markdown":
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows[1:]:
            print("| " + " | ".join(f"`{cell}`" for cell in row) + " |")
        return 0
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


async def cmd_get(args: argparse.Namespace, settings: Settings) -> int:
    async with connect(settings) as queue:
        job = await queue.job_service.get(args.job_id)
    print(json.dumps(job, default=_json_default, indent=2))
    return 0


async def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    return await cli_ops.show_stats(settings, as_json=args.json)


async def cmd_top(args: argparse.Namespace, settings: Settings) -> int:
    return await cli_ops.watch_top(settings, interval=args.interval, iterations=args.iterations)


async def cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    return await cli_ops.retry_jobs(
        settings, status=args.status, job_type=args.job_type, yes=args.yes
    )


async def cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    return await cli_ops.purge_jobs(
        settings,
        older_than=timedelta(seconds=args.older_than),
        statuses=args.status,
        yes=args.yes,
    )


def _add_handlers_option(parser: argparse.ArgumentParser, purpose: str) -> None:
    parser.add_argument(
        "--handlers",
        default=None,
        metavar="MODULE",
        help=f"module defining register(runner), {purpose} "
        "(default: HYBRIDQ_HANDLERS_MODULE or 'handlers')",
    )


def _metrics(port: int | None) -> Metrics | None:
    if port is None:
        return None
    metrics = Metrics()
    metrics.serve(port)
    return metrics


def _run(coro: Coroutine[Any, Any, int]) -> int:
    """uvloop when installed (a faster event loop: fewer microseconds per round trip)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _positive_int(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"expected a port 1..65535, got {text!r}")
    return int(text)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


def _duration(text: str) -> float:
    """'15s', '2m', '500ms', '1h', '7d' or a plain number of seconds; must be positive."""
    number, unit = text, "s"
    for suffix in sorted(_DURATION_UNITS, key=len, reverse=True):
        if text.endswith(suffix):
            number, unit = text[: -len(suffix)], suffix
            break
    try:
        seconds = float(number) * _DURATION_UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration like 15s or 2m, got {text!r}"
        ) from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"duration must be positive, got {text!r}")
    return seconds


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"


def _fail(code: int, message: str) -> NoReturn:
    print(f"hybridq: error: {message}", file=sys.stderr)
    sys.exit(code)
