"""The final table: per scenario, hybridq against the best peer and the issue's target.

Ratio: throughput = hybridq / best peer; latency = best peer / hybridq. Either way > 1 means
hybridq is better. The best peer is the highest rate, or the lowest latency, among the other
queues measured in the same run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

HYBRIDQ = "hybridq"
HEADER = ("scenario", "hybridq", "best peer (name, N)", "ratio", "target", "met?")


@dataclass
class Row:
    scenario: str
    hybridq: str
    best_peer: str = "—"
    ratio: str = "—"
    target: str = "—"
    met: str = "—"


def _num(value: float | None, digits: int = 0, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{unit}"


def _failed(err: str) -> str:
    return "failed: " + (err if len(err) <= 90 else err[:87] + "...")


def _met(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "no")


def _best(queues: dict[str, Any], key: str, lower: bool) -> tuple[str, float] | None:
    pick: Callable[..., Any] = min if lower else max
    candidates = [(v[key], name) for name, v in queues.items()
                  if name != HYBRIDQ and v.get(key) is not None]
    if not candidates:
        return None
    value, name = pick(candidates)
    return name, value


def peer_rows(queues: dict[str, Any]) -> list[Row]:
    hq = queues.get(HYBRIDQ, {})
    rows: list[Row] = []

    def compare(label: str, key: str, *, lower: bool = False, digits: int = 0, unit: str = "",
                target: str = "—", check: Callable[[float, float | None], bool] | None = None,
                ) -> None:
        mine = hq.get(key)
        best = _best(queues, key, lower)
        ratio = None
        if mine and best:
            ratio = (best[1] / mine) if lower else (mine / best[1])
        peer = "—" if best is None else (
            f"{_num(best[1], digits, unit)} ({best[0]}, N={queues[best[0]]['n']:,})")
        ok = check(mine, ratio) if (check and mine is not None) else None
        rows.append(Row(label, _num(mine, digits, unit), peer,
                        "n/a" if ratio is None else f"{ratio:.2f}×", target, _met(ok)))

    twice = "≥ 2× best peer"
    compare("S1 enqueue one-by-one (jobs/s)", "S1_one_jobs_per_s")
    compare("S1 enqueue batch of 1000 (jobs/s)", "S1_batch_jobs_per_s", target=twice,
            check=lambda m, r: r is not None and r >= 2)
    compare("S2 drain 1 proc, steady (jobs/s)", "S2_1p_jobs_per_s", target=twice,
            check=lambda m, r: r is not None and r >= 2)
    compare("S2 drain 2 procs, steady (jobs/s)", "S2_2p_jobs_per_s", target=twice,
            check=lambda m, r: r is not None and r >= 2)
    compare("S2 drain 1 proc, incl. start-up (jobs/s)", "S2_1p_incl_startup_jobs_per_s")
    compare("S2 drain 2 procs, incl. start-up (jobs/s)", "S2_2p_incl_startup_jobs_per_s")
    scaling = {n: {"scaling": q["S2_2p_jobs_per_s"] / q["S2_1p_jobs_per_s"]}
               for n, q in queues.items()
               if q.get("S2_1p_jobs_per_s") and q.get("S2_2p_jobs_per_s")}
    mine = scaling.get(HYBRIDQ, {}).get("scaling")
    best = _best(scaling, "scaling", lower=False)
    rows.append(Row("S2 drain 2 procs / 1 proc (steady)", _num(mine, 2, "×"),
                    "—" if best is None else f"{best[1]:.2f}× ({best[0]})", "—", "≥ 1.5×",
                    _met(None if mine is None else mine >= 1.5)))
    compare("S3 pickup latency p50 (ms)", "S3_p50_ms", lower=True, digits=1, target="≤ 3 ms",
            check=lambda m, r: m <= 3.0)
    compare("S3 pickup latency p95 (ms)", "S3_p95_ms", lower=True, digits=1)
    compare("S3 pickup latency p99 (ms)", "S3_p99_ms", lower=True, digits=1, target="≤ 5 ms",
            check=lambda m, r: m <= 5.0)
    return rows


def raw_percent_row(rows: list[Row], queues: dict[str, Any], s8: dict[str, Any] | None) -> None:
    """S1 one-by-one's target is relative to the raw INSERT+COMMIT rate measured in S8."""
    raw = (s8 or {}).get("raw", {}).get("rows_per_s")
    mine = queues.get(HYBRIDQ, {}).get("S1_one_jobs_per_s")
    for row in rows:
        if row.scenario.startswith("S1 enqueue one-by-one"):
            raw_jobs = (s8 or {}).get("raw_jobs", {}).get("rows_per_s")
            if raw and mine:
                row.target = f"≥ 90% of raw INSERT+COMMIT ({raw:,.0f}/s): is {mine / raw:.0%}"
                if raw_jobs:
                    row.target += f" ({mine / raw_jobs:.0%} of one into jobs)"
                row.met = _met(mine >= 0.9 * raw)
            elif raw:
                row.target = f"≥ 90% of raw INSERT+COMMIT ({raw:,.0f}/s)"
            else:
                row.target = "≥ 90% of raw INSERT+COMMIT (raw not measured)"


def own_rows(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    s4 = results.get("S4")
    if s4 and not s4.get("error"):
        small, large = s4.get("small", {}), s4.get("large", {})
        rate_s = small.get("drain", {}).get("jobs_per_s")
        rate_l = large.get("drain", {}).get("jobs_per_s")
        for part, rate in ((small, rate_s), (large, rate_l)):
            d = part.get("drain", {})
            rows.append(Row(
                f"S4 drain first {d.get('jobs', 0):,} at a {part.get('backlog', 0):,} backlog, "
                "1 proc (jobs/s)", _num(rate)))
        pct = rate_l / rate_s if rate_s and rate_l else None
        rows.append(Row(f"S4 {large.get('backlog', 0):,} / {small.get('backlog', 0):,} "
                        "backlog drain rate", "n/a" if pct is None else f"{pct:.0%}",
                        target="≥ 80%", met=_met(None if pct is None else pct >= 0.8)))
    elif s4:
        rows.append(Row("S4 drain at a small vs a large backlog", _failed(s4["error"])))
    s5 = results.get("S5")
    if s5 and not s5.get("error"):
        b = s5["bytes_per_job"]
        rows.append(Row(f"S5 Redis bytes per indexed job ({s5['jobs']:,} jobs, MEMORY USAGE)",
                        f"{b:.1f}", target="≤ 120", met=_met(b <= 120)))
    elif s5:
        rows.append(Row("S5 Redis bytes per indexed job", _failed(s5["error"])))
    s6 = results.get("S6")
    if s6 and not s6.get("error"):
        for label, key in (("index complete", "run_once_index_complete"),
                           ("index lost → full rebuild", "rebuild_index_lost")):
            sec = s6.get(key, {}).get("seconds")
            rows.append(Row(f"S6 reconciler run_once, {s6['backlog']:,} backlog, {label} (s)",
                            _num(sec, 2), target="≤ 30 s",
                            met=_met(None if sec is None else sec <= 30)))
    elif s6:
        rows.append(Row("S6 reconciler run_once", _failed(s6["error"])))
    rows += _api_rows(results.get("S7"))
    s8 = results.get("S8")
    if s8 and not s8.get("error"):
        c = s8["concurrent"]
        rows.append(Row(f"S8 create() from {c['callers']} concurrent callers (jobs/s)",
                        _num(c["jobs_per_s"]), target="≥ 10,000 jobs/s",
                        met=_met(c["jobs_per_s"] >= 10_000)))
        rows.append(Row("raw INSERT+COMMIT, 1 connection, sequential (rows/s)",
                        _num(s8["raw"]["rows_per_s"])))
        if "raw_jobs" in s8:
            rows.append(Row("the same into the jobs table (its indexes and checks) (rows/s)",
                            _num(s8["raw_jobs"]["rows_per_s"])))
    elif s8:
        rows.append(Row("S8 create() from concurrent callers", _failed(s8["error"])))
    return rows


def _api_rows(s7: dict[str, Any] | None) -> list[Row]:
    if not s7:
        return []
    if s7.get("status") != "ok":
        reason = f"{s7.get('status')}: {s7.get('reason', '')}"
        return [Row("S7 API enqueue", reason if len(reason) <= 90 else reason[:87] + "...")]
    rows = []
    clients = s7.get("clients")
    for mode, what in (("single", "POST /jobs"),
                       ("batch", f"POST /jobs/batch of {s7.get('batch_size')}")):
        f = s7.get(mode) or {}
        jobs = f" ({_num(f.get('jobs_per_s'))} jobs/s)" if mode == "batch" else ""
        rows.append(Row(f"S7 API {what}, {clients} clients: requests/s",
                        _num(f.get("requests_per_s")) + jobs))
        rows.append(Row(f"S7 API {what}: p99 (ms)", _num(f.get("p99_ms"), 1)))
    return rows


def final_rows(results: dict[str, Any]) -> list[Row]:
    queues = (results.get("peers") or {}).get("queues") or {}
    rows = peer_rows(queues) if queues else []
    raw_percent_row(rows, queues, results.get("S8"))
    return rows + own_rows(results)


def render(rows: list[Row]) -> str:
    cells = [HEADER] + [tuple(asdict(r).values()) for r in rows]
    widths = [max(len(str(c[i])) for c in cells) for i in range(len(HEADER))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


PEER_COLUMNS = (
    ("N", "n", 0), ("S1 one (jobs/s)", "S1_one_jobs_per_s", 0),
    ("S1 batch (jobs/s)", "S1_batch_jobs_per_s", 0), ("S2 1p (jobs/s)", "S2_1p_jobs_per_s", 0),
    ("S2 2p (jobs/s)", "S2_2p_jobs_per_s", 0),
    ("S2 1p incl. start-up", "S2_1p_incl_startup_jobs_per_s", 0),
    ("S2 2p incl. start-up", "S2_2p_incl_startup_jobs_per_s", 0),
    ("S3 p50 (ms)", "S3_p50_ms", 1), ("S3 p95 (ms)", "S3_p95_ms", 1),
    ("S3 p99 (ms)", "S3_p99_ms", 1),
)


def render_queues(queues: dict[str, Any]) -> str:
    header = ("queue", *(c[0] for c in PEER_COLUMNS), "notes")
    cells = [header]
    for name, q in queues.items():
        notes = "; ".join(q.get("notes") or []) or "—"
        cells.append((name, *(_num(q.get(key), d) for _, key, d in PEER_COLUMNS),
                       notes if len(notes) <= 90 else notes[:87] + "..."))
    widths = [max(len(str(c[i])) for c in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
