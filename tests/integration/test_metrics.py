"""Prometheus metrics: what workers, the service and the reconciler record."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from queue_core import PermanentJobError, Queue
from queue_core.enqueue.service import JobService
from queue_core.index import IndexRepair
from queue_core.telemetry.metrics import Metrics
from tests.support.aio import running, wait_for_status
from tests.support.workers import REPO, worker_env


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


async def test_worker_and_service_count_each_outcome_by_job_type(queue: Queue) -> None:
    metrics = Metrics()
    service = JobService(queue.store, queue.index, metrics=metrics)

    async def handler(job: dict[str, Any]) -> dict[str, Any]:
        if job["input"]["kind"] == "permanent":
            raise PermanentJobError("no")
        if job["input"]["kind"] == "flaky" and job["attempts"] == 1:
            raise RuntimeError("once")
        return {}

    jobs = [await service.create("m", {"kind": k}) for k in ("ok", "ok", "flaky", "permanent")]
    runner = queue.runner(metrics=metrics)
    runner.register_handler("m", handler)
    async with running(runner):
        for job in jobs:
            await wait_for_status(queue.job_service, job["id"], {"succeeded", "failed"})
        await runner._outcomes.flush()

    assert sample(metrics, "hybridq_jobs_enqueued_total", job_type="m") == 4
    assert sample(metrics, "hybridq_jobs_succeeded_total", job_type="m") == 3
    assert sample(metrics, "hybridq_jobs_retried_total", job_type="m") == 1
    assert sample(metrics, "hybridq_jobs_failed_total", job_type="m") == 1
    claimed = sum(
        sample(metrics, "hybridq_jobs_claimed_total", job_type="m", source=s)
        for s in ("redis", "postgres")
    )
    assert claimed == 5  # four first attempts and one retry
    assert sample(metrics, "hybridq_handler_duration_seconds_count", job_type="m") == 5
    assert sample(metrics, "hybridq_enqueue_to_start_seconds_count", job_type="m") == 5


async def test_reconciler_counts_its_repairs_by_kind(queue: Queue) -> None:
    metrics = Metrics()
    from queue_core.maintenance.reconciler import Reconciler

    job = await queue.job_service.create("r", {})
    reconciler = Reconciler(
        queue.store, queue.index, IndexRepair(queue.index), queue.settings, metrics=metrics
    )
    await reconciler.run_once()
    await queue.redis.delete(queue.index.keys_for("r").ready)
    await reconciler.run_once()
    assert sample(metrics, "hybridq_reconciler_repairs_total", kind="reindexed") == 1
    assert sample(metrics, "hybridq_reconciler_repairs_total", kind="indexes_rebuilt") == 1
    assert job["status"] == "queued"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_worker_serves_metrics_on_its_metrics_port(queue: Queue, tmp_path: Path) -> None:
    job = await queue.job_service.create("recorded", {"n": 1})
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "queue_core",
            "worker",
            "--handlers",
            "tests.support.recording",
            "--metrics-port",
            str(port),
        ],
        env=worker_env(queue.settings, tmp_path / "rec.log"),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_for_status(queue.job_service, job["id"], {"succeeded"})
        text = ""
        for _ in range(50):
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
            text = text.decode()
            if 'hybridq_jobs_succeeded_total{job_type="recorded"} 1.0' in text:
                break
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(20)
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {
        "hybridq_jobs_claimed",
        "hybridq_jobs_succeeded",
        "hybridq_handler_duration_seconds",
        "hybridq_redis_fallback",
    } <= names
    assert 'hybridq_jobs_succeeded_total{job_type="recorded"} 1.0' in text
