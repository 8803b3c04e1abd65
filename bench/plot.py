"""Charts of a ``python -m bench`` result (runs in .bench-venv, which has matplotlib):

    .bench-venv/bin/python -m bench.plot bench/results/<stamp>/results.json --out docs/

- bench-throughput.png: S2 drain rate (steady, jobs/s) against worker processes (1, 2), one
  line per queue;
- bench-latency.png: S3 pickup latency p50 / p95 / p99 per queue (log scale: the polling
  queues sit two orders of magnitude above the others).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def load_queues(path: Path) -> tuple[dict[str, Any], str]:
    results = json.loads(path.read_text())
    queues = (results.get("peers") or {}).get("queues") or {}
    if not queues:
        raise SystemExit(f"{path} has no S1-S3 results (peers.queues)")
    host = results.get("host", {})
    caption = (f"{results.get('started', '')[:16]} · {host.get('nproc')} CPUs "
               f"({host.get('cpu_model', '?')}) · no-op jobs, C={results['profile']['concurrency']}"
               " per worker process")
    return queues, caption


def plot_throughput(queues: dict[str, Any], caption: str, out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    for name, q in sorted(queues.items(), key=lambda kv: -(kv[1].get("S2_2p_jobs_per_s") or 0)):
        points = [(n, q.get(f"S2_{n}p_jobs_per_s")) for n in (1, 2)]
        points = [(n, v) for n, v in points if v is not None]
        if not points:
            continue
        style = {"linewidth": 3, "color": "black"} if name == "hybridq" else {}
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                label=f"{name} (N={q['n']:,})", **style)
    ax.set_xticks([1, 2])
    ax.set_xlabel("worker processes")
    ax.set_ylabel("drain rate, steady (jobs/s)")
    ax.set_title("S2: draining a filled queue")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.text(0.01, 0.01, caption, fontsize=7, alpha=0.7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = out / "bench-throughput.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_latency(queues: dict[str, Any], caption: str, out: Path) -> Path:
    import matplotlib.pyplot as plt

    names = [n for n, q in sorted(queues.items(), key=lambda kv: kv[1].get("S3_p50_ms") or 1e9)
             if q.get("S3_p50_ms") is not None]
    fig, ax = plt.subplots(figsize=(8, 5))
    width = 0.27
    for k, pct in enumerate(("p50", "p95", "p99")):
        values = [queues[n][f"S3_{pct}_ms"] or 0 for n in names]
        xs = [i + (k - 1) * width for i in range(len(names))]
        bars = ax.bar(xs, values, width, label=pct)
        ax.bar_label(bars, fmt="%.1f", fontsize=6, rotation=90, padding=2)
    ax.set_xticks(range(len(names)), names)
    ax.set_yscale("log")
    ax.set_ylabel("pickup latency (ms, log scale)")
    ax.set_title("S3: enqueue → handler start, 50 jobs/s into an idle worker")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    fig.text(0.01, 0.01, caption, fontsize=7, alpha=0.7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = out / "bench-latency.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.plot", description=__doc__)
    parser.add_argument("results", type=Path, help="results.json of python -m bench")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="folder for the PNGs")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    queues, caption = load_queues(args.results)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in (plot_throughput(queues, caption, args.out),
                 plot_latency(queues, caption, args.out)):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
