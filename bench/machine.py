"""What a result was measured on: the machine, the servers, the library versions."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from .sandbox import Servers

PG_SETTINGS = ("server_version", "fsync", "synchronous_commit", "shared_buffers",
               "max_connections", "wal_level")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_versions() -> dict[str, str]:
    out = {}
    for name in ("hybridq", "asyncpg", "redis", "hiredis", "pydantic", "uvloop", "fastapi",
                 "uvicorn"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


async def server_info(servers: Servers) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        conn = await asyncpg.connect(servers.database_url)
        try:
            out["postgres"] = {k: await conn.fetchval(f"SHOW {k}") for k in PG_SETTINGS}
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError) as exc:
        out["postgres"] = {"error": repr(exc)}
    client = aioredis.Redis.from_url(servers.redis_url, decode_responses=True)
    try:
        server = await client.info("server")
        persistence = await client.info("persistence")
        out["redis"] = {
            "redis_version": server.get("redis_version"),
            "aof_enabled": persistence.get("aof_enabled"),
            "save": (await client.config_get("save")).get("save") or "(none)",
        }
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        out["redis"] = {"error": repr(exc)}
    finally:
        await client.aclose()
    return out


def host_info() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "hostname": platform.node(),
        "loadavg": os.getloadavg(),
    }
