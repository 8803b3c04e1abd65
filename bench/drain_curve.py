"""Drain throughput against worker processes: 20,000 no-op jobs drained by 1, 2, 4 and 8
``hybridq worker`` processes (concurrency 10 each), for docs/capacity.md.

    python -m bench.drain_curve [--jobs N] [--procs 1,2,4,8] [--json PATH]

Prints jobs/s (steady: jobs / (last end - first start)) per process count; never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from .sandbox import Servers, sandbox_queue
from .workers import Events, WorkerProcess

CONCURRENCY = 10
FILL_CHUNK = 5000


async def drain_with(servers: Servers, jobs: int, procs: int, run_dir: Path) -> dict[str, float]:
    async with sandbox_queue(servers) as queue:
        await queue.reconciler().rebuild_index(["noop"])  # as on a running deployment
        now = time.time()
        for start in range(0, jobs, FILL_CHUNK):
            await queue.job_service.create_many(
                [
                    {"job_type": "noop", "input": {"i": i, "t": now}}
                    for i in range(start, min(start + FILL_CHUNK, jobs))
                ]
            )
        events = Events(run_dir / f"events-{procs}.log")
        events.path.write_bytes(b"")
        workers = [
            WorkerProcess(queue.settings, events.path, CONCURRENCY, run_dir / f"w-{procs}-{n}.log")
            for n in range(procs)
        ]
        launched = min(w.launched for w in workers)
        try:
            deadline = time.monotonic() + 300
            # polling a file: there is nothing to await
            while events.poll() < jobs and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        finally:
            for worker in workers:
                worker.stop()
        done = len(events.seen)
        first, last = min(events.starts), max(events.ends)
        return {
            "procs": procs,
            "jobs": done,
            "duplicates": events.duplicates,
            "jobs_per_s": round(done / (last - first)),
            "jobs_per_s_incl_startup": round(done / (last - launched)),
        }


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.drain_curve")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--procs", default="1,2,4,8")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    servers = Servers.from_env()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for procs in (int(p) for p in args.procs.split(",")):
            row = await drain_with(servers, args.jobs, procs, Path(tmp))
            rows.append(row)
            print(
                f"{procs} worker process(es): {row['jobs_per_s']:,} jobs/s steady, "
                f"{row['jobs_per_s_incl_startup']:,} incl. start-up, "
                f"{row['duplicates']} duplicates",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
