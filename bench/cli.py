"""``python -m bench`` (also ``make bench``): hybridq's benchmarks, with peers side by side.

Against DATABASE_URL / REDIS_URL (default: the local servers); every hybridq scenario runs in
its own fresh schema and Redis namespace, removed afterwards. No-op jobs throughout.

  S1-S3  enqueue rate, drain rate (1 and 2 worker processes, with and without start-up),
         pickup latency: hybridq and peer queues through the shared harness (peers.py)
  S4     drain rate at a small vs a large backlog (backlog.py)
  S5     Redis memory per indexed job (backlog.py)
  S6     reconciler run_once() on a large backlog: index complete, index lost (backlog.py)
  S7     API enqueue through the real server (bench/api_load.py, api_scenario.py)
  S8     create() from 64 concurrent callers, and raw INSERT+COMMIT (enqueue.py)

Prints the tables and writes JSON (default bench/results/<stamp>/results.json). A benchmark
reports; it never asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from queue_core import Settings

from . import api_scenario, backlog, enqueue, peers, report
from .machine import host_info, package_versions, server_info
from .sandbox import OUTAGES, REPO, Servers, wait_for_servers

ALL_SCENARIOS = ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8")
FAST_PEERS = ["pgqueuer"]
SLOW_PEERS = ["procrastinate", "arq", "rq-simple"]


@dataclass(frozen=True)
class Profile:
    fast_n: int  # S1/S2 jobs for hybridq and the fast peers
    fast_timeout: float
    slow_n: int  # S1/S2 jobs for the slow peers (170-250 jobs/s)
    slow_timeout: float
    s3_jobs: int
    small_backlog: int
    large_backlog: int
    drain_jobs: int
    memory_jobs: int
    concurrency: int
    s8_callers: int
    s8_seconds: float
    api_seconds: float


FULL = Profile(fast_n=20_000, fast_timeout=180, slow_n=3_000, slow_timeout=90, s3_jobs=500,
               small_backlog=10_000, large_backlog=1_000_000, drain_jobs=10_000,
               memory_jobs=100_000, concurrency=10, s8_callers=64, s8_seconds=5,
               api_seconds=10)
QUICK = Profile(fast_n=2_000, fast_timeout=60, slow_n=300, slow_timeout=60, s3_jobs=100,
                small_backlog=5_000, large_backlog=100_000, drain_jobs=5_000,
                memory_jobs=100_000, concurrency=10, s8_callers=64, s8_seconds=2,
                api_seconds=3)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--quick", action="store_true",
                   help="smaller N everywhere, 100k instead of 1M backlogs (a ~2 min smoke run)")
    p.add_argument("--skip-peers", action="store_true",
                   help="S1-S3 for hybridq alone (still through the harness, in .bench-venv)")
    p.add_argument("--scenarios", default=",".join(ALL_SCENARIOS),
                   help="comma list of S1..S8 (default: all)")
    p.add_argument("--json", metavar="PATH", help="where to write the results "
                   "(default bench/results/<stamp>/results.json)")
    p.add_argument("--peers-harness", metavar="PATH", help="the shared peer harness "
                   "(default $HYBRIDQ_BENCH_PEERS or ../shared/bench-peers)")
    p.add_argument("--no-plot", action="store_true",
                   help="do not draw the PNGs into the run folder")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    chosen = [s.strip().upper() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(ALL_SCENARIOS))
    if unknown:
        raise SystemExit(f"unknown scenario(s) {', '.join(unknown)}; known: S1..S8")
    run = BenchRun(args, chosen, sys.argv[1:] if argv is None else argv)
    sys.exit(run.execute())


class BenchRun:
    def __init__(self, args: argparse.Namespace, scenarios: list[str], argv: list[str]) -> None:
        self.args = args
        self.scenarios = scenarios
        self.profile = QUICK if args.quick else FULL
        self.servers = Servers.from_env()
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.run_dir = REPO / "bench" / "results" / stamp
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.json_path = Path(args.json).resolve() if args.json else self.run_dir / "results.json"
        self.started = time.monotonic()
        self.results: dict[str, Any] = {
            "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(["python -m bench", *argv]),
            "scenarios": scenarios,
            "profile": {"name": "quick" if args.quick else "full", **asdict(self.profile)},
            "host": host_info(),
            "servers": asyncio.run(server_info(self.servers)),
            "versions": package_versions(),
            "settings": _settings_summary(),
            "run_dir": str(self.run_dir),
            "part_seconds": {},
        }

    def execute(self) -> int:
        print(f"hybridq bench ({self.results['profile']['name']}): {', '.join(self.scenarios)}"
              f"; output {self.run_dir}", flush=True)
        if "S8" in self.scenarios:
            self._part("S8", self._s8)
        if {"S1", "S2", "S3"} & set(self.scenarios):
            self._part("peers", self._peers)
        if "S5" in self.scenarios:
            self._part("S5", lambda: asyncio.run(
                backlog.memory_per_job(self.servers, self.profile.memory_jobs)))
        if {"S4", "S6"} & set(self.scenarios):
            self._part("S4+S6", self._backlogs, [s for s in ("S4", "S6") if s in self.scenarios])
        if "S7" in self.scenarios:
            self._part("S7", self._s7)
        self.results["total_seconds"] = round(time.monotonic() - self.started, 1)
        self.results["host"]["loadavg_end"] = os.getloadavg()
        self._save()
        self._print_tables()
        if not self.args.no_plot:
            self._plot()
        return 0

    def _part(self, name: str, func: Callable[[], Any], keys: list[str] | None = None) -> None:
        """Run one part; a failure is recorded, not raised. A part that fails because a
        server went away (the machine's PostgreSQL and Redis are shared with test suites
        that restart them) is run once more when both answer again."""
        print(f"\n== {name} (at {time.monotonic() - self.started:.0f}s)", flush=True)
        started = time.monotonic()
        for attempt in (1, 2):
            try:
                value = func()
                if value is not None:
                    self.results[name] = value
                break
            except Exception as exc:  # noqa: BLE001 - one failed part must not lose the others
                traceback.print_exc()
                if attempt == 1 and isinstance(exc, OUTAGES):
                    print(f"  {name}: a server went away ({exc!r}); retrying once when both "
                          "answer again", flush=True)
                    self.results.setdefault("retried", {})[name] = repr(exc)
                    if asyncio.run(wait_for_servers(self.servers)):
                        continue
                for key in keys or [name]:
                    self.results[key] = {"error": repr(exc)}
                break
        seconds = round(time.monotonic() - started, 1)
        self.results["part_seconds"][name] = seconds
        print(f"== {name} took {seconds:.0f}s", flush=True)
        self._save()

    def _s8(self) -> dict[str, Any]:
        p = self.profile
        concurrent = asyncio.run(enqueue.concurrent_create(self.servers, p.s8_callers,
                                                           p.s8_seconds))
        print(f"  create() x {p.s8_callers} callers: {concurrent['jobs_per_s']:,.0f} jobs/s",
              flush=True)
        raw = asyncio.run(enqueue.raw_insert_commit(self.servers, p.s8_seconds))
        print(f"  raw INSERT+COMMIT: {raw['rows_per_s']:,.0f} rows/s", flush=True)
        raw_jobs = asyncio.run(
            enqueue.raw_insert_commit(self.servers, p.s8_seconds, into_jobs=True))
        print(f"  raw INSERT+COMMIT into jobs: {raw_jobs['rows_per_s']:,.0f} rows/s", flush=True)
        return {"concurrent": concurrent, "raw": raw, "raw_jobs": raw_jobs}

    def _peers(self) -> dict[str, Any]:
        harness = peers.harness_path(self.args.peers_harness)
        if not (harness / "bench.py").exists():
            return {"status": "not available", "reason": f"no peer harness at {harness}"}
        peers.ensure_venv(self.run_dir / "bench-venv-install.log")
        p = self.profile
        groups = [peers.PeerGroup("fast", [peers.ADAPTER] + ([] if self.args.skip_peers
                                                              else FAST_PEERS),
                                  p.fast_n, p.fast_timeout, p.s3_jobs)]
        if not self.args.skip_peers:
            groups.append(peers.PeerGroup("slow", SLOW_PEERS, p.slow_n, p.slow_timeout,
                                          p.s3_jobs))
        scenarios = [s for s in self.scenarios if s in ("S1", "S2", "S3")]
        runs = []
        for group in groups:
            run = peers.run_group(group, harness, self.servers,
                                  self.run_dir / f"peers-{group.label}", scenarios)
            runs.append(run)
            print(f"  peers '{group.label}' took {run['wall_seconds']:.0f}s", flush=True)
            hit = peers.peers_hit_by_outage(run)
            if hit and asyncio.run(wait_for_servers(self.servers)):
                print(f"  {', '.join(hit)} failed in a server outage: once more", flush=True)
                self.results.setdefault("retried", {})[f"peers-{group.label}"] = hit
                again = replace(group, label=f"{group.label}-retry", peers=hit)
                runs.append(peers.run_group(again, harness, self.servers,
                                            self.run_dir / f"peers-{again.label}", scenarios))
        return {"harness": str(harness), "groups": [
                    {k: v for k, v in r.items() if k != "raw"} for r in runs],
                "queues": peers.summarize(runs)}

    def _backlogs(self) -> None:
        p = self.profile
        do_s4, do_s6 = "S4" in self.scenarios, "S6" in self.scenarios
        common = {"concurrency": p.concurrency, "run_dir": self.run_dir}
        if do_s4:
            print(f"  S4 small backlog: {p.small_backlog:,}", flush=True)
            small = asyncio.run(backlog.backlog_drain(
                self.servers, p.small_backlog, p.drain_jobs, reconcile=False, **common))
        print(f"  large backlog: {p.large_backlog:,}", flush=True)
        large = asyncio.run(backlog.backlog_drain(
            self.servers, p.large_backlog, p.drain_jobs if do_s4 else 0, reconcile=do_s6,
            **common))
        if do_s4:
            self.results["S4"] = {"small": small, "large": large}
        if do_s6:
            self.results["S6"] = {
                "backlog": p.large_backlog, "fill": large["fill"],
                "rebuild_index_lost": large["rebuild_index_lost"],
                "run_once_index_complete": large["run_once_index_complete"],
                "ready_set_bytes_per_job": large.get("ready_set_bytes_per_job"),
            }

    def _s7(self) -> dict[str, Any]:
        result = api_scenario.run_api_load(self.run_dir, clients=None,
                                           seconds=self.profile.api_seconds, timeout=300)
        if result["status"] == "failed" and asyncio.run(wait_for_servers(self.servers)):
            print(f"  S7 failed ({result.get('reason')}); once more", flush=True)
            self.results.setdefault("retried", {})["S7"] = result.get("reason")
            result = api_scenario.run_api_load(self.run_dir, clients=None,
                                               seconds=self.profile.api_seconds, timeout=300)
        print(f"  S7: {result['status']} {result.get('reason', '')}", flush=True)
        return result

    def _save(self) -> None:
        self.results["finished"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        self.json_path.write_text(json.dumps(self.results, indent=2, default=str))

    def _print_tables(self) -> None:
        text = summary_text(self.results)
        (self.run_dir / "summary.md").write_text(text)
        print("\n" + text)
        print(f"results: {self.json_path}\nwall time: {self.results['total_seconds']:.0f}s")

    def _plot(self) -> None:
        if not peers.VENV_PYTHON.exists() or not (self.results.get("peers") or {}).get("queues"):
            return
        cmd = [str(peers.VENV_PYTHON), "-m", "bench.plot", str(self.json_path),
               "--out", str(self.run_dir)]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
        print(done.stdout.strip() or done.stderr.strip()[-500:])


def summary_text(results: dict[str, Any]) -> str:
    host, srv = results["host"], results["servers"]
    lines = [
        f"Machine: {host['nproc']} CPUs ({host['cpu_model']}), {host['platform']}, "
        f"Python {host['python']}; PostgreSQL {srv.get('postgres', {}).get('server_version')}"
        f" (fsync={srv.get('postgres', {}).get('fsync')}, synchronous_commit="
        f"{srv.get('postgres', {}).get('synchronous_commit')}); Redis "
        f"{srv.get('redis', {}).get('redis_version')}; load average at start "
        f"{host['loadavg'][0]:.2f}, at end {host.get('loadavg_end', [float('nan')])[0]:.2f}",
        f"Command: {results['command']}  (profile: {results['profile']['name']})",
    ]
    queues = (results.get("peers") or {}).get("queues")
    if queues:
        lines += ["", "S1-S3 per queue (N = jobs for S1/S2 in that queue's harness run; "
                  f"S3 = {results['profile']['s3_jobs']} jobs at 50/s):", "",
                  report.render_queues(queues)]
    elif results.get("peers"):
        p = results["peers"]
        lines += ["", f"S1-S3: {p.get('status', 'failed')}: {p.get('reason', p.get('error'))}"]
    if results.get("retried"):
        lines += ["", "Run again after a PostgreSQL/Redis outage: " + "; ".join(
            f"{k} ({v})" for k, v in results["retried"].items())]
    lines += ["", "Ratio: throughput = hybridq / best peer; latency = best peer / hybridq; "
              "> 1 means hybridq is better.", "",
              report.render(report.final_rows(results)), "",
              "Part wall times (s): " + ", ".join(f"{k} {v:.0f}"
                                                  for k, v in results["part_seconds"].items())]
    return "\n".join(lines) + "\n"


def _settings_summary() -> dict[str, Any]:
    """hybridq's settings as the workers run them (defaults plus the environment), without
    secrets."""
    s = Settings().model_dump(exclude={"api_tokens"})
    for key in ("database_url", "redis_url"):
        parts = urlsplit(s[key])
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
            s[key] = urlunsplit(parts._replace(netloc=netloc))
    return s
