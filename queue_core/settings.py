"""All configuration, from the environment (or a ``.env`` file), validated once at the edge.

``DATABASE_URL`` and ``REDIS_URL`` keep their conventional names; everything else is
``HYBRIDQ_<FIELD>``.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql://127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
TOKEN_ENTRY = re.compile(r"[0-9a-f]{64}:(admin|user:.{1,200})", re.DOTALL)
"""An HYBRIDQ_API_TOKENS entry: '<sha256 hex>:admin' or '<sha256 hex>:user:<user id>'."""
_ENTRY_FIX = (
    "each entry is '<64 lowercase hex>:admin' or '<64 lowercase hex>:user:<user id>'; "
    "`hybridq token new --env-entry` prints one"
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HYBRIDQ_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "HYBRIDQ_DATABASE_URL"),
        description="PostgreSQL DSN of the durable job store.",
    )
    redis_url: str = Field(
        DEFAULT_REDIS_URL,
        validation_alias=AliasChoices("REDIS_URL", "HYBRIDQ_REDIS_URL"),
        description="Redis URL of the ready-index.",
    )
    namespace: str = Field(
        "hybridq",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Prefix of every Redis key, so deployments or test runs can share a Redis.",
    )
    db_schema: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="Postgres schema holding the jobs table (default: the server's search_path).",
    )
    pool_min_size: int = Field(1, ge=0, description="Postgres connections kept open per process.")
    pool_max_size: int = Field(
        10,
        ge=1,
        description="Postgres connections at most per process in the main pool (a worker "
        "also opens up to 3 for claims, one to LISTEN and one for its lease keeper).",
    )
    pool_acquire_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="A statement waits at most this long for a pooled connection; then it "
        "fails as 'postgres unavailable' and is retried like one.",
    )
    lease_seconds: float = Field(
        30.0,
        gt=1,
        description="How long a claim holds before the reconciler may rescue the job; "
        "workers renew it every lease_seconds / 3.",
    )
    lease_backstop: bool = Field(
        True,
        description="Each worker starts a small child process that renews its leases while "
        "the worker's interpreter is frozen (a handler's C code holding the GIL); it idles, "
        "without a connection, while the worker renews them itself. "
        "See docs/design/lease-keeper.md.",
    )
    concurrency: int = Field(10, ge=1, le=10_000, description="Jobs one worker runs at once.")
    claim_batch_max: int = Field(
        100,
        ge=1,
        le=1000,
        description="Ids claimed at most per round trip (bounded by free slots).",
    )
    prefetch: int | None = Field(
        None,
        ge=0,
        le=10_000,
        description="Jobs a worker may hold claimed ahead of its free slots while its jobs "
        "are short, so that the next claim overlaps the running jobs (default: twice its "
        "concurrency; 0: never).",
    )
    prefetch_max_job_ms: float = Field(
        20.0,
        ge=0,
        description="A worker claims ahead only while its handlers average under this many "
        "ms; a job claimed ahead that waits over 1 s is handed back to the queue.",
    )
    flush_interval_ms: float = Field(
        5.0, gt=0, description="Outcomes wait at most this long before they are written."
    )
    flush_batch_max: int = Field(
        500, ge=1, description="Outcomes written at most per statement; a full buffer flushes."
    )
    idle_poll_seconds: float = Field(
        2.0,
        gt=0,
        description="An idle worker re-checks Redis at least this often, in case a wake-up "
        "message was lost (it normally wakes on the message within a millisecond).",
    )
    fallback_poll_seconds: float = Field(
        0.25,
        gt=0,
        description="While Redis is unreachable or its index is being rebuilt, an idle worker "
        "polls Postgres this often.",
    )
    max_output_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="Largest handler output stored, as JSON; a larger one fails its attempt.",
    )
    retry_base_seconds: float = Field(1.0, ge=0, description="Backoff after the first failure.")
    retry_cap_seconds: float = Field(600.0, ge=0, description="Longest backoff between attempts.")
    shutdown_grace_seconds: float = Field(
        30.0, ge=0, description="On SIGTERM, how long running jobs may finish before release."
    )
    api_tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="API bearer tokens from the environment, as SHA-256 hashes, never "
        "plaintext: entries '<sha256 hex>:user:<user_id>' or '<sha256 hex>:admin' (a JSON "
        "list). `hybridq token new --env-entry` prints a token and its entry; tokens made "
        "without --env-entry live in Postgres instead.",
    )
    api_token_cache_seconds: float = Field(
        2.0,
        ge=0,
        le=60,
        description="How long an API process trusts what it last read of a managed token "
        "(hybridq token new): a revoked or expired token is refused by every replica within "
        "this many seconds, at the cost of one indexed lookup per token per period.",
    )
    api_session_idle_seconds: float = Field(
        1800.0,
        gt=0,
        description="A dashboard session ends after this many seconds without a page view "
        "(the page's own refresh does not count).",
    )
    api_session_max_seconds: float = Field(
        28_800.0,
        gt=0,
        description="A dashboard session ends this many seconds after login, active or not.",
    )
    api_public_docs: bool = Field(
        False,
        description="Serve /docs, /redoc and /openapi.json without a token (by default they "
        "need a bearer token or a dashboard session, like every other route).",
    )
    api_proxy_headers: bool = Field(
        False,
        description="Trust X-Forwarded-Proto/-For from api_forwarded_allow_ips (behind a "
        "TLS-terminating proxy), so the API knows the client used https. Also "
        "`hybridq api --proxy-headers`.",
    )
    api_forwarded_allow_ips: str = Field(
        "127.0.0.1",
        pattern=r"^[0-9A-Fa-f.:/*, ]{1,2000}$",
        description="Comma-separated addresses or networks of the proxies whose forwarded "
        "headers are trusted when api_proxy_headers is on ('*': any). Also "
        "`hybridq api --forwarded-allow-ips`.",
    )
    api_max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Larger request bodies get 413 before they are parsed."
    )
    api_max_input_bytes: int = Field(
        65_536, ge=64, description="Largest job input, as JSON, the API accepts."
    )
    api_batch_max: int = Field(500, ge=1, le=10_000, description="Jobs per POST /jobs/batch.")
    api_rate_limit_per_second: float = Field(
        100.0, ge=0, description="Jobs a user may enqueue per second on average (0: no limit)."
    )
    api_rate_limit_burst: int = Field(
        500, ge=1, description="Jobs a user may enqueue at once above the average rate."
    )
    retention_succeeded_seconds: float = Field(
        7 * 86_400,
        gt=0,
        description="Succeeded and cancelled jobs are deleted this long "
        "after they finished (by the reconciler).",
    )
    retention_failed_seconds: float = Field(
        30 * 86_400, gt=0, description="Failed jobs are deleted this long after they failed."
    )
    retention_batch_per_run: int = Field(
        10_000, ge=0, description="Jobs one reconciler run deletes at most (0: keep all)."
    )
    events: bool = Field(
        True,
        description="Tell live readers (wait(), the API's Server-Sent Events, the dashboard) "
        "of job changes through Redis pub/sub and per-job streams; off: they poll Postgres.",
    )
    log_json: bool = Field(False, description="Log one JSON object per line (for log shippers).")
    log_level: str = Field(
        "INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$", description="Least severe level logged."
    )
    handlers_module: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
        description="The application's handlers module, whose register(runner) declares the "
        "job types: what `worker` runs, `reconcile` schedules, `api` accepts and "
        "`connect()` / `enqueue` validate against. No default: worker, reconcile and api "
        "need it (or --handlers).",
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        _check_url(value, ("postgresql", "postgres"), "postgresql://user:password@host:5432/db")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        _check_url(value, ("redis", "rediss", "unix"), "redis://host:6379/0")
        return value

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _token_entries(cls, value: Any) -> Any:
        """A JSON list from the environment (decoded here, so that a bad value is one clear
        line rather than the settings library's parse error); every entry well-formed. An
        error names an entry by position, never by content."""
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else []
            except ValueError:
                raise ValueError(
                    "is not JSON: set it to a JSON list, e.g. '[\"<sha256 hex>:admin\"]'"
                ) from None
        if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
            raise ValueError(f"must be a JSON list of strings: {_ENTRY_FIX}")
        for position, entry in enumerate(value):
            if not TOKEN_ENTRY.fullmatch(entry):
                raise ValueError(f"entry {position} is malformed: {_ENTRY_FIX}")
        return value


def _check_url(url: str, schemes: tuple[str, ...], example: str) -> None:
    """Raises ValueError naming what is wrong with ``url`` (never its password) and the
    shape it should have."""
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise ValueError(
            f"scheme must be {' or '.join(s + '://' for s in schemes)}, got "
            f"{parts.scheme + '://' if parts.scheme else 'none'} (e.g. {example})"
        )
    hosts = parts.netloc.rpartition("@")[2]
    for host in hosts.split(","):  # libpq accepts host1:5432,host2:5433
        port = host.rpartition("]")[2].rpartition(":")[2] if ":" in host else ""
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"port must be a number 1..65535, got {port!r} (e.g. {example})")
