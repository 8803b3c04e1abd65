"""Load check of the HTTP API: how many enqueue requests and jobs per second one
``hybridq api`` process takes, and at what latency.

    python -m bench.api_load [--clients N] [--seconds D] [--json PATH]

Starts the real server (``python -m queue_core api``, one uvicorn process) on a free loopback
port with a schema and Redis namespace of its own (migrated first with ``python -m queue_core
migrate``) and the rate limit off, then drives it with ``httpx.AsyncClient`` (keep-alive,
N concurrent clients) for D seconds per phase:

    single  POST /jobs, one job per request
    batch   POST /jobs/batch, BATCH_SIZE jobs per request

and prints requests/s, jobs/s and p50/p95/p99 latency of each phase as a table and as JSON.
Reads DATABASE_URL and REDIS_URL (default: the local servers); every other HYBRIDQ_* variable
in the environment reaches the server too (e.g. HYBRIDQ_POOL_MAX_SIZE). Drops its schema,
deletes its keys and stops the server when done. A script, not a test: it never asserts on
time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis
from hybridq_api.auth import config_entry, new_token

from queue_core.settings import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CLIENTS = 32
DEFAULT_SECONDS = 10.0
BATCH_SIZE = 100
"""Jobs per POST /jobs/batch request in the batch phase."""
WARMUP_REQUESTS = 3
"""Unmeasured requests per client before a phase: connections open, statements prepared."""
SERVER_START_SECONDS = 30.0
"""How long the server may take to answer /readyz before the run gives up."""
SERVER_STOP_SECONDS = 10.0


@dataclass
class Phase:
    name: str
    jobs_per_request: int
    body: Callable[[int], dict[str, Any]]
    path: str
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    elapsed: float = 0.0

    def summary(self) -> dict[str, Any]:
        ok = sum(n for status, n in self.statuses.items() if 200 <= status < 300)
        ordered = sorted(self.latencies_ms)
        return {
            "phase": self.name,
            "path": self.path,
            "jobs_per_request": self.jobs_per_request,
            "seconds": round(self.elapsed, 3),
            "requests": sum(self.statuses.values()),
            "requests_ok": ok,
            "errors": {str(s): n for s, n in sorted(self.statuses.items()) if not 200 <= s < 300},
            "requests_per_second": round(ok / self.elapsed, 1) if self.elapsed else 0.0,
            "jobs_per_second": round(ok * self.jobs_per_request / self.elapsed, 1)
            if self.elapsed else 0.0,
            "latency_ms": {
                "p50": percentile(ordered, 50),
                "p95": percentile(ordered, 95),
                "p99": percentile(ordered, 99),
                "max": round(ordered[-1], 2) if ordered else None,
            },
        }


def percentile(ordered: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not ordered:
        return None
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return round(ordered[rank - 1], 2)


def email_job(n: int) -> dict[str, Any]:
    return {"job_type": "email_processing", "input": {"message_id": f"bench-{n}"}}


def phases() -> list[Phase]:
    return [
        Phase("single", 1, email_job, "/jobs"),
        Phase("batch", BATCH_SIZE,
              lambda n: {"jobs": [email_job(n * BATCH_SIZE + i) for i in range(BATCH_SIZE)]},
              "/jobs/batch"),
    ]


async def run_phase(client: httpx.AsyncClient, phase: Phase, clients: int, seconds: float) -> None:
    """``clients`` concurrent loops posting ``phase``'s bodies for ``seconds``."""
    counter = iter(range(sys.maxsize))

    async def one(measure: bool) -> None:
        body = phase.body(next(counter))
        started = time.perf_counter()
        try:
            response = await client.post(phase.path, json=body)
            status = response.status_code
        except httpx.HTTPError:
            status = 599  # transport failure: counted as an error, never retried
        if measure:
            phase.latencies_ms.append((time.perf_counter() - started) * 1000)
            phase.statuses[status] += 1

    await asyncio.gather(*(one(False) for _ in range(clients * WARMUP_REQUESTS)))
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        while time.perf_counter() < deadline:
            await one(True)

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(clients)))
    phase.elapsed = time.perf_counter() - started


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(database_url: str, redis_url: str, name: str, token: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        HYBRIDQ_DB_SCHEMA=name,
        HYBRIDQ_NAMESPACE=name,
        HYBRIDQ_API_TOKENS=json.dumps([config_entry(token, user_id="bench")]),
        HYBRIDQ_API_RATE_LIMIT_PER_SECOND="0",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    return env


async def wait_ready(base_url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as client:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"the API exited with {server.returncode}:\n{tail(log)}")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the API was not ready within {SERVER_START_SECONDS}s:\n{tail(log)}")


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(SERVER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@asynccontextmanager
async def api_server(
    database_url: str, redis_url: str, token: str
) -> AsyncIterator[tuple[str, str]]:
    """A migrated schema and a running ``hybridq api``; yields its base URL and the schema's
    name. Removes the schema, the namespace's keys and the server afterwards."""
    name = "bench_" + uuid.uuid4().hex[:12]
    env = server_env(database_url, redis_url, name, token)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="hybridq-bench-") as tmp:
        log = Path(tmp) / "api.log"
        try:
            server = await asyncio.to_thread(start_server, env, port, log)
            try:
                await wait_ready(f"http://127.0.0.1:{port}", server, log)
                yield f"http://127.0.0.1:{port}", name
            finally:
                await asyncio.to_thread(stop, server)
        finally:
            await cleanup(database_url, redis_url, name)


def start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """Migrate the schema, then start ``hybridq api`` on ``port``, its output to ``log``."""
    migrate = subprocess.run([sys.executable, "-m", "queue_core", "migrate"], env=env,
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    if migrate.returncode != 0:
        raise RuntimeError(f"migrate failed: {migrate.stderr or migrate.stdout}")
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "queue_core", "api", "--handlers", "handlers",
             "--port", str(port)],
            env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
        )


async def cleanup(database_url: str, redis_url: str, name: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()
    client = aioredis.Redis.from_url(redis_url)
    try:
        for pattern in (f"{{{name}:*", f"{name}:*"):
            async for key in client.scan_iter(match=pattern, count=1000):
                await client.delete(key)
    finally:
        await client.aclose()


async def run(clients: int, seconds: float, database_url: str, redis_url: str) -> dict[str, Any]:
    token = new_token()
    results: list[dict[str, Any]] = []
    async with api_server(database_url, redis_url, token) as (base_url, schema):
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(
            base_url=base_url, limits=limits, timeout=60,
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            for phase in phases():
                await run_phase(client, phase, clients, seconds)
                results.append(phase.summary())
        stored = await count_jobs(database_url, schema)
    return {"clients": clients, "seconds_per_phase": seconds, "batch_size": BATCH_SIZE,
            "python": sys.version.split()[0], "phases": results, "jobs_in_postgres": stored}


async def count_jobs(database_url: str, schema: str) -> int:
    """Rows the run left in its schema (warm-up requests included): every 2xx is a job."""
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval(f'SELECT count(*) FROM "{schema}".jobs'))
    finally:
        await conn.close()


def table(report: dict[str, Any]) -> str:
    header = ("phase", "requests", "errors", "req/s", "jobs/s", "p50 ms", "p95 ms", "p99 ms")
    rows = [header] + [
        (p["phase"], str(p["requests"]), str(sum(p["errors"].values())),
         f"{p['requests_per_second']:.1f}", f"{p['jobs_per_second']:.1f}",
         *(str(p["latency_ms"][k]) for k in ("p50", "p95", "p99")))
        for p in report["phases"]
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True))
                     for row in rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.api_load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=DEFAULT_CLIENTS, metavar="N",
                        help=f"concurrent clients (default {DEFAULT_CLIENTS})")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, metavar="D",
                        help=f"duration of each phase (default {DEFAULT_SECONDS:g})")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write the report as JSON to PATH")
    args = parser.parse_args(argv)
    if args.clients < 1 or not args.seconds > 0:
        parser.error("--clients must be >= 1 and --seconds > 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = asyncio.run(run(
        args.clients, args.seconds,
        os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        os.environ.get("REDIS_URL", DEFAULT_REDIS_URL),
    ))
    print(f"hybridq API load: {args.clients} clients, {args.seconds:g}s per phase, "
          f"batches of {BATCH_SIZE}")
    print(table(report))
    print(f"jobs in postgres after the run (warm-up included): {report['jobs_in_postgres']}")
    print(json.dumps(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
