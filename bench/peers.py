"""S1-S3 side by side with other queues, through the shared peer harness.

The harness (default ../shared/bench-peers; --peers-harness PATH or HYBRIDQ_BENCH_PEERS) is
not part of this repository and is only run in place. Peers live in their own virtualenv,
.bench-venv, made here when missing or stale (bench/requirements-peers.txt plus hybridq
itself, editable); they are never dependencies of hybridq.

The harness runs as a subprocess, once per group of peers: the fast queues at a large N,
the slow ones (they drain at 170-250 jobs/s) at a small N so the whole run stays bounded.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .sandbox import REPO, Servers

VENV = REPO / ".bench-venv"
VENV_PYTHON = VENV / "bin" / "python"
REQUIREMENTS = REPO / "bench" / "requirements-peers.txt"
ADAPTER = "bench.peer_adapter:HybridqAdapter"
HYBRIDQ = "hybridq"


def harness_path(option: str | None) -> Path:
    chosen = option or os.environ.get("HYBRIDQ_BENCH_PEERS") or str(REPO.parent / "shared"
                                                                       / "bench-peers")
    return Path(chosen).resolve()


@dataclass(frozen=True)
class PeerGroup:
    label: str
    peers: list[str]  # harness names, or ADAPTER for hybridq
    n: int
    timeout: float
    s3_jobs: int


def ensure_venv(log: Path) -> Path:
    """Create or update .bench-venv when it is missing or its requirements changed."""
    stamp = VENV / ".bench-installed"
    digest = hashlib.sha256(
        REQUIREMENTS.read_bytes() + (REPO / "pyproject.toml").read_bytes()
    ).hexdigest()
    if VENV_PYTHON.exists() and stamp.exists() and stamp.read_text() == digest:
        return VENV_PYTHON
    print(f"[peers] preparing {VENV.name} (pip log: {log})", flush=True)
    steps = [
        [sys.executable, "-m", "venv", str(VENV)],
        [str(VENV_PYTHON), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)],
        [str(VENV_PYTHON), "-m", "pip", "install", "-q", "-e", str(REPO)],
    ]
    with open(log, "ab") as f:
        for step in steps[0 if not VENV_PYTHON.exists() else 1 :]:
            f.write(f"$ {' '.join(step)}\n".encode())
            f.flush()
            if subprocess.run(step, cwd=REPO, stdout=f, stderr=subprocess.STDOUT).returncode:
                raise RuntimeError(f"{' '.join(step[:4])}... failed; see {log}")
    stamp.write_text(digest)
    return VENV_PYTHON


def run_group(
    group: PeerGroup, harness: Path, servers: Servers, out_dir: Path, scenarios: list[str]
) -> dict[str, Any]:
    """One harness run; returns its results.json (parsed) plus the command and wall time."""
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        str(harness / "bench.py"),
        "--peers", ",".join(group.peers),
        "--scenarios", ",".join(scenarios),
        "--n", str(group.n),
        "--timeout", f"{group.timeout:g}",
        "--s3-jobs", str(group.s3_jobs),
        "--max-total", f"{max(600.0, 8 * group.timeout * len(group.peers)):g}",
        "--out", str(out_dir),
    ]
    cmd = [str(VENV_PYTHON), "-P", "-m", "bench.harness_main", *args]
    env = dict(os.environ)
    env.update(servers.harness_env())
    env.update(DATABASE_URL=servers.database_url, REDIS_URL=servers.redis_url,
               PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    started = time.monotonic()
    with open(out_dir / "harness.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            print(f"[peers:{group.label}] {line.decode(errors='replace').rstrip()}", flush=True)
        code = proc.wait()
    found = sorted(out_dir.glob("*/results.json"))
    command = f"{VENV.name}/bin/python {harness / 'bench.py'} " + " ".join(args[1:])
    result: dict[str, Any] = {
        "command": command, "exit_code": code,
        "wall_seconds": round(time.monotonic() - started, 1), "n": group.n,
        "timeout": group.timeout, "s3_jobs": group.s3_jobs,
    }
    if not found:
        result["error"] = f"the harness wrote no results.json (exit {code}; see {out_dir})"
        return result
    result["results_json"] = str(found[-1])
    result["raw"] = json.loads(found[-1].read_text())
    return result


OUTAGE_MARKERS = ("shutting down", "CannotConnectNow", "ConnectionRefused", "Connection refused",
                  "BackendUnavailable", "ConnectionDoesNotExist", "AdminShutdown",
                  "starting up", "ConnectionError", "InternalClientError")


def peers_hit_by_outage(run: dict[str, Any]) -> list[str]:
    """Peers of a harness run that failed because PostgreSQL or Redis went away."""
    hit = []
    for spec, peer in (run.get("raw") or {}).get("peers", {}).items():
        errors = [str(peer.get("error", ""))] + [
            str(e) for r in peer.get("runs", []) for e in (r.get("errors") or {}).values()]
        if any(m in e for e in errors for m in OUTAGE_MARKERS):
            hit.append(spec)
    return hit


def summarize(group_runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per queue: the figures S1-S3 report (median over the harness's repeats), with the N
    it ran at and any timeout or failure noted. A queue in several runs (a re-run after an
    outage) takes its figures from the last."""
    queues: dict[str, dict[str, Any]] = {}
    for run in group_runs:
        raw = run.get("raw") or {}
        for spec, peer in raw.get("peers", {}).items():
            name = HYBRIDQ if spec == ADAPTER else spec
            runs = peer.get("runs", [])
            q: dict[str, Any] = {
                "n": run["n"], "s3_jobs": run["s3_jobs"], "harness_timeout_s": run["timeout"],
                "has_batch_api": peer.get("has_batch_api"),
                "versions": peer.get("versions"), "settings": peer.get("settings"),
                "notes": _notes(peer, runs),
            }
            for key, path in FIGURES.items():
                q[key] = _median(runs, path)
            queues[name] = q
    return queues


FIGURES: dict[str, tuple[str, ...]] = {
    "S1_one_jobs_per_s": ("S1", "one", "jobs_per_s"),
    "S1_batch_jobs_per_s": ("S1", "batch", "jobs_per_s"),
    "S2_1p_jobs_per_s": ("S2", "1", "jobs_per_s"),
    "S2_2p_jobs_per_s": ("S2", "2", "jobs_per_s"),
    "S2_1p_incl_startup_jobs_per_s": ("S2", "1", "jobs_per_s_incl_startup"),
    "S2_2p_incl_startup_jobs_per_s": ("S2", "2", "jobs_per_s_incl_startup"),
    "S2_1p_startup_s": ("S2", "1", "startup_seconds"),
    "S2_2p_startup_s": ("S2", "2", "startup_seconds"),
    "S3_p50_ms": ("S3", "p50_ms"),
    "S3_p95_ms": ("S3", "p95_ms"),
    "S3_p99_ms": ("S3", "p99_ms"),
    "S3_max_ms": ("S3", "max_ms"),
    "S3_enqueue_call_ms": ("S3", "enqueue_call_mean_ms"),
}


def _get(node: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _median(runs: list[dict[str, Any]], path: tuple[str, ...]) -> float | None:
    values = [v for r in runs if isinstance(v := _get(r, path), int | float) and v == v]
    return float(statistics.median(values)) if values else None


def _notes(peer: dict[str, Any], runs: list[dict[str, Any]]) -> list[str]:
    notes = [f"failed: {peer['error']}"] if peer.get("error") else []
    for r in runs:
        for where, err in (r.get("errors") or {}).items():
            notes.append(f"{where} failed: {err}")
        for path in (("S1", "one"), ("S1", "batch"), ("S2", "1"), ("S2", "2"), ("S3",)):
            sub = _get(r, path)
            if isinstance(sub, dict) and sub.get("status") == "timeout":
                notes.append(f"{'-'.join(path)} timeout: "
                             f"{sub.get('completed', sub.get('jobs'))} of {sub.get('jobs')} done")
        dups = sum(int(_get(r, p) or 0) for p in (("S2", "1", "duplicate_executions"),
                                                   ("S2", "2", "duplicate_executions"),
                                                   ("S3", "duplicate_executions")))
        if dups:
            notes.append(f"{dups} duplicate executions")
    return notes
