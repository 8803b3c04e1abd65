"""compose.yaml and the Dockerfile, checked against the real CLI parser and Settings without
Docker: a renamed flag or setting, a shutdown budget shorter than --grace or a dangling
depends_on fails here instead of at deploy time. (docs/deploy.md's Kubernetes examples:
test_deploy_doc.py.)"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from typing import Any
from urllib.parse import urlsplit

import pytest

from queue_core.settings import Settings
from queue_core.worker.runner import FINAL_FLUSH_SECONDS
from tests.support.manifests import (
    APP_SUBCOMMANDS,
    COMPOSE,
    REPO,
    allowed_env_names,
    hybridq_args,
    services,
    shutdown_needs,
)

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

SERVICES = {"postgres", "redis", "migrate", "api", "worker", "reconciler"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


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


def test_compose_processes_that_load_handlers_are_told_which_module() -> None:
    """worker, reconcile and api have no default handlers module (no process falls back to
    the repository's examples): compose names one for each."""
    for name, subcommand in APP_SUBCOMMANDS.items():
        if subcommand in {"worker", "reconcile", "api"}:
            service = services()[name]
            named = hybridq_args(service["command"]).handlers is not None
            assert named or environment(service).get("HYBRIDQ_HANDLERS_MODULE"), name


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
