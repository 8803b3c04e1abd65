"""Every configuration or environment mistake a user can make is one line on stderr naming
the setting and the fix, with the documented exit code (2; 3 only for a server that cannot
be reached): the cases of issue 12, run as a user would, against the real servers."""

from __future__ import annotations

import socket

import pytest

from queue_core import Settings
from tests.support.cli import assert_one_line_error, hybridq

JOB_ID = "01900000-0000-7000-8000-000000000000"
ENTRY = "0" * 64 + ":admin"


@pytest.mark.parametrize(
    ("env", "text"),
    [
        pytest.param(
            {"DATABASE_URL": "postgresql://root@127.0.0.1:abc/test"},
            "DATABASE_URL: port must be a number",
            id="non-numeric-port",
        ),
        pytest.param(
            {"DATABASE_URL": "mysql://root@127.0.0.1/test"},
            "DATABASE_URL: scheme must be postgresql://",
            id="wrong-db-scheme",
        ),
        pytest.param(
            {"DATABASE_URL": "postgresql://no_such_role_hq12@127.0.0.1:5432/test"},
            "fix the user or password in DATABASE_URL",
            id="unknown-role",
        ),
        pytest.param(
            {"DATABASE_URL": "postgresql://root@127.0.0.1:5432/no_such_db_hq12"},
            "fix its name in DATABASE_URL",
            id="unknown-database",
        ),
        pytest.param(
            {"REDIS_URL": "http://127.0.0.1:6379/0"},
            "REDIS_URL: scheme must be redis://",
            id="wrong-redis-scheme",
        ),
        pytest.param(
            {"REDIS_URL": "redis://127.0.0.1:6379/999"},
            "check the database number",
            id="redis-db-out-of-range",
        ),
        pytest.param(
            {"HYBRIDQ_API_TOKENS": "not json"},
            "HYBRIDQ_API_TOKENS: is not JSON",
            id="tokens-not-json",
        ),
        pytest.param(
            {"HYBRIDQ_API_TOKENS": '["abc:admin"]'},
            "HYBRIDQ_API_TOKENS: entry 0 is malformed",
            id="malformed-token-entry",
        ),
        pytest.param(
            {"HYBRIDQ_API_TOKENS": f'["{ENTRY}", "{"1" * 64}:root"]'},
            "entry 1 is malformed",
            id="unknown-role-in-entry",
        ),
        pytest.param(
            {"HYBRIDQ_DB_SCHEMA": "never_migrated_hq12"},
            "does not exist in schema never_migrated_hq12: run `hybridq migrate`",
            id="wrong-schema",
        ),
    ],
)
@pytest.mark.parametrize("command", [["get", JOB_ID], ["stats"], ["token", "list"]])
async def test_configuration_error_is_one_line_naming_the_fix_and_exit_2(
    settings: Settings, env: dict[str, str], text: str, command: list[str]
) -> None:
    result = hybridq(settings, *command, **env)
    if command[0] == "token" and env.get("REDIS_URL", "").endswith("/999"):
        assert result.returncode == 0, result  # token commands never touch Redis
        return
    assert_one_line_error(result, 2, text)


async def test_a_schema_missing_a_migration_names_it(settings: Settings) -> None:
    import asyncpg

    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            f'DELETE FROM "{settings.db_schema}".schema_migrations WHERE version LIKE $1',
            "0009%",
        )
    finally:
        await conn.close()
    result = hybridq(settings, "get", JOB_ID)
    assert_one_line_error(result, 2, "lacks migration(s) 0009_dashboard_sessions")


async def test_the_api_refuses_to_start_on_a_configuration_error(settings: Settings) -> None:
    for env, text in [
        ({"HYBRIDQ_DB_SCHEMA": "never_migrated_hq12"}, "run `hybridq migrate`"),
        ({"DATABASE_URL": "postgresql://root@127.0.0.1:5432/no_such_db_hq12"}, "DATABASE_URL"),
        ({"HYBRIDQ_API_TOKENS": "[1]"}, "HYBRIDQ_API_TOKENS: must be a JSON list of strings"),
    ]:
        result = hybridq(
            settings, "api", "--handlers", "handlers", "--port", str(free_port()), **env
        )
        assert_one_line_error(result, 2, text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_api_port_in_use_is_exit_2_not_backend_unreachable(settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = hybridq(settings, "api", "--handlers", "handlers", "--port", str(port))
    assert_one_line_error(result, 2, f"cannot listen on 127.0.0.1:{port}: another process")
    assert "--port" in result.stderr


async def test_api_host_that_is_not_local_is_exit_2(settings: Settings) -> None:
    result = hybridq(
        settings, "api", "--handlers", "handlers", "--host", "192.0.2.1", "--port", str(free_port())
    )
    assert_one_line_error(result, 2, "not an address of this machine")


async def test_unreachable_redis_is_exit_3_naming_it(settings: Settings) -> None:
    result = hybridq(settings, "stats", REDIS_URL="redis://127.0.0.1:1/0")
    assert_one_line_error(result, 3, "redis unavailable")
