"""Hostile and careless handlers, for tests/failure/test_hostile_handlers.py, run by worker
subprocesses (``hybridq worker --handlers tests.support.hostile``) beside canary jobs.

``hostile`` (async, timeout 1 s) and ``hostile_sync`` (a plain function, timeout 1 s) do what
their input's ``kind`` names; ``canary`` sleeps ``sleep`` seconds and succeeds; ``stubborn``
(no timeout) ignores cancellation or blocks the loop on its first attempt. Every
execution of every job appends ``job_id attempt pid start end`` to the file named by
HYBRIDQ_TEST_RECORD (start and end as time.time(); end is written when the handler ends).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from queue_core import JobRunnerService
from tests.support.recording import RECORD_ENV, append_line

TIMEOUT_SECONDS = 1.0


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no printing this one")


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


async def _swallow_cancellation(seconds: float) -> dict[str, Any]:
    """Ignores every cancellation until ``seconds`` have passed, then returns a result."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            await asyncio.sleep(deadline - time.monotonic())
        except asyncio.CancelledError:
            continue
    return {"finished": "after all"}


def _raise(exc: BaseException) -> Any:
    raise exc


class HostileList(list[Any]):
    def __iter__(self) -> Any:
        raise RuntimeError("iter says no")


class HostileDict(dict[str, Any]):
    def values(self) -> Any:
        raise RuntimeError("values says no")

    def items(self) -> Any:
        raise RuntimeError("items says no")


class ClassProperty(Exception):
    @property  # type: ignore[misc]
    def __class__(self) -> Any:
        raise RuntimeError("__class__ says no")


class SlowToPrint(Exception):
    def __str__(self) -> str:
        time.sleep(30)  # on the worker's loop this would stall every job beside it
        return "finally"


def _hold_the_gil(seconds: float) -> dict[str, Any]:
    """Freeze every thread of the process, as C code that never releases the GIL does: the
    lease keeper's thread cannot run, only the lease backstop (another process) can."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pass
    finally:
        sys.setswitchinterval(previous)
    return {"held": seconds}


def _stray(throw: Callable[[], Any]) -> Any:
    """Throw something at the event loop itself, outside this attempt, then fail."""
    asyncio.get_running_loop().call_soon(throw)
    raise RuntimeError("threw something at the loop")


async def _raise_later(exc: BaseException) -> None:
    raise exc


def _stray_task(exc: BaseException) -> Any:
    """A task of the handler's own that raises ``exc`` (it is not the attempt)."""
    _TASKS.add(asyncio.get_running_loop().create_task(_raise_later(exc)))
    raise RuntimeError("left a task behind")


_TASKS: set[asyncio.Task[None]] = set()


def _leave_a_thread() -> Any:
    """A non-daemon thread that outlives the worker's stop: it must not keep the worker."""
    threading.Thread(target=time.sleep, args=(600,), name="handler-made").start()
    raise RuntimeError("left a thread behind")


def _amplified() -> dict[str, Any]:
    inner = list(range(1_000_000))
    return {"a": [inner] * 40}  # 40 million values from 8 MB: too large, found fast


ASYNC_KINDS: dict[str, Callable[[], Any]] = {
    "nul_output": lambda: {"s": "a\x00b"},
    "surrogate_output": lambda: {"s": "\ud800"},
    "nul_in_error": lambda: _raise(RuntimeError("bad \x00 byte")),
    "surrogate_in_error": lambda: _raise(RuntimeError("bad \ud800 char")),
    "unprintable_error": lambda: _raise(Unprintable()),
    "raises_cancelled_error": lambda: _raise(asyncio.CancelledError()),
    "raises_base_exception": lambda: _raise(BaseException("base")),
    "sys_exit_3": lambda: sys.exit(3),
    "sys_exit_0": lambda: sys.exit(0),
    "keyboard_interrupt": lambda: _raise(KeyboardInterrupt()),
    "blocks_the_loop": lambda: time.sleep(4),  # past its 1 s timeout, and past the 2 s lease
    "huge_output": lambda: {"s": "x" * 2_000_000},
    "deep_output": lambda: _nested(300),
    "returns_a_list": lambda: [1, 2],
    "returns_nan": lambda: {"f": float("nan")},
    "returns_hostile_list": lambda: HostileList([1]),
    "returns_hostile_dict": lambda: HostileDict(a=1),
    "raises_with_hostile_class": lambda: _raise(ClassProperty("odd")),
    "colliding_keys": lambda: {1: "a", "1": "b"},
    "amplified_output": _amplified,
    "slow_to_print": lambda: _raise(SlowToPrint()),
    "holds_the_gil": lambda: _hold_the_gil(4),  # past its 1 s timeout and the 2 s lease
    "schedules_sys_exit": lambda: _stray(lambda: sys.exit(5)),
    "schedules_keyboard_interrupt": lambda: _stray(lambda: _raise(KeyboardInterrupt())),
    "stops_the_loop": lambda: _stray(asyncio.get_running_loop().stop),
    "task_raises_system_exit": lambda: _stray_task(SystemExit(6)),
    "leaves_a_thread": _leave_a_thread,
}
"""Each kind, and what the attempt's last_error must then say."""
EXPECTED_ERRORS = {
    "nul_output": "InvalidOutput: output contains a NUL character",
    "surrogate_output": "InvalidOutput: output contains a lone UTF-16 surrogate",
    "nul_in_error": "RuntimeError: bad \\x00 byte",
    "surrogate_in_error": "RuntimeError: bad \\ud800 char",
    "unprintable_error": "Unprintable: <the exception could not be printed>",
    "raises_cancelled_error": "CancelledError",
    "raises_base_exception": "BaseException: base",
    "sys_exit_3": "SystemExit: 3",
    "sys_exit_0": "SystemExit: 0",
    "keyboard_interrupt": "KeyboardInterrupt",
    "blocks_the_loop": "TimeoutError: handler ran longer than 1.0s",
    "swallows_cancellation": "TimeoutError: handler ran longer than 1.0s",
    "huge_output": "over HYBRIDQ_MAX_OUTPUT_BYTES",
    "deep_output": "output is nested deeper than 64 levels",
    "returns_a_list": "handler must return a dict or None, got list",
    "returns_nan": "output is not JSON-serialisable",
    "returns_hostile_list": "handler must return a dict or None, got HostileList",
    "returns_hostile_dict": "InvalidOutput: what the handler returned could not be read",
    "raises_with_hostile_class": "what the handler raised could not be read",
    "colliding_keys": "has an object key that is not a string",
    "amplified_output": "too large",
    "slow_to_print": "SlowToPrint: <the exception could not be printed in time>",
    "holds_the_gil": "TimeoutError: handler ran longer than 1.0s",
    "holds_the_gil_later": "TimeoutError: handler ran longer than 1.0s",
    "schedules_sys_exit": "RuntimeError: threw something at the loop",
    "schedules_keyboard_interrupt": "RuntimeError: threw something at the loop",
    "stops_the_loop": "RuntimeError: threw something at the loop",
    "task_raises_system_exit": "RuntimeError: left a task behind",
    "leaves_a_thread": "RuntimeError: left a thread behind",
    "widens_its_own_retries": "RuntimeError: retries are mine",
    "sync_sleeps_past_timeout": "TimeoutError: handler ran longer than 1.0s",
    "sync_sys_exit": "SystemExit: 4",
    "sync_keyboard_interrupt": "KeyboardInterrupt",
}
SYNC_KINDS: dict[str, Callable[[], Any]] = {
    "sync_sleeps_past_timeout": lambda: time.sleep(3),
    "sync_sys_exit": lambda: sys.exit(4),
    "sync_keyboard_interrupt": lambda: _raise(KeyboardInterrupt()),
}


def _record(job: dict[str, Any], started: float) -> None:
    line = f"{job['id']} {job['attempts']} {os.getpid()} {started} {time.time()}"
    append_line(os.environ[RECORD_ENV], line)


async def handle_hostile(job: dict[str, Any]) -> Any:
    started = time.time()
    record = dict(job)  # what the finally records, whatever the kind does to ``job``
    try:
        kind = job["input"]["kind"]
        if kind == "swallows_cancellation":
            return await _swallow_cancellation(4)
        if kind == "holds_the_gil_later":  # once the jobs beside it have started
            await asyncio.sleep(0.5)
            return _hold_the_gil(job["input"].get("seconds", 4))
        if kind == "widens_its_own_retries":  # with max_retries=0: must still fail for good
            job["max_retries"] = 1000  # the dict the worker passed
            job.clear()
            raise RuntimeError("retries are mine")
        return ASYNC_KINDS[kind]()
    finally:
        _record(record, started)


def handle_hostile_sync(job: dict[str, Any]) -> Any:
    started = time.time()
    try:
        return SYNC_KINDS[job["input"]["kind"]]()
    finally:
        _record(job, started)


async def handle_canary(job: dict[str, Any]) -> dict[str, Any]:
    started = time.time()
    try:
        await asyncio.sleep(job["input"].get("sleep", 0))
        return {"n": job["input"]["n"]}
    finally:
        _record(job, started)


async def handle_stubborn(job: dict[str, Any]) -> dict[str, Any]:
    """No timeout. On its first attempt: swallows cancellation (``swallow`` seconds) or
    blocks the loop (``block`` seconds); on later attempts it succeeds at once."""
    started = time.time()
    try:
        if job["attempts"] == 1 and job["input"].get("block"):
            time.sleep(job["input"]["block"])
        elif job["attempts"] == 1 and job["input"].get("swallow"):
            await _swallow_cancellation(job["input"]["swallow"])
        return {"attempt": job["attempts"]}
    finally:
        _record(job, started)


def register(runner: JobRunnerService) -> None:
    runner.register_handler("hostile", handle_hostile, timeout=TIMEOUT_SECONDS)
    runner.register_handler("hostile_sync", handle_hostile_sync, timeout=TIMEOUT_SECONDS)
    runner.register_handler("canary", handle_canary)
    runner.register_handler("stubborn", handle_stubborn)
