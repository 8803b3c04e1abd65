"""`hybridq api` as served by uvicorn: no Server banner, and X-Forwarded-Proto trusted only
with --proxy-headers (from --forwarded-allow-ips), which decides the Secure cookie."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from hybridq_api.auth import config_entry

from queue_core import Settings
from tests.support.workers import REPO, worker_env

from .test_cli_tokens import ENV_ADMIN, free_port, status_of


def serve(settings: Settings, tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = worker_env(
        settings,
        Path("/dev/null"),
        HYBRIDQ_API_TOKENS=json.dumps([config_entry(ENV_ADMIN, admin=True)]),
    )
    with open(tmp_path / f"api-{port}.log", "wb") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "queue_core",
                "api",
                "--handlers",
                "handlers",
                "--port",
                str(port),
                *args,
            ],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while status_of(f"http://127.0.0.1:{port}", ENV_ADMIN) != 200:
        assert server.poll() is None and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.1)
    return server, port


def login(port: int, **headers: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = urllib.parse.urlencode({"token": ENV_ADMIN})
    conn.request(
        "POST",
        "/dashboard/login",
        body,
        {
            "Content-Type": "application/x-www-form-urlencoded",
            **headers,
        },
    )
    return conn.getresponse()


async def test_forwarded_proto_is_trusted_only_with_proxy_headers(
    settings: Settings, tmp_path: Path
) -> None:
    plain, plain_port = serve(settings, tmp_path)
    proxied, proxied_port = serve(
        settings, tmp_path, "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"
    )
    try:
        forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
        ignored = login(plain_port, **forwarded)  # a loopback dev server: plain http is fine
        assert ignored.status == 303 and "Secure" not in (ignored.getheader("set-cookie") or "")
        trusted = login(proxied_port, **forwarded)
        assert trusted.status == 303
        assert "Secure" in (trusted.getheader("set-cookie") or ""), trusted.getheaders()
        # Behind a proxy whose clients came over plain http: refused, nothing set.
        refused = login(
            proxied_port, **{"X-Forwarded-Proto": "http", "X-Forwarded-For": "198.51.100.7"}
        )
        assert refused.status == 403 and refused.getheader("set-cookie") is None
        for response in (ignored, trusted, refused):
            assert response.getheader("server") is None, response.getheaders()
            assert response.getheader("x-content-type-options") == "nosniff"
    finally:
        for server in (plain, proxied):
            server.terminate()
            server.wait(10)
