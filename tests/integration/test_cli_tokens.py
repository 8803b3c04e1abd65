"""Managed API tokens end to end: `hybridq token new/list/revoke` as a user runs them, and
two real API processes (`hybridq api`) that must refuse a revoked or expired token within
5 s, without a restart; environment tokens keep working beside them."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from hybridq_api.auth import config_entry

from queue_core import Settings
from tests.support.cli import assert_one_line_error, hybridq
from tests.support.workers import REPO, worker_env

ENV_ADMIN = "hq_env-admin-token-of-the-cli-test-0123456789abcdef"
REFUSED_WITHIN_SECONDS = 5.0


def new_token(settings: Settings, *args: str) -> tuple[str, str]:
    """(token, id) of `hybridq token new ARGS`."""
    result = hybridq(settings, "token", "new", *args)
    assert result.returncode == 0, result
    token = re.search(r"^token: (hq_\S+)$", result.stdout, re.M)
    token_id = re.search(r"^id: (\S+) ", result.stdout, re.M)
    assert token and token_id, result.stdout
    return token.group(1), token_id.group(1)


def listed(settings: Settings) -> dict[str, dict[str, object]]:
    result = hybridq(settings, "token", "list", "--json")
    assert result.returncode == 0, result
    return {t["id"]: t for t in json.loads(result.stdout)}


async def test_token_new_list_revoke(settings: Settings) -> None:
    token, token_id = new_token(settings, "--user", "u-1", "--expires", "90d", "--name", "ci")
    admin, admin_id = new_token(settings, "--admin")
    tokens = listed(settings)
    assert tokens[token_id]["user_id"] == "u-1" and tokens[token_id]["name"] == "ci"
    assert tokens[token_id]["state"] == "active" and tokens[token_id]["expires_at"]
    assert tokens[admin_id]["admin"] is True and tokens[admin_id]["expires_at"] is None
    assert token not in json.dumps(tokens), "the token itself is never stored nor shown again"

    revoked = hybridq(settings, "token", "revoke", token_id)
    assert revoked.returncode == 0 and "revoked token" in revoked.stdout, revoked
    assert listed(settings)[token_id]["state"] == "revoked"
    again = hybridq(settings, "token", "revoke", token_id)
    assert again.returncode == 0, "revoking twice is harmless"
    table = hybridq(settings, "token", "list").stdout
    assert token_id in table and "revoked" in table and "user:u-1" in table


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["revoke", "01900000-0000-7000-8000-000000000000"], 1, "no token with id"),
        (["revoke", "not-an-id"], 2, "not a token id"),
        (["new", "--user", "u", "--expires", "soon"], 2, "duration"),
        (["new", "--user", "u", "--env-entry", "--expires", "1d"], 2, "drop --env-entry"),
        (["new"], 2, "one of the arguments --user --admin is required"),
        (["new", "--user", "u", "--name", "n" * 201], 2, "--name must be"),
    ],
)
async def test_token_command_errors_are_one_line(
    settings: Settings, args: list[str], code: int, text: str
) -> None:
    assert_one_line_error(hybridq(settings, "token", *args), code, text)


async def test_env_entry_prints_a_config_entry_and_stores_nothing(settings: Settings) -> None:
    result = hybridq(settings, "token", "new", "--admin", "--env-entry")
    assert result.returncode == 0, result
    token = re.search(r"^token: (hq_\S+)$", result.stdout, re.M)
    assert token and json.dumps(config_entry(token.group(1), admin=True)) in result.stdout
    assert listed(settings) == {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_of(base_url: str, token: str) -> int:
    request = urllib.request.Request(
        f"{base_url}/jobs?limit=1", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except urllib.error.URLError:
        return 0  # not listening (yet)


@pytest.fixture
def two_apis(settings: Settings, tmp_path: Path) -> Iterator[list[str]]:
    """Two `hybridq api` processes on the test's schema (the default 2 s token cache)."""
    env = worker_env(
        settings,
        Path("/dev/null"),
        HYBRIDQ_API_TOKENS=json.dumps([config_entry(ENV_ADMIN, admin=True)]),
    )
    servers: list[subprocess.Popen[bytes]] = []
    urls = []
    try:
        for i in range(2):
            port = free_port()
            with open(tmp_path / f"api-{i}.log", "wb") as log:
                servers.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "queue_core",
                            "api",
                            "--handlers",
                            "handlers",
                            "--port",
                            str(port),
                        ],
                        env=env,
                        cwd=REPO,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            urls.append(f"http://127.0.0.1:{port}")
        for url, server in zip(urls, servers, strict=True):
            deadline = time.monotonic() + 30
            while status_of(url, ENV_ADMIN) != 200:
                assert server.poll() is None, (tmp_path / "api-0.log").read_text()
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.1)
        yield urls
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)


def seconds_until_refused(urls: list[str], token: str) -> float:
    started = time.monotonic()
    while any(status_of(url, token) != 401 for url in urls):
        elapsed = time.monotonic() - started
        assert elapsed < 2 * REFUSED_WITHIN_SECONDS, f"still accepted after {elapsed:.1f} s"
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.mark.slow
async def test_a_revoked_token_is_refused_by_every_api_process_within_5s(
    settings: Settings, two_apis: list[str]
) -> None:
    token, token_id = new_token(settings, "--user", "u-1")
    assert [status_of(url, token) for url in two_apis] == [200, 200]  # now in both caches
    revoked = hybridq(settings, "token", "revoke", token_id)
    assert revoked.returncode == 0, revoked
    took = seconds_until_refused(two_apis, token)
    assert took <= REFUSED_WITHIN_SECONDS, f"refused by both after {took:.1f} s"
    assert [status_of(url, ENV_ADMIN) for url in two_apis] == [200, 200]


@pytest.mark.slow
async def test_an_expired_token_is_refused_by_every_api_process(
    settings: Settings, two_apis: list[str]
) -> None:
    token, _ = new_token(settings, "--user", "u-2", "--expires", "2s")
    assert [status_of(url, token) for url in two_apis] == [200, 200]
    took = seconds_until_refused(two_apis, token)
    assert took <= REFUSED_WITHIN_SECONDS, f"refused by both after {took:.1f} s"
