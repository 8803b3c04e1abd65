"""A handler that freezes its whole worker process (C code holding the GIL, emulated with
``sys.setswitchinterval`` and a busy loop) for twice the lease (3 s: a backstop that starts
slowly on a busy machine still has a lease to do it in): no thread of the worker can
renew anything. The lease backstop, a process of its own, keeps the leases: the canaries
beside the frozen handler run once, nothing is rescued. The control run without the
backstop shows that the freeze is real: there the leases expire and the canaries run twice.
"""

from __future__ import annotations

import pytest

from queue_core import Queue
from tests.support.aio import mark_index_complete
from tests.support.fleet import WorkerFleet, reconciler_running
from tests.support.monitor import JobsMonitor

CANARIES = 5
LEASE = 3.0


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("backstop", [True, False], ids=["with-backstop", "control-without"])
async def test_a_frozen_worker_keeps_its_leases_through_its_backstop(
    queue: Queue, tmp_path: pytest.TempPathFactory, backstop: bool
) -> None:
    settings = queue.settings.model_copy(update={"lease_seconds": LEASE})
    # Freezes once the canaries have started, and until they are done.
    kind = {"kind": "holds_the_gil_later", "seconds": 2 * LEASE}
    frozen = await queue.job_service.create("hostile", kind, None, 1, 0)
    canaries = [
        (await queue.job_service.create("canary", {"n": n, "sleep": LEASE}, max_retries=3))["id"]
        for n in range(CANARIES)
    ]
    # Indexed: the worker claims through Redis (no index rebuild holding the reconcile lock).
    await mark_index_complete(queue, "hostile", "hostile_sync", "canary", "stubborn")
    monitor = JobsMonitor(settings)
    try:
        async with (
            reconciler_running(queue, settings) as reconciler,
            WorkerFleet(
                settings,
                tmp_path / "executions.log",  # type: ignore[operator]
                tmp_path,  # type: ignore[arg-type]
                concurrency=10,
                handlers="tests.support.hostile",
                HYBRIDQ_LEASE_BACKSTOP=str(backstop).lower(),
            ) as fleet,
        ):
            fleet.start(1)
            settled = await monitor.wait_settled(timeout=60)
            rows = await monitor.fetch_retrying(
                "SELECT id::text AS id, status, attempts, last_error FROM jobs"
            )
    finally:
        await monitor.close()
    jobs = {r["id"]: r for r in rows}
    report = f"{reconciler}\n{fleet.log_text()[-4000:]}"
    assert settled, report
    attempts = [jobs[c]["attempts"] for c in canaries]
    if backstop:
        assert reconciler.leases_rescued == 0, report
        assert attempts == [1] * CANARIES, report
        assert jobs[frozen["id"]]["last_error"].startswith("TimeoutError"), report
        assert "the backstop renews this worker's leases" in fleet.log_text(), report
    else:
        # The frozen worker's leases expired: the canaries were rescued and ran again.
        assert reconciler.leases_rescued > 0 and max(attempts) == 2, report
