"""Control of the machine's PostgreSQL (cluster "main" on 5432) and Redis (6379) for the failure
tests: restart, crash, stop, start, terminate hybridq's connections. Each call blocks until the
server answers again: call them through ``asyncio.to_thread`` so the test's loop keeps running."""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

import asyncpg

from queue_core.dev.devservers import port_open

PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
SERVER_WAIT_SECONDS = 60.0
"""How long a restarted server may take to answer before the helper gives up."""


def _run(cmd: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def pg_cluster_version() -> str:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions:
        raise RuntimeError("no PostgreSQL cluster under /etc/postgresql")
    return versions[-1]


def pg_ctlcluster(action: str, *options: str) -> subprocess.CompletedProcess[str]:
    return _run(
        [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            pg_cluster_version(),
            "main",
            action,
            *options,
        ],
        timeout=120,
    )


def pg_ready() -> bool:
    return _run(["pg_isready", "-q", "-h", PG_HOST, "-p", str(PG_PORT)], timeout=10).returncode == 0


def redis_ready() -> bool:
    try:
        out = _run(["redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), "ping"], timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return out.stdout.strip() == "PONG"


def _wait(condition: Any, what: str, timeout: float = SERVER_WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not reached within {timeout}s")
        time.sleep(0.1)


def restart_postgres() -> float:
    """Restart the cluster (fast shutdown: every connection is cut); returns the seconds it
    took until the server accepted connections again."""
    started = time.monotonic()
    result = pg_ctlcluster("restart")
    if result.returncode != 0:
        raise RuntimeError(f"pg_ctlcluster restart failed: {result.stderr or result.stdout}")
    _wait(pg_ready, "postgres ready")
    return time.monotonic() - started


def crash_postgres() -> tuple[float, float]:
    """Crash the cluster (immediate shutdown: no checkpoint, WAL still in the server's
    buffers is lost, as in a power cut of the database alone) and start it again. Returns
    when the server was down for sure (a time.time()) and the seconds until it accepted
    connections again (after crash recovery)."""
    started = time.monotonic()
    result = pg_ctlcluster("stop", "-m", "immediate")
    if result.returncode != 0:
        raise RuntimeError(f"pg_ctlcluster stop -m immediate failed: {result.stderr}")
    down_at = time.time()
    result = pg_ctlcluster("start")
    if result.returncode != 0:
        raise RuntimeError(f"pg_ctlcluster start failed: {result.stderr or result.stdout}")
    _wait(pg_ready, "postgres ready")
    return down_at, time.monotonic() - started


def stop_redis() -> None:
    """SHUTDOWN NOSAVE: the server exits and, without persistence, forgets everything."""
    _run(["redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), "shutdown", "nosave"])
    _wait(lambda: not port_open(REDIS_HOST, REDIS_PORT), "redis stopped")


def start_redis() -> None:
    if redis_ready():
        return
    result = _run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            str(REDIS_PORT),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
            "--logfile",
            "/var/log/redis/ci.log",
        ]
    )
    if result.returncode != 0:
        raise RuntimeError(f"redis-server did not start: {result.stderr or result.stdout}")
    _wait(redis_ready, "redis ready")


def ensure_servers_up() -> None:
    """Bring back whichever server a test left down (a failed test included)."""
    if not pg_ready():
        result = pg_ctlcluster("start")
        if result.returncode != 0 and not pg_ready():
            pg_ctlcluster("restart")
        _wait(pg_ready, "postgres ready")
    if not redis_ready():
        start_redis()


async def terminate_hybridq_backends(database_url: str) -> int:
    """pg_terminate_backend every connection opened by hybridq (application_name 'hybridq'),
    from a plain connection of our own; returns how many were terminated."""
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'hybridq' AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await conn.close()
