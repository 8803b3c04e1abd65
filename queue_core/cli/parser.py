"""The ``hybridq`` command line: every subcommand, option and argument type. What each
subcommand does is in main.py (ops.py for the operator commands, jobs.py for the single-job
ones). Arguments are checked here, so a malformed one exits 2 before anything connects."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable, Coroutine, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn

from queue_core.models import MAX_RETRIES_LIMIT, PRIORITY_MAX, PRIORITY_MIN, JobStatus
from queue_core.settings import Settings

from . import ops as cli_ops
from .exits import EXIT_USAGE, exit_codes_text

DISTRIBUTION = "hybridq-queue"
LIST_LIMIT_MAX = 1000

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]
Commands = Mapping[str, Command]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, no usage dump: ``hybridq enqueue: error: ...``."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build(commands: Commands) -> argparse.ArgumentParser:
    """The whole command line; ``commands`` maps each subcommand to what runs it."""
    parser = _Parser(
        prog="hybridq",
        description="hybridq: a job queue durable in PostgreSQL, fast through Redis.\n"
        "Configuration comes from DATABASE_URL, REDIS_URL and HYBRIDQ_* variables;\n"
        "`hybridq COMMAND --help` describes each command.",
        epilog=exit_codes_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hybridq {_version()}")
    # Not required: a bare `hybridq` prints the whole usage (main.py), not one error line.
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("migrate", help="create or upgrade the jobs table (idempotent)")
    p.set_defaults(func=commands["migrate"])

    p = sub.add_parser("worker", help="run a worker until SIGTERM/SIGINT")
    _add_handlers_option(p, "whose handlers this worker runs")
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
    p.set_defaults(func=commands["worker"])

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
    p.set_defaults(func=commands["reconcile"])

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
    checked = p.add_mutually_exclusive_group()
    _add_handlers_option(checked, "whose job types TYPE and --input are validated against")
    checked.add_argument(
        "--no-validate",
        action="store_true",
        help="enqueue without checking TYPE and --input against any handlers module",
    )
    p.set_defaults(func=commands["enqueue"])

    p = sub.add_parser("api", help="serve the HTTP API (uvicorn)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    p.add_argument(
        "--proxy-headers",
        action="store_true",
        default=None,
        help="behind a TLS-terminating proxy: trust its X-Forwarded-Proto/-For "
        "(default: HYBRIDQ_API_PROXY_HEADERS or off)",
    )
    p.add_argument(
        "--forwarded-allow-ips",
        default=None,
        metavar="IPS",
        help="comma-separated proxy addresses or networks whose forwarded headers are "
        "trusted (default: HYBRIDQ_API_FORWARDED_ALLOW_IPS or 127.0.0.1)",
    )
    _add_handlers_option(p, "whose job types the API accepts")
    p.set_defaults(func=commands["api"])

    p = sub.add_parser("token", help="API tokens: new, list, revoke")
    token_sub = p.add_subparsers(
        dest="token_command", required=True, metavar="ACTION", parser_class=_Parser
    )
    t = token_sub.add_parser(
        "new",
        help="make a token, store its hash in Postgres, print it once",
        description="Make a token and store its SHA-256 in Postgres: every API replica "
        "accepts it within HYBRIDQ_API_TOKEN_CACHE_SECONDS, without a restart. With "
        "--env-entry, store nothing and print its HYBRIDQ_API_TOKENS entry instead.",
    )
    who = t.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="USER_ID", help="the token enqueues and reads as USER_ID")
    who.add_argument("--admin", action="store_true", help="the token sees every user's jobs")
    t.add_argument(
        "--expires",
        type=_duration,
        default=None,
        metavar="DURATION",
        help="refused after this long: 90d, 12h, 30m (default: never)",
    )
    t.add_argument("--name", default=None, metavar="NAME", help="what it is for (shown by list)")
    t.add_argument(
        "--env-entry",
        action="store_true",
        help="print a HYBRIDQ_API_TOKENS entry; store nothing (no --expires, no --name)",
    )
    t.set_defaults(func=commands["token new"])
    t = token_sub.add_parser("list", help="every managed token: id, owner, name, expiry, state")
    t.add_argument("--json", action="store_true", help="print JSON")
    t.set_defaults(func=commands["token list"])
    t = token_sub.add_parser(
        "revoke", help="revoke a managed token (refused by every replica within seconds)"
    )
    t.add_argument("token_id", metavar="ID", help="the token's id, from `hybridq token list`")
    t.set_defaults(func=commands["token revoke"])

    p = sub.add_parser(
        "contracts",
        help="print the job types of a handlers module: job_type, input shape, handler, returns",
    )
    _add_handlers_option(p, "whose job types to print")
    p.add_argument(
        "--format",
        choices=["table", "markdown", "json"],
        default="table",
        help="table (default), markdown, or json with the full JSON schemas",
    )
    p.set_defaults(func=commands["contracts"])

    _add_job_commands(sub, commands)
    _add_operator_commands(sub, commands)
    return parser


def _add_job_commands(sub: argparse._SubParsersAction[_Parser], commands: Commands) -> None:
    """get, list, cancel (one job); implemented in jobs.py. retry ID is with the bulk
    retry, in _add_operator_commands."""
    p = sub.add_parser("get", help="print one job as JSON")
    p.add_argument("job_id", metavar="ID", type=_job_id, help="the job's id (a UUID)")
    p.set_defaults(func=commands["get"])

    p = sub.add_parser(
        "list",
        help="the newest jobs, optionally of one status, type or user",
        description="Jobs newest first, as a table (id, type, status, attempts, user, "
        "created, first line of last_error) or with --json as a JSON array of jobs.",
    )
    p.add_argument("--status", choices=[s.value for s in JobStatus], help="only this status")
    p.add_argument("--type", dest="job_type", metavar="TYPE", help="only jobs of this type")
    p.add_argument("--user", dest="user_id", metavar="USER_ID", help="only this user's jobs")
    p.add_argument(
        "--limit",
        type=_list_limit,
        default=20,
        metavar="N",
        help=f"at most N jobs, 1..{LIST_LIMIT_MAX} (default 20)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON array of jobs")
    p.set_defaults(func=commands["list"])

    p = sub.add_parser(
        "cancel",
        help="cancel one queued or running job and print it",
        description="A queued job is cancelled at once; a running one is cancelled and its "
        "handler stopped at its worker's next heartbeat. A finished job cannot be cancelled "
        "(exit 1).",
    )
    p.add_argument("job_id", metavar="ID", type=_job_id, help="the job's id (a UUID)")
    p.set_defaults(func=commands["cancel"])


def _add_operator_commands(
    sub: argparse._SubParsersAction[_Parser], commands: Commands
) -> None:
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
    p.set_defaults(func=commands["stats"])

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
    p.set_defaults(func=commands["top"])

    yes_help = "do not ask for confirmation (required when stdin is not a terminal)"
    p = sub.add_parser(
        "retry",
        help="queue one failed or cancelled job again (retry ID), or every one (--status)",
        usage="hybridq retry ID\n       hybridq retry --status {failed,cancelled} "
        "[--job-type TYPE] [--yes]",
        description="retry ID: queue that failed or cancelled job again, now, with a fresh "
        "allowance of retries, and print it (another status: exit 1). "
        "retry --status: the same for every job in STATUS (of TYPE, or of every type), in "
        "batches of 1000. Asks first unless --yes; without --yes and with no terminal on "
        "stdin it refuses (exit 2); answering no exits 1. Prints 'retried N jobs'. "
        f"{needs_both} Jobs retried before a Redis failure stay queued; the reconciler "
        "indexes them.",
    )
    p.add_argument(
        "job_id", metavar="ID", type=_job_id, nargs="?", help="one job's id (a UUID)"
    )
    p.add_argument(
        "--status",
        choices=[JobStatus.FAILED.value, JobStatus.CANCELLED.value],
        help="retry every job in this status: failed or cancelled",
    )
    p.add_argument("--job-type", default=None, metavar="TYPE", help="only jobs of this type")
    p.add_argument("--yes", action="store_true", help=yes_help)
    p.set_defaults(func=commands["retry"])

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
        help="finished more than this long ago, with its unit: 7d, 12h, 30m, 90s",
    )
    p.add_argument(
        "--status",
        type=cli_ops.finished_statuses,
        default=[JobStatus.SUCCEEDED.value, JobStatus.CANCELLED.value, JobStatus.FAILED.value],
        metavar="STATUSES",
        help="comma-separated, among succeeded, cancelled, failed (default: all three)",
    )
    p.add_argument("--yes", action="store_true", help=yes_help)
    p.set_defaults(func=commands["purge"])


def _add_handlers_option(parser: argparse._ActionsContainer, purpose: str) -> None:
    parser.add_argument(
        "--handlers",
        default=None,
        metavar="MODULE",
        help=f"the application's module defining register(runner), {purpose} "
        "(default: HYBRIDQ_HANDLERS_MODULE; one of the two is required)",
    )


def _version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def _job_id(text: str) -> str:
    """A job id: a UUID (any of its spellings); anything else cannot name a job."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a job id (a UUID like 0190a5e2-...), got {text!r:.80}"
        ) from None


def _list_limit(text: str) -> int:
    value = _positive_int(text)
    if value > LIST_LIMIT_MAX:
        raise argparse.ArgumentTypeError(f"expected at most {LIST_LIMIT_MAX}, got {text!r}")
    return value


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
    """'15s', '2m', '500ms', '1h', '7d': a positive number and its unit. A bare number is
    refused: `purge --older-than 7` meant days to one operator and seconds to the parser."""
    unit = next(
        (u for u in sorted(_DURATION_UNITS, key=len, reverse=True) if text.endswith(u)), None
    )
    if unit is None:
        raise argparse.ArgumentTypeError(
            f"expected a duration with its unit (ms, s, m, h or d), like 15s or 7d, got {text!r}"
        )
    try:
        seconds = float(text[: -len(unit)]) * _DURATION_UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration like 15s or 2m, got {text!r}"
        ) from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"duration must be positive, got {text!r}")
    return seconds
