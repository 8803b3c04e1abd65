"""The Kubernetes examples of docs/deploy.md, checked against the real CLI parser and
Settings without a cluster: every container's arguments parse, every variable is a setting,
grace periods cover a worker's shutdown, and probes and scrapes name the ports served."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from queue_core.worker.runner import FINAL_FLUSH_SECONDS
from tests.support.manifests import (
    APP_SUBCOMMANDS,
    REPO,
    StrictLoader,
    allowed_env_names,
    hybridq_args,
    services,
    shutdown_needs,
)

DEPLOY_DOC = REPO / "docs" / "deploy.md"


def doc_manifests() -> list[dict[str, Any]]:
    """Every YAML document of the ```yaml blocks in docs/deploy.md (each must parse)."""
    text = DEPLOY_DOC.read_text("utf-8")
    blocks = re.findall(r"^```yaml\n(.*?)^```", text, flags=re.S | re.M)
    assert blocks, "docs/deploy.md has no ```yaml blocks"
    docs = (yaml.load_all(block, Loader=StrictLoader) for block in blocks)
    return [doc for block_docs in docs for doc in block_docs if doc is not None]


def walk(node: Any) -> Iterator[Any]:
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        yield from walk(child)


def containers(node: Any) -> list[dict[str, Any]]:
    return [n for n in walk(node) if isinstance(n, dict) and "image" in n and "name" in n]


def pod_spec_running(subcommand: str, kind: str = "Deployment") -> dict[str, Any]:
    for doc in doc_manifests():
        if doc.get("kind") == kind:
            pod = doc["spec"]["template"]
            if any(c["args"][0] == subcommand for c in pod["spec"]["containers"]):
                return dict(pod)
    pytest.fail(f"docs/deploy.md has no {kind} running `hybridq {subcommand}`")


def test_deploy_doc_containers_run_hybridq_commands_that_parse() -> None:
    text = DEPLOY_DOC.read_text("utf-8")
    found = [c for doc in doc_manifests() for c in containers(doc)]
    assert found
    for container in found:
        assert "command" not in container, f"{container['name']}: `command` skips the ENTRYPOINT"
        hybridq_args(container["args"])
        line = shlex.join(map(str, container["args"]))
        assert f"`{line}`" in text, f"docs/deploy.md never mentions `{line}` in its prose"
    missing = set(APP_SUBCOMMANDS.values()) - {c["args"][0] for c in found}
    assert not missing, f"no Kubernetes example runs {missing}"
    for name in APP_SUBCOMMANDS:
        line = shlex.join(map(str, services()[name]["command"]))
        assert f"`{line}`" in text, f"docs/deploy.md does not mention compose's `{line}`"


def pre_stop_sleep(container: dict[str, Any]) -> float:
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command") or []
    return float(command[1]) if command[:1] == ["sleep"] else 0.0


def test_deploy_doc_worker_termination_grace_covers_grace_and_final_flush() -> None:
    pod = pod_spec_running("worker")
    (container,) = pod["spec"]["containers"]
    args = hybridq_args(container["args"])
    assert args.grace is not None, "the worker example sets no --grace"
    budget = pod["spec"].get("terminationGracePeriodSeconds", 30)
    assert budget > pre_stop_sleep(container) + shutdown_needs(args.grace), (
        f"terminationGracePeriodSeconds {budget} must exceed preStop + --grace {args.grace}"
        f" + the final flush {FINAL_FLUSH_SECONDS}s"
    )
    assert args.metrics_port is not None, "the worker example serves no metrics"


def test_deploy_doc_scrape_annotations_name_the_metrics_port() -> None:
    """prometheus.io annotations carry no credentials: only a --metrics-port endpoint (no
    token) may have them, and the port they name is the one the container serves."""
    annotated = 0
    for doc in doc_manifests():
        template = (doc.get("spec") or {}).get("template") or {}
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        if annotations.get("prometheus.io/scrape") != "true":
            continue
        annotated += 1
        (container,) = template["spec"]["containers"]
        port = getattr(hybridq_args(container["args"]), "metrics_port", None)
        assert port is not None, f"{doc['metadata']['name']}: annotated, but no --metrics-port"
        assert annotations["prometheus.io/port"] == str(port), doc["metadata"]["name"]
        assert port in {p["containerPort"] for p in container.get("ports", [])}
    assert annotated, "no pod in docs/deploy.md is annotated for scraping"


def test_deploy_doc_api_probes_and_metrics_match_its_port() -> None:
    pod = pod_spec_running("api")
    (container,) = pod["spec"]["containers"]
    port = hybridq_args(container["args"]).port
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert named.get(get["port"], get["port"]) == port, probe
    assert pod["spec"].get("terminationGracePeriodSeconds", 30) > pre_stop_sleep(container)
    services_ = [d for d in doc_manifests() if d.get("kind") == "Service"]
    assert any(
        named.get(p["targetPort"], p["targetPort"]) == port
        for s in services_
        for p in s["spec"]["ports"]
    ), "no Service targets the API's port"
    # GET /metrics needs an admin token: the scrape must select the API pods and send one.
    labels = pod["metadata"]["labels"]
    monitors = [d for d in doc_manifests() if d.get("kind") == "PodMonitor"]
    endpoints = [
        e
        for m in monitors
        if m["spec"]["selector"]["matchLabels"].items() <= labels.items()
        for e in m["spec"]["podMetricsEndpoints"]
    ]
    assert endpoints, "no PodMonitor selects the API pods"
    for endpoint in endpoints:
        assert endpoint["path"] == "/metrics"
        assert named.get(endpoint["port"], endpoint["port"]) == port
        assert endpoint["authorization"]["type"] == "Bearer"


def env_names_of(container: dict[str, Any], manifests: list[dict[str, Any]]) -> set[str]:
    """Every variable a container gets: its env entries and the keys of the Secrets and
    ConfigMaps it takes whole through envFrom."""
    resources = {
        (d["kind"], d["metadata"]["name"]): {*(d.get("data") or {}), *(d.get("stringData") or {})}
        for d in manifests
        if d.get("kind") in {"Secret", "ConfigMap"}
    }
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        for field, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
            if field in source:
                key = (kind, source[field]["name"])
                assert key in resources, f"envFrom names a missing {kind} {key[1]}"
                names |= resources[key]
    return names


def test_deploy_doc_env_names_are_settings_fields() -> None:
    allowed = allowed_env_names()
    manifests = doc_manifests()
    names: set[str] = set()
    for container in (c for doc in manifests for c in containers(doc)):
        names |= env_names_of(container, manifests)
    assert {"DATABASE_URL", "REDIS_URL", "HYBRIDQ_API_TOKENS"} <= names
    assert not names - allowed, f"not DATABASE_URL/REDIS_URL/HYBRIDQ_<field>: {names - allowed}"


def test_deploy_doc_reconciler_cronjob_forbids_overlap() -> None:
    cronjobs = [d for d in doc_manifests() if d.get("kind") == "CronJob"]
    assert cronjobs, "docs/deploy.md has no reconciler CronJob"
    for cron in cronjobs:
        assert cron["spec"]["concurrencyPolicy"] == "Forbid"
        (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        assert hybridq_args(container["args"]).once is True


def test_deploy_doc_processes_that_load_handlers_are_told_which_module() -> None:
    """worker, reconcile and api have no default handlers module: each container running
    one gets HYBRIDQ_HANDLERS_MODULE or passes --handlers."""
    manifests = doc_manifests()
    for container in (c for doc in manifests for c in containers(doc)):
        if container["args"][0] in {"worker", "reconcile", "api"}:
            named = hybridq_args(container["args"]).handlers is not None
            assert named or "HYBRIDQ_HANDLERS_MODULE" in env_names_of(container, manifests), (
                f"{container['name']} runs `{container['args'][0]}` without a handlers module"
            )
