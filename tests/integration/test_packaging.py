"""The built wheel: only hybridq's own distinctive top-level names, everything the installed
engine needs (SQL, Lua, migrations, templates), and an application with its own ``api`` and
``handlers`` packages imports both them and hybridq."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [built] = out.glob("*.whl")
    return built


def test_wheel_installs_only_distinctive_top_level_names(wheel: Path) -> None:
    names = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    packages = {n for n in names if not n.endswith(".dist-info")}
    assert packages == {"queue_core", "hybridq_api"}, packages
    assert wheel.name.startswith("hybridq_queue-")


def test_wheel_carries_the_engines_data_files(wheel: Path) -> None:
    files = set(zipfile.ZipFile(wheel).namelist())
    migrations = {p.name for p in (REPO / "migrations").glob("*.sql")}
    assert migrations and {f"queue_core/migrations/{m}" for m in migrations} <= files
    assert "queue_core/store/queries.sql" in files
    assert "queue_core/index/lua/claim_ready.lua" in files
    assert "hybridq_api/templates/base.html" in files
    assert "hybridq_api/static/dashboard.js" in files


def test_every_package_in_the_tree_is_in_the_wheel() -> None:
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    in_tree = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in REPO.glob("queue_core/**/__init__.py")
    }
    assert in_tree <= listed, f"packages missing from pyproject: {sorted(in_tree - listed)}"


def test_an_application_with_its_own_api_and_handlers_imports_both(
    wheel: Path, tmp_path: Path
) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    app = tmp_path / "app"
    for package in ("api", "handlers"):
        (app / package).mkdir(parents=True)
        (app / package / "__init__.py").write_text(f"MINE = {package!r}\n")
    (app / "handlers" / "__init__.py").write_text(
        "MINE = 'handlers'\n\ndef register(runner):\n    runner.seen = True\n"
    )
    probe = textwrap.dedent(
        """
        import sys
        import api, handlers, hybridq_api, queue_core
        from queue_core.contracts import load_register
        from queue_core.store.migrate import bundled_migrations
        assert api.MINE == "api" and handlers.MINE == "handlers"
        assert hybridq_api.__file__.startswith(sys.argv[1]), hybridq_api.__file__
        assert queue_core.__file__.startswith(sys.argv[1]), queue_core.__file__
        assert load_register("handlers") is handlers.register
        print(len(bundled_migrations()))
        """
    )
    # The project's dependencies come from this virtualenv's site-packages; hybridq itself
    # only from the installed wheel (PYTHONPATH does not run the editable install's hook).
    deps = sysconfig.get_paths()["purelib"]
    result = subprocess.run(
        [sys.executable, "-c", probe, str(target)],
        cwd=app,
        env={"PYTHONPATH": f"{target}:{deps}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == len(list((REPO / "migrations").glob("*.sql")))
