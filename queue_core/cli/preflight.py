"""Checks a command runs before it starts, so that a configuration or environment mistake
is one line naming the setting and the fix (exit 2), and an unreachable server one line
naming it (exit 3), rather than a traceback from deep inside the first query."""

from __future__ import annotations

import errno
import logging
import socket
from dataclasses import dataclass

from queue_core.errors import BackendUnavailable, ConfigurationError
from queue_core.index import check_redis
from queue_core.settings import Settings
from queue_core.store import check_schema

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Needs:
    redis: bool = True  # the command needs Redis as well as PostgreSQL
    start_anyway: bool = False  # unreachable servers are logged, not fatal (the API: 503s)


async def check_backends(settings: Settings, needs: Needs) -> None:
    """Raises ConfigurationError for a wrong database, role, password, schema or Redis
    login; BackendUnavailable for a server that cannot be reached (unless
    ``needs.start_anyway``)."""
    for name in ("postgres", "redis") if needs.redis else ("postgres",):
        try:
            if name == "postgres":
                await check_schema(settings.database_url, settings.db_schema)
            else:
                await check_redis(settings.redis_url)
        except BackendUnavailable as exc:
            if not needs.start_anyway:
                raise
            log.warning("starting without %s: %s", name, exc, extra={"action": "preflight"})


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (IPv4 or IPv6, as the host resolves). Raises
    ConfigurationError naming --host/--port and the fix when it cannot be had."""
    where = f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigurationError(
            f"--host {host!r} does not resolve ({exc.strerror}): pass an address of this "
            "machine, e.g. 127.0.0.1 or 0.0.0.0"
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            fix = "another process listens there: stop it, or pass another --port"
        elif exc.errno == errno.EACCES:
            fix = "permission denied: pass a --port above 1023, or run with the right"
            fix += " capability"
        elif exc.errno == errno.EADDRNOTAVAIL:
            fix = "that is not an address of this machine: fix --host (e.g. 0.0.0.0)"
        else:
            fix = f"{exc.strerror}: check --host and --port"
        raise ConfigurationError(f"cannot listen on {where}: {fix}") from None
    return sock
