"""S7: API enqueue load through the real server, measured by bench/api_load.py (its own
module, run as ``python -m bench.api_load --json PATH``); this only runs it and picks out
requests/s and p99 for single and batch enqueue. Without that module S7 is reported as
"not available"."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .sandbox import REPO


def available() -> bool:
    return importlib.util.find_spec("bench.api_load") is not None


def run_api_load(
    run_dir: Path, *, clients: int | None, seconds: float | None, timeout: float
) -> dict[str, Any]:
    if not available():
        return {"status": "not available", "reason": "bench/api_load.py is not there"}
    out = run_dir / "api_load.json"
    cmd = [sys.executable, "-m", "bench.api_load", "--json", str(out)]
    if clients is not None:
        cmd += ["--clients", str(clients)]
    if seconds is not None:
        cmd += ["--seconds", f"{seconds:g}"]
    log = run_dir / "api_load.log"
    with open(log, "wb") as f:
        try:
            proc = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"status": "failed", "reason": f"timed out after {timeout:g}s (see {log})"}
    command = "python " + " ".join(cmd[1:])
    if proc.returncode != 0 or not out.exists():
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        return {"status": "failed", "command": command,
                "reason": f"exit {proc.returncode}: {' | '.join(tail)}"}
    raw = json.loads(out.read_text())
    return {"status": "ok", "command": command, "clients": raw.get("clients"),
            "batch_size": raw.get("batch_size"), "single": _figures(raw, "single"),
            "batch": _figures(raw, "batch"), "raw": raw}


def _figures(raw: dict[str, Any], mode: str) -> dict[str, float | None]:
    """requests/s, jobs/s, p50 and p99 of one phase of api_load.py's JSON
    (``{"phases": [{"phase": "single", "requests_per_second": ..., "latency_ms": {...}}]}``)."""
    for phase in raw.get("phases", []):
        if phase.get("phase") == mode:
            latency = phase.get("latency_ms") or {}
            return {
                "requests_per_s": phase.get("requests_per_second"),
                "jobs_per_s": phase.get("jobs_per_second"),
                "p50_ms": latency.get("p50"),
                "p99_ms": latency.get("p99"),
                "errors": sum((phase.get("errors") or {}).values()),
            }
    return {"requests_per_s": None, "jobs_per_s": None, "p50_ms": None, "p99_ms": None}
