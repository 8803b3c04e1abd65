"""Running the hybridq command as a user would, for the CLI tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from queue_core import Settings

from .workers import REPO, worker_env


def hybridq(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """stdin is /dev/null: a command that wanted to ask would otherwise hang on a terminal."""
    return subprocess.run(
        [sys.executable, "-m", "queue_core", *args],
        env=worker_env(settings, Path("/dev/null"), **env),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert text in lines[0] and "Traceback" not in result.stderr
