"""Run the shared peer harness's bench.py with this repository's ``bench`` package importable.

The harness folder holds a module named ``bench.py`` and puts that folder first on sys.path,
so ``--peers bench.peer_adapter:HybridqAdapter`` would find the harness's own bench.py under
the name ``bench``. Importing our package first (it is then in sys.modules) settles the name;
the harness itself runs unchanged, as ``__main__``.

    .bench-venv/bin/python -P -m bench.harness_main HARNESS/bench.py [harness arguments...]

(``-P``: no current directory on sys.path; PYTHONPATH holds the repository.)
"""

from __future__ import annotations

import runpy
import sys

import bench  # noqa: F401 - registers this package as "bench" before the harness runs


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -P -m bench.harness_main HARNESS/bench.py [args...]")
    script = sys.argv[1]
    sys.argv = [script, *sys.argv[2:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
