"""The repository's deployment files as the tests read them: YAML loaded as strictly as
Compose and kubectl load it, compose.yaml's services, and command lines and variable names
checked against the real ``hybridq`` parser and Settings."""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from queue_core.cli.main import build_parser
from queue_core.settings import Settings
from queue_core.worker.runner import FINAL_FLUSH_SECONDS

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose.yaml"

# app service -> the hybridq subcommand it must run
APP_SUBCOMMANDS = {
    "migrate": "migrate",
    "api": "api",
    "worker": "worker",
    "reconciler": "reconcile",
}


def hybridq_args(argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed by the real ``hybridq`` parser; a parse error fails the test with the
    message hybridq would print."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return build_parser().parse_args([str(a) for a in argv])
    except SystemExit as exc:
        pytest.fail(f"`hybridq {shlex.join(map(str, argv))}` exits {exc.code}: {stderr.getvalue()}")


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping, as Compose and kubectl do
    (PyYAML alone keeps the last). A key overriding a ``<<`` merge is not a duplicate."""


def _mapping_without_duplicates(loader: StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys = [loader.construct_object(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"]
    duplicates = sorted({str(k) for k in keys if keys.count(k) > 1})
    if duplicates:
        raise yaml.constructor.ConstructorError(
            None, None, f"duplicate keys {duplicates}", node.start_mark
        )
    return loader.construct_mapping(node, deep=True)


StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def allowed_env_names() -> set[str]:
    return {"DATABASE_URL", "REDIS_URL"} | {f"HYBRIDQ_{n.upper()}" for n in Settings.model_fields}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(COMPOSE.read_text("utf-8"), Loader=StrictLoader)
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def shutdown_needs(grace: float) -> float:
    """Seconds a stopping worker may use before it exits on its own: --grace for running
    jobs, then up to FINAL_FLUSH_SECONDS to write its last outcomes (plus the release)."""
    return grace + FINAL_FLUSH_SECONDS
