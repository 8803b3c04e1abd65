"""The ``hybridq`` command. Each subcommand (parsed as parser.py defines it) calls one
function here, in ops.py for the operator commands, or in jobs.py for the single-job ones.

Exit codes: the one table of exits.py (0 success; 1 the operation failed, e.g. no such job;
2 bad arguments, input or configuration; 3 PostgreSQL or Redis unreachable; 130 Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from pydantic import ValidationError
from pydantic_settings import SettingsError

from queue_core.connect import connect
from queue_core.contracts import load_contracts, load_register, register_from
from queue_core.errors import (
    BackendUnavailable,
    ConfigurationError,
    HandlerNotFound,
    InvalidJob,
    QueueError,
)
from queue_core.settings import Settings
from queue_core.store import migrate
from queue_core.telemetry.logs import configure_logging
from queue_core.telemetry.metrics import Metrics

from . import contracts_table, preflight
from . import jobs as cli_jobs
from . import ops as cli_ops
from . import parser as cli_parser
from .exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_UNAVAILABLE, EXIT_USAGE

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    return cli_parser.build(COMMANDS)


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a bare `hybridq`: what it can do, not one error line
        print(parser.format_help(), end="", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    try:
        settings = Settings()
    except ValidationError as exc:
        _fail(EXIT_USAGE, f"invalid configuration: {_first_error(exc)}")
    except SettingsError as exc:  # a value the settings library itself could not decode
        _fail(EXIT_USAGE, f"invalid configuration: {exc}")
    configure_logging(json_lines=settings.log_json, level=settings.log_level)
    func: Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]] = args.func
    try:
        code = _run(_checked(func, args, settings))
    except BackendUnavailable as exc:
        _fail(EXIT_UNAVAILABLE, str(exc))
    except (InvalidJob, HandlerNotFound, ConfigurationError) as exc:
        _fail(EXIT_USAGE, str(exc))
    except QueueError as exc:
        _fail(EXIT_FAILED, str(exc))
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    if func is cmd_worker:
        _exit_despite_handler_threads(code)
    sys.exit(code)


def _exit_despite_handler_threads(code: int) -> None:
    """A stopped worker exits even if a handler started a thread that does not end (Python
    would wait for every non-daemon thread): say which, then leave without them."""
    left = [
        t.name
        for t in threading.enumerate()
        if t.is_alive() and not t.daemon and t is not threading.main_thread()
    ]
    if not left:
        return
    log.warning(
        "threads started by handlers are still running; exiting without them",
        extra={"action": "worker_stop", "threads": left[:10]},
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def _checked(
    func: Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]],
    args: argparse.Namespace,
    settings: Settings,
) -> int:
    """``func`` after the checks of its arguments that need no server (ARGUMENT_CHECKS),
    then of the servers it needs (PREFLIGHT): a bad argument is exit 2 even while a server
    is down."""
    check_arguments = ARGUMENT_CHECKS.get(func)
    if check_arguments is not None:
        check_arguments(args, settings)
    needs = PREFLIGHT.get(func)
    if needs is not None:
        await preflight.check_backends(settings, needs)
    return await func(args, settings)


async def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    applied = await migrate(settings.database_url, settings.db_schema)
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(applied)}" if applied else ""))
    return 0


async def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    overrides: dict[str, Any] = {}
    if args.grace is not None:
        overrides["shutdown_grace_seconds"] = args.grace
    settings = settings.model_copy(update=overrides)
    module = _handlers_module(args, settings, "worker")
    load_register(module)  # fail on a missing module before connecting
    async with connect(settings, _metrics(args.metrics_port)) as queue:
        runner = queue.runner(concurrency=args.concurrency)
        register_from(module, runner)
        HANDLERS_RUNNING.set()
        try:
            await runner.run(handle_signals=True)  # SIGTERM/SIGINT: a graceful stop
        finally:
            HANDLERS_RUNNING.clear()
    return 0


async def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    periodic = load_contracts(_handlers_module(args, settings, "reconcile")).periodic
    async with connect(settings, _metrics(args.metrics_port)) as queue:
        reconciler = queue.reconciler(periodic)
        if args.once:
            print((await reconciler.run_once()).to_json(), flush=True)
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await reconciler.run_forever(
            args.every, stop, on_result=lambda result: print(result.to_json(), flush=True)
        )
    return 0


async def cmd_enqueue(args: argparse.Namespace, settings: Settings) -> int:
    try:
        payload = json.loads(args.input)
    except json.JSONDecodeError as exc:
        raise InvalidJob(f"--input is not valid JSON: {exc}") from None
    scheduled_for = None
    if args.delay:
        scheduled_for = datetime.now(UTC) + timedelta(seconds=args.delay)
    module = None if args.no_validate else _handlers_module(args, settings, "enqueue")
    async with connect(settings, handlers=module, validate=not args.no_validate) as queue:
        job = await queue.job_service.create(
            job_type=args.job_type,
            input=payload,
            user_id=args.user_id,
            priority=args.priority,
            max_retries=args.max_retries,
            scheduled_for=scheduled_for,
        )
    print(cli_jobs.job_json(job))
    return 0


async def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn
    from hybridq_api.app import create_app

    module = _handlers_module(args, settings, "api")
    overrides: dict[str, Any] = {"handlers_module": module}
    if args.proxy_headers is not None:
        overrides["api_proxy_headers"] = args.proxy_headers
    if args.forwarded_allow_ips is not None:
        overrides["api_forwarded_allow_ips"] = args.forwarded_allow_ips
    settings = settings.model_copy(update=overrides)
    app = create_app(settings)  # fails here, with one line, on bad config or handlers
    sock = preflight.bind_socket(args.host, args.port)
    config = uvicorn.Config(
        app,
        log_level="info",
        access_log=False,
        server_header=False,  # the banner helps an attacker only
        # Off unless asked: X-Forwarded-Proto from an untrusted client must not make a
        # plain-http request look like https (the dashboard's Secure cookie decision).
        proxy_headers=settings.api_proxy_headers,
        forwarded_allow_ips=settings.api_forwarded_allow_ips,
    )
    with sock:
        await uvicorn.Server(config).serve(sockets=[sock])
    return 0


async def cmd_token_new(args: argparse.Namespace, settings: Settings) -> int:
    from . import tokens  # imports the API's token helpers: only for this command

    return await tokens.new(args, settings)


async def cmd_token_list(args: argparse.Namespace, settings: Settings) -> int:
    from . import tokens  # imports the API's token helpers: only for this command

    return await tokens.list_(args, settings)


async def cmd_token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from . import tokens  # imports the API's token helpers: only for this command

    return await tokens.revoke(args, settings)


async def cmd_contracts(args: argparse.Namespace, settings: Settings) -> int:
    registry = load_contracts(_handlers_module(args, settings, "contracts"))
    render = {"json": contracts_table.as_json, "markdown": contracts_table.markdown}
    print(render.get(args.format, contracts_table.plain)(registry))
    return 0


async def cmd_get(args: argparse.Namespace, settings: Settings) -> int:
    return await cli_jobs.show_job(settings, args.job_id)


async def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    return await cli_jobs.list_jobs(
        settings,
        status=args.status,
        job_type=args.job_type,
        user_id=args.user_id,
        limit=args.limit,
        as_json=args.json,
    )


async def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    return await cli_jobs.cancel_job(settings, args.job_id)


async def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    return await cli_ops.show_stats(settings, as_json=args.json)


async def cmd_top(args: argparse.Namespace, settings: Settings) -> int:
    return await cli_ops.watch_top(settings, interval=args.interval, iterations=args.iterations)


def _needs_handlers(command: str) -> Callable[[argparse.Namespace, Settings], None]:
    """A check that ``command`` was given an importable handlers module (exit 2 if not)."""

    def check(args: argparse.Namespace, settings: Settings) -> None:
        load_register(_handlers_module(args, settings, command))

    return check


def _check_retry(args: argparse.Namespace, settings: Settings) -> None:
    """retry ID (one job) or retry --status (every such job); exactly one of the two."""
    if args.job_id is not None:
        if args.status is not None or args.job_type is not None or args.yes:
            raise InvalidJob("retry ID takes no --status, --job-type or --yes")
    elif args.status is None:
        raise InvalidJob("retry needs a job ID, or --status failed|cancelled for every such job")


async def cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    if args.job_id is not None:
        return await cli_jobs.retry_job(settings, args.job_id)
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


def _handlers_module(args: argparse.Namespace, settings: Settings, command: str) -> str:
    """--handlers, else HYBRIDQ_HANDLERS_MODULE; never an implicit example module."""
    module: str | None = args.handlers or settings.handlers_module
    if not module:
        escape = " (or --no-validate to enqueue unchecked)" if command == "enqueue" else ""
        raise HandlerNotFound(
            f"{command} needs the module that registers your job types: pass --handlers "
            f"MODULE or set HYBRIDQ_HANDLERS_MODULE{escape}"
        )
    return module


def _metrics(port: int | None) -> Metrics | None:
    if port is None:
        return None
    metrics = Metrics()
    metrics.serve(port)
    return metrics


LEFTOVER_SECONDS = 1.0
"""At a command's end, tasks still running get this long to finish after being cancelled."""


HANDLERS_RUNNING = threading.Event()
"""Set while a worker runs handlers under its own signal handlers (cmd_worker): from then
on a SystemExit or KeyboardInterrupt that reaches the event loop, or a stopped loop, comes
from handler code (a callback or task it scheduled, ``loop.stop()``), never from the
operator, whose SIGTERM and SIGINT call the worker's stop()."""


def _run(coro: Coroutine[Any, Any, int]) -> int:
    """Run a command on uvloop when installed (fewer microseconds per round trip). Unlike
    asyncio.run, the end is bounded: a task still running (a handler that ignores
    cancellation, left behind by a stopped worker) is cancelled and given LEFTOVER_SECONDS,
    then abandoned with the process, not waited for. While HANDLERS_RUNNING, what handler
    code throws at the loop itself is logged and the command goes on."""
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    command = loop.create_task(coro)
    try:
        while True:
            try:
                return loop.run_until_complete(command)
            except (SystemExit, KeyboardInterrupt, RuntimeError) as exc:
                if command.done() or not HANDLERS_RUNNING.is_set() or not _stray(exc):
                    raise
                log.error(
                    "handler code outside its attempt stopped the event loop; going on",
                    extra={"action": "worker", "error": f"{type(exc).__name__}: {exc}"[:200]},
                )
    finally:
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.wait(leftovers, timeout=LEFTOVER_SECONDS))
        # The default executor's threads (asyncio.to_thread) end here, or are left to
        # main()'s exit if a handler's work in one does not end.
        with contextlib.suppress(TimeoutError):
            loop.run_until_complete(
                asyncio.wait_for(loop.shutdown_default_executor(), LEFTOVER_SECONDS)
            )
        loop.set_exception_handler(lambda _loop, _context: None)  # abandoned tasks: quiet
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _stray(exc: BaseException) -> bool:
    """Thrown at the loop by something it ran, not by the command itself."""
    if isinstance(exc, RuntimeError):
        return str(exc).startswith("Event loop stopped before Future completed")
    return True


def _first_error(exc: ValidationError) -> str:
    """The first error, named by its environment variable (HYBRIDQ_LEASE_SECONDS)."""
    err = exc.errors()[0]
    field = str(err["loc"][0]) if err["loc"] else ""
    name = {"database_url": "DATABASE_URL", "redis_url": "REDIS_URL"}.get(
        field, f"HYBRIDQ_{field.upper()}"
    )
    return f"{name}: {str(err['msg']).removeprefix('Value error, ')}"


def _fail(code: int, message: str) -> NoReturn:
    print(f"hybridq: error: {message}", file=sys.stderr)
    sys.exit(code)


COMMANDS: cli_parser.Commands = {
    "migrate": cmd_migrate,
    "worker": cmd_worker,
    "reconcile": cmd_reconcile,
    "enqueue": cmd_enqueue,
    "api": cmd_api,
    "token new": cmd_token_new,
    "token list": cmd_token_list,
    "token revoke": cmd_token_revoke,
    "contracts": cmd_contracts,
    "get": cmd_get,
    "list": cmd_list,
    "cancel": cmd_cancel,
    "stats": cmd_stats,
    "top": cmd_top,
    "retry": cmd_retry,
    "purge": cmd_purge,
}

ARGUMENT_CHECKS: dict[
    Callable[..., Coroutine[Any, Any, int]], Callable[[argparse.Namespace, Settings], None]
] = {
    cmd_retry: _check_retry,
    cmd_worker: _needs_handlers("worker"),
    cmd_api: _needs_handlers("api"),
    cmd_reconcile: _needs_handlers("reconcile"),
}
"""Checks of a command's arguments that need no server, run before PREFLIGHT."""

_BOTH = preflight.Needs()
PREFLIGHT: dict[Callable[..., Coroutine[Any, Any, int]], preflight.Needs] = {
    cmd_worker: _BOTH,
    cmd_reconcile: _BOTH,
    cmd_enqueue: _BOTH,
    cmd_get: _BOTH,
    cmd_stats: _BOTH,
    cmd_retry: _BOTH,
    cmd_purge: preflight.Needs(redis=False),
    # The API starts while a server is down (it answers 503 until it is back); a wrong
    # database, role or schema is still one line and exit 2.
    cmd_api: preflight.Needs(start_anyway=True),
}
"""What each command needs checked before it starts (tokens check their own table)."""
