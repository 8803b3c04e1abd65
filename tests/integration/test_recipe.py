"""docs/adding-a-job-type.md, followed to the letter on a scratch job type: its code blocks
are applied, as written, to a copy of handlers/, and the result runs end to end: the
recipe's tests pass, `hybridq contracts` regenerates the table with one new row, a
validating enqueue accepts good input and refuses bad input, and a worker runs the job to
an output of the declared shape. A recipe that drifts from the code fails here."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from queue_core import Queue
from queue_core.cli import contracts_table
from queue_core.contracts import load_contracts
from tests.support.aio import wait_for_status
from tests.support.workers import REPO, worker_env

RECIPE = REPO / "docs" / "adding-a-job-type.md"
TEST_BLOCK = "tests/unit/test_job_handlers.py"


def labelled_blocks() -> dict[str, str]:
    """The recipe's ```python blocks whose first line is a ``# <where>`` label."""
    blocks = re.findall(r"^```python\n# ([^\n]+)\n(.*?)^```", RECIPE.read_text(), re.M | re.S)
    return {label: body for label, body in blocks}


def place(source: str, code: str, *, before: str | None = None) -> str:
    """``code`` with its import lines hoisted under ``from __future__``; the rest before
    ``before`` (or at the end)."""
    lines = code.splitlines()
    imports = [ln for ln in lines if ln.startswith(("from ", "import "))]
    rest = "\n".join(ln for ln in lines if ln not in imports).strip("\n")
    future = "from __future__ import annotations\n"
    assert future in source
    source = source.replace(future, future + "".join(f"{i}\n" for i in imports), 1)
    if not rest:
        return source
    if before is None:
        return source.rstrip("\n") + "\n\n" + rest + "\n"
    assert before in source, f"the recipe expects {before!r} in the file"
    return source.replace(before, rest + "\n" + before, 1)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of handlers/ with the recipe applied, in a folder that shadows the repo's."""
    root = tmp_path_factory.mktemp("recipe")
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "handlers", root / "handlers", ignore=ignore)
    blocks = labelled_blocks()
    where = {
        "handlers/domain.py: the service, before the Services dataclass": (
            "domain.py", "@dataclass(frozen=True)\nclass Services"),
        "handlers/domain.py: a field of Services": ("domain.py", None),
        "handlers/job_handlers.py": ("job_handlers.py", None),
        "handlers/__init__.py": ("__init__.py", None),  # imports only
        "handlers/__init__.py: in register()": ("__init__.py", "\n\n__all__"),
    }
    assert set(blocks) == {*where, TEST_BLOCK}, f"the recipe's labelled blocks: {sorted(blocks)}"
    for label, (name, before) in where.items():
        path = root / "handlers" / name
        path.write_text(place(path.read_text(), blocks[label], before=before))
    (root / "test_send_invoice.py").write_text(blocks[TEST_BLOCK])
    return root


def scratch_env(scratch: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the scratch handlers first on the
    path, shadowing the repository's, and no handlers module set."""
    env = dict(os.environ if base is None else base)
    env.pop("HYBRIDQ_HANDLERS_MODULE", None)
    env["PYTHONPATH"] = f"{scratch}{os.pathsep}{REPO}"
    return env


def run(
    scratch: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=scratch,
        env=env or scratch_env(scratch),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_recipes_handler_tests_pass(scratch: Path) -> None:
    result = run(scratch, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 "-o", "asyncio_mode=auto", "test_send_invoice.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_the_regenerated_contract_table_differs_by_the_new_row_only(scratch: Path) -> None:
    result = run(scratch, "-m", "queue_core", "contracts", "--handlers", "handlers",
                 "--format", "markdown")
    assert result.returncode == 0, result.stderr
    before = contracts_table.markdown(load_contracts("handlers")).splitlines()
    after = result.stdout.rstrip("\n").splitlines()
    added = [line for line in after if line not in before]
    assert added == [
        "| `send_invoice` | `{invoice_id: string 1..200 chars}` | `60 s` "
        "| `handlers.job_handlers.handle_send_invoice` "
        "| `{invoice_id: string, delivery_id: string}` |"
    ]
    assert [line for line in before if line not in after] == []


async def test_a_validating_enqueue_and_a_worker_run_the_new_type(
    scratch: Path, queue: Queue, tmp_path: Path
) -> None:
    env = scratch_env(scratch, worker_env(queue.settings, tmp_path / "unused.log"))

    def hybridq(*args: str) -> subprocess.CompletedProcess[str]:
        return run(scratch, "-m", "queue_core", *args, env=env)

    bad = hybridq("enqueue", "send_invoice", "--input", '{"invoice_id": 7}', "--handlers",
                  "handlers")
    assert bad.returncode == 2 and "input for send_invoice: invoice_id" in bad.stderr, bad
    good = hybridq("enqueue", "send_invoice", "--input", '{"invoice_id": "inv-42"}',
                   "--user-id", "user-1", "--handlers", "handlers")
    assert good.returncode == 0, good.stderr
    job_id = json.loads(good.stdout)["id"]

    worker = subprocess.Popen(
        [sys.executable, "-m", "queue_core", "worker", "--handlers", "handlers"],
        cwd=scratch, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        done = await wait_for_status(queue.job_service, job_id, {"succeeded", "failed"})
    finally:
        worker.terminate()
        out, _ = worker.communicate(timeout=30)
    assert done["status"] == "succeeded", (done["last_error"], out)
    assert set(done["output"]) == {"invoice_id", "delivery_id"}
    assert done["output"]["invoice_id"] == "inv-42"
    assert worker.returncode == 0, out
