"""compose.yaml, the Dockerfile and the Kubernetes examples of docs/deploy.md, checked against
the real CLI parser and Settings without Docker: a renamed flag or setting, a shutdown budget
shorter than --grace or a dangling depends_on fails here instead of at deploy time."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from queue_core.cli.main import build_parser
from queue_core.settings import Settings
from queue_core.worker.runner import FINAL_FLUSH_SECONDS

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
DEPLOY_DOC = REPO / "docs" / "deploy.md"

SERVICES = {"postgres", "redis", "migrate", "api", "worker", "reconciler"}
# app service -> the hybridq subcommand it must run
APP_SUBCOMMANDS = {
    "migrate": "migrate",
    "api": "api",
    "worker": "worker",
    "reconciler": "reconcile",
}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


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


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, mapping or ``KEY=VALUE`` list form."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def interpolated(value: str) -> str:
    """Compose's ``${VAR:-default}`` / ``${VAR-default}`` / ``${VAR}`` with VAR unset."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m[1] or "", value)


def seconds(duration: str | int | float) -> float:
    """A compose duration ('30s', '1m30s', '500ms') in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"bad duration {duration!r}"
    unit = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * unit[u] for n, u in parts)


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """dependency -> condition (the list form means service_started)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def test_compose_defines_the_six_services() -> None:
    assert set(services()) == SERVICES


def test_compose_app_commands_parse_with_the_cli() -> None:
    for name, subcommand in APP_SUBCOMMANDS.items():
        command = services()[name]["command"]
        assert isinstance(command, list), f"{name}: command must be a list (exec form)"
        assert hybridq_args(command).command == subcommand, name


def test_compose_env_names_are_settings_fields() -> None:
    allowed = allowed_env_names()
    for name in APP_SUBCOMMANDS:
        env = environment(services()[name])
        assert env, f"{name} has no environment"
        unknown = sorted(set(env) - allowed)
        assert not unknown, f"{name}: not DATABASE_URL/REDIS_URL/HYBRIDQ_<field>: {unknown}"


def test_compose_env_values_are_accepted_by_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in allowed_env_names():
        monkeypatch.delenv(variable, raising=False)
    for name in APP_SUBCOMMANDS:
        env = {k: interpolated(v) for k, v in environment(services()[name]).items()}
        with monkeypatch.context() as m:
            for key, value in env.items():
                m.setenv(key, value)
            settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert settings.database_url == env["DATABASE_URL"], name
        assert settings.redis_url == env["REDIS_URL"], name


def test_compose_backend_urls_point_at_the_compose_services() -> None:
    postgres = environment(services()["postgres"])
    for name in APP_SUBCOMMANDS:
        env = environment(services()[name])
        db = urlsplit(env["DATABASE_URL"])
        assert db.scheme in {"postgresql", "postgres"} and db.hostname == "postgres", db
        assert db.port in {None, 5432}, db
        assert db.username == postgres.get("POSTGRES_USER", "postgres"), db
        if postgres.get("POSTGRES_HOST_AUTH_METHOD") != "trust":
            assert db.password == postgres["POSTGRES_PASSWORD"], name
        assert db.path == "/" + postgres.get("POSTGRES_DB", db.username or ""), db
        redis = urlsplit(env["REDIS_URL"])
        assert redis.scheme == "redis" and redis.hostname == "redis", redis
        assert redis.port in {None, 6379}, redis


def test_api_publishes_the_port_it_listens_on() -> None:
    api = services()["api"]
    port = hybridq_args(api["command"]).port
    mappings = []
    for entry in api.get("ports", []):
        if isinstance(entry, dict):
            mappings.append((int(entry["published"]), int(entry["target"])))
        else:
            *_, published, target = str(entry).split("/")[0].split(":")
            mappings.append((int(published), int(target)))
    assert (port, port) in mappings, f"--port {port}, ports {api.get('ports')}"
    assert f":{port}/healthz" in " ".join(api["healthcheck"]["test"])


def shutdown_needs(grace: float) -> float:
    """Seconds a stopping worker may use before it exits on its own: --grace for running
    jobs, then up to FINAL_FLUSH_SECONDS to write its last outcomes (plus the release)."""
    return grace + FINAL_FLUSH_SECONDS


def test_worker_has_three_replicas_and_a_stop_grace_period_covering_its_shutdown() -> None:
    worker = services()["worker"]
    args = hybridq_args(worker["command"])
    assert worker["deploy"]["replicas"] == 3
    assert args.grace is not None, "worker command sets no --grace"
    stop = seconds(worker["stop_grace_period"])
    assert stop > shutdown_needs(args.grace), (
        f"stop_grace_period {stop}s must exceed --grace {args.grace}s"
        f" + the final flush {FINAL_FLUSH_SECONDS}s"
    )
    assert args.metrics_port is not None
    assert str(args.metrics_port) in {str(p) for p in worker.get("expose", [])}


def test_depends_on_references_existing_services_with_valid_conditions() -> None:
    all_services = services()
    for name, service in all_services.items():
        for dependency, condition in depends_on(service).items():
            where = f"{name} -> {dependency}"
            assert dependency in all_services, f"{where}: no such service"
            assert condition in CONDITIONS, f"{where}: bad condition {condition}"
            target = all_services[dependency]
            if condition == "service_healthy":
                test = (target.get("healthcheck") or {}).get("test")
                assert test and test != ["NONE"], f"{where}: service_healthy without healthcheck"
            if condition == "service_completed_successfully":
                assert dependency == "migrate", f"{where}: only migrate is one-shot"
    assert depends_on(all_services["migrate"]) == {"postgres": "service_healthy"}
    assert all_services["migrate"].get("restart") == "no"
    for name in ("api", "worker", "reconciler"):
        deps = depends_on(all_services[name])
        assert deps.get("migrate") == "service_completed_successfully", name
        assert deps.get("redis") == "service_healthy", name


def test_app_services_build_the_repository_dockerfile() -> None:
    images = set()
    for name in APP_SUBCOMMANDS:
        service = services()[name]
        build = service.get("build")
        assert build is not None, f"{name}: no build section"
        if isinstance(build, str):
            build = {"context": build}
        context = (COMPOSE.parent / build.get("context", ".")).resolve()
        assert (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE, name
        images.add(service.get("image"))
    assert DOCKERFILE.is_file()
    assert len(images) == 1, f"the app services should share one image, not {images}"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for raw in DOCKERFILE.read_text("utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def pip_installs_the_repo(run: str) -> bool:
    for command in run.split("&&"):
        tokens = shlex.split(command)
        for i, token in enumerate(tokens[:-1]):
            if token.endswith("pip") and tokens[i + 1] == "install":
                if "." in tokens[i + 2 :] or "./" in tokens[i + 2 :]:
                    return True
    return False


def test_dockerfile_installs_the_repo_and_runs_hybridq() -> None:
    instructions = dockerfile_instructions()
    stages = [i for i, (kw, _) in enumerate(instructions) if kw == "FROM"]
    bases = [instructions[i][1] for i in stages]
    assert bases and all(base.startswith("python:3.11-slim") for base in bases), bases
    final = instructions[stages[-1] :]
    entrypoints = [rest for kw, rest in final if kw == "ENTRYPOINT"]
    assert entrypoints and json.loads(entrypoints[-1]) == ["hybridq"], entrypoints
    assert not [rest for kw, rest in final if kw == "CMD"], "no CMD: the subcommand is explicit"
    users = [rest for kw, rest in final if kw == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, users
    assert any(pip_installs_the_repo(rest) for kw, rest in instructions if kw == "RUN")

    copied = set()
    for kw, rest in instructions:
        if kw == "COPY" and "--from" not in rest:
            sources = [t for t in shlex.split(rest) if not t.startswith("--")][:-1]
            copied |= {s.rstrip("/") for s in sources}
    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    setuptools = project["tool"]["setuptools"]
    mapped = setuptools["package-dir"]
    sources = {mapped.get(p, p).split(".")[0] for p in setuptools["packages"]}
    needed = {"pyproject.toml", project["project"]["readme"], "handlers"} | sources
    assert needed <= copied, f"the image build lacks {sorted(needed - copied)}"


def test_dockerignore_drops_local_state_but_not_the_sources() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".bench-venv", ".hybridq-data"} <= ignored
    assert not ignored & {"pyproject.toml", "README.md", "queue_core", "handlers", "api"}


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


def test_deploy_doc_env_names_are_settings_fields() -> None:
    """Every variable a container gets: its env entries and the keys of the Secrets and
    ConfigMaps it takes whole through envFrom."""
    allowed = allowed_env_names()
    manifests = doc_manifests()
    resources = {
        (d["kind"], d["metadata"]["name"]): {*(d.get("data") or {}), *(d.get("stringData") or {})}
        for d in manifests
        if d.get("kind") in {"Secret", "ConfigMap"}
    }
    names = set()
    for container in (c for doc in manifests for c in containers(doc)):
        names |= {e["name"] for e in container.get("env", [])}
        for source in container.get("envFrom", []):
            for field, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                if field in source:
                    key = (kind, source[field]["name"])
                    assert key in resources, f"envFrom names a missing {kind} {key[1]}"
                    names |= resources[key]
    assert {"DATABASE_URL", "REDIS_URL", "HYBRIDQ_API_TOKENS"} <= names
    assert not names - allowed, f"not DATABASE_URL/REDIS_URL/HYBRIDQ_<field>: {names - allowed}"


def test_deploy_doc_reconciler_cronjob_forbids_overlap() -> None:
    cronjobs = [d for d in doc_manifests() if d.get("kind") == "CronJob"]
    assert cronjobs, "docs/deploy.md has no reconciler CronJob"
    for cron in cronjobs:
        assert cron["spec"]["concurrencyPolicy"] == "Forbid"
        (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        assert hybridq_args(container["args"]).once is True
