"""`make up` (queue_core.dev.devstack) end to end, as a subprocess: servers, migrate, workers,
demo jobs, and a clean stop."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import psutil
import pytest

from queue_core.dev.devservers import port_open
from tests.conftest import REPO, delete_namespace


def run_devstack(
    env: dict[str, str], data_dir: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """``make up --exit-after-demo``, from the checkout like ``make up``."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "queue_core.dev.devstack",
            "--exit-after-demo",
            "--data-dir",
            str(data_dir),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_six_demo_jobs_succeeded(result: subprocess.CompletedProcess[str]) -> None:
    report = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, report
    assert "demo: 6 of 6 succeeded" in result.stdout, report
    # make up serves the API and the dashboard, and the dashboard sees the demo jobs
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/dashboard  \(admin token", result.stdout)
    assert re.search(r"dashboard shows \d+ job\(s\)", result.stdout), report
    shown = int(re.search(r"dashboard shows (\d+) job", result.stdout).group(1))
    assert shown >= 6, report
    rows = [line for line in result.stdout.splitlines() if re.search(r"\ssucceeded\s+1\s", line)]
    assert len(rows) == 6, report
    assert "Traceback" not in result.stderr, report


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_make_up_on_a_fresh_machine_starts_embedded_servers_and_stops_them(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["HYBRIDQ_NAMESPACE"] = "devstack_" + uuid.uuid4().hex[:12]

    result = run_devstack(env, tmp_path, timeout=170)

    assert_six_demo_jobs_succeeded(result)
    assert "DATABASE_URL=postgresql://" in result.stdout
    assert not (tmp_path / "pg" / "postmaster.pid").exists(), "embedded postgres still running"
    redis_port = re.search(r"REDIS_URL=redis://127\.0\.0\.1:(\d+)/", result.stdout)
    assert redis_port, result.stdout
    assert not port_open("127.0.0.1", int(redis_port.group(1))), "embedded redis still running"
    left = [
        p.info
        for p in psutil.process_iter(["pid", "cmdline"])
        if str(tmp_path) in " ".join(p.info["cmdline"] or [])
    ]
    assert not left, f"processes left running: {left}"


@pytest.mark.timeout(90)
def test_make_up_uses_the_servers_in_database_url_and_redis_url(
    server_urls: tuple[str, str],
    tmp_path: Path,
) -> None:
    database_url, redis_url = server_urls
    name = "devstack_" + uuid.uuid4().hex[:12]
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "HYBRIDQ_DB_SCHEMA": name,
        "HYBRIDQ_NAMESPACE": name,
    }
    try:
        result = run_devstack(env, tmp_path, timeout=80)
        assert_six_demo_jobs_succeeded(result)
        assert f"DATABASE_URL={database_url}\nREDIS_URL={redis_url}\n" in result.stdout
        assert not (tmp_path / "pg").exists(), "started an embedded postgres anyway"
        assert not (tmp_path / "redis").exists(), "started an embedded redis anyway"
    finally:
        asyncio.run(drop_schema_and_namespace(database_url, redis_url, name))


async def drop_schema_and_namespace(database_url: str, redis_url: str, name: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()
    await delete_namespace(redis_url, name)
