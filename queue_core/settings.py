"""All configuration, from the environment (or a ``.env`` file), validated once at the edge.

``DATABASE_URL`` and ``REDIS_URL`` keep their conventional names; everything else is
``HYBRIDQ_<FIELD>``.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql://127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


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
    pool_max_size: int = Field(10, ge=1, description="Postgres connections at most per process.")
    lease_seconds: float = Field(
        30.0,
        gt=1,
        description="How long a claim holds before the reconciler may rescue the job; "
        "workers renew it every lease_seconds / 3.",
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
    retry_base_seconds: float = Field(1.0, ge=0, description="Backoff after the first failure.")
    retry_cap_seconds: float = Field(600.0, ge=0, description="Longest backoff between attempts.")
    shutdown_grace_seconds: float = Field(
        30.0, ge=0, description="On SIGTERM, how long running jobs may finish before release."
    )
    api_tokens: list[str] = Field(
        default_factory=list,
        description="API bearer tokens, as SHA-256 hashes, never plaintext: entries "
        "'<sha256 hex>:user:<user_id>' or '<sha256 hex>:admin' (JSON list in the env). "
        "`hybridq token new` prints a token and its entry.",
    )
    api_session_secret: str | None = Field(
        None,
        description="Key of the dashboard's CSRF tokens, shared by every API replica "
        "(default: derived from api_tokens, which replicas share).",
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
