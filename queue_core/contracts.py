"""Job contracts: each job type's handler with its declared input (and output) models.

The application declares its job types once, in its handlers module's ``register(runner)``.
A worker passes its JobRunnerService; the API and ``hybridq contracts`` pass a
``ContractRegistry``, which records the same declarations without running anything. So the
API validates exactly what the workers expect, from one source.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import HandlerNotFound, InvalidJob
from .models import Job, validate_job_type
from .periodic import PeriodicJob, make_periodic

Handler = Callable[[Job], Any]
"""``async def handler(job: dict) -> dict | None``, or a plain function of the same shape
(run in a thread: worker/handler_call.py)."""


@dataclass(frozen=True)
class JobContract:
    job_type: str
    handler: Handler
    timeout: float | None = None  # seconds an attempt may run; None: no limit
    input_model: type[BaseModel] | None = None  # validates job["input"] when declared
    output_model: type[BaseModel] | None = None  # validates what the handler returns
    is_async: bool = True  # False: a plain function, run in a thread

    @property
    def handler_name(self) -> str:
        target = getattr(self.handler, "func", self.handler)  # functools.partial
        return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"

    @property
    def example_input(self) -> dict[str, Any] | None:
        """The first of the input model's declared ``examples`` (pydantic
        ``json_schema_extra={"examples": [...]}``), if any: shown in the API's OpenAPI, and
        what tests and ``make up``'s demo enqueue for the type."""
        if self.input_model is None:
            return None
        examples = self.input_model.model_json_schema().get("examples") or [None]
        return examples[0] if isinstance(examples[0], dict) else None

    def validate_input(self, value: Any) -> None:
        """Raise InvalidJob naming the first bad field when ``value`` breaks the model."""
        if self.input_model is None:
            return
        try:
            self.input_model.model_validate(value)
        except ValidationError as exc:
            raise InvalidJob(
                f"input for {self.job_type}: {describe_validation_error(exc)}"
            ) from None


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        location = ".".join(str(p) for p in err["loc"]) or "input"
        parts.append(f"{location}: {err['msg']}")
    return "; ".join(parts)


def make_contract(
    job_type: str,
    handler: Handler,
    *,
    timeout: float | None = None,
    input_model: type[BaseModel] | None = None,
    output_model: type[BaseModel] | None = None,
) -> JobContract:
    """Validate a registration: the name, a callable handler (async, or plain: run in a
    thread), a positive timeout, models. Raises InvalidJob, TypeError or ValueError."""
    validate_job_type(job_type)
    if not callable(handler):
        raise TypeError(f"handler for {job_type!r} must be a function, got {type(handler)!r}")
    call_method = type(handler).__call__  # an object with an async __call__ is async too
    is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call_method)
    if timeout is not None and not timeout > 0:
        raise ValueError("timeout must be positive seconds")
    for model in (input_model, output_model):
        if model is not None and not (inspect.isclass(model) and issubclass(model, BaseModel)):
            raise TypeError(f"models for {job_type!r} must be pydantic BaseModel classes")
    return JobContract(job_type, handler, timeout, input_model, output_model, is_async)


class ContractRegistry:
    """Collects ``register_handler`` and ``register_periodic`` calls: pass it to a handlers
    module's ``register``. JobRunnerService is one too, so a worker and the API read the
    same declarations the same way."""

    def __init__(self) -> None:
        self._contracts: dict[str, JobContract] = {}
        self.periodic: list[PeriodicJob] = []

    def register_handler(
        self,
        job_type: str,
        handler: Handler,
        *,
        timeout: float | None = None,
        input_model: type[BaseModel] | None = None,
        output_model: type[BaseModel] | None = None,
    ) -> None:
        """Run ``handler(job) -> dict | None`` for jobs of ``job_type``: an ``async def``, or
        a plain function that the worker runs in a thread (at most its concurrency at once).
        An attempt that runs longer than ``timeout`` seconds fails (and is retried like any
        failure) at the timeout, whether or not the handler stops; input that
        ``input_model`` rejects fails the job without retry; output that ``output_model``
        rejects fails the attempt. Raises ValueError when ``job_type`` is registered already
        (a second registration would silently replace the first handler)."""
        contract = make_contract(
            job_type, handler, timeout=timeout, input_model=input_model, output_model=output_model
        )
        existing = self._contracts.get(job_type)
        if existing is not None:
            raise ValueError(
                f"job type {job_type!r} is registered already (handler "
                f"{existing.handler_name}); register each job type once"
            )
        self._contracts[job_type] = contract

    def register_periodic(
        self,
        name: str,
        *,
        cron: str,
        job_type: str,
        input: dict[str, Any] | None = None,
        priority: int = 0,
        max_retries: int = 3,
        catch_up: str = "none",
        catch_up_window: timedelta | None = None,
    ) -> None:
        """Enqueue a ``job_type`` job at every tick of ``cron`` (five fields, UTC), from the
        next tick on. ``catch_up`` says which ticks missed while no reconciler ran are
        enqueued late: "none" (default: skipped), "latest" (the latest one) or "all" (every
        one within ``catch_up_window``); see periodic.py. Raises InvalidJob for a bad
        declaration, ValueError when ``name`` is declared already."""
        if any(p.name == name for p in self.periodic):
            raise ValueError(f"periodic job {name!r} is declared already; names are unique")
        self.periodic.append(
            make_periodic(
                name,
                cron=cron,
                job_type=job_type,
                input=input,
                priority=priority,
                max_retries=max_retries,
                catch_up=catch_up,
                catch_up_window=catch_up_window,
            )
        )

    def get(self, job_type: str) -> JobContract | None:
        return self._contracts.get(job_type)

    def __iter__(self) -> Iterator[JobContract]:
        return iter(sorted(self._contracts.values(), key=lambda c: c.job_type))

    def __len__(self) -> int:
        return len(self._contracts)

    def validate(self, job_type: str, input: Any) -> None:
        """InvalidJob for a job type nobody registered, or input its model rejects."""
        contract = self._contracts.get(job_type)
        if contract is None:
            known = ", ".join(sorted(self._contracts)) or "none"
            raise InvalidJob(f"unknown job_type {job_type!r} (registered: {known})")
        contract.validate_input(input)

    def validate_periodic(self) -> None:
        """InvalidJob when a periodic job's type is not registered here or its input breaks
        the type's model: checked once the handlers module has declared everything, so a
        typo fails at start, not at the first tick."""
        for periodic in self.periodic:
            try:
                self.validate(periodic.job_type, periodic.input)
            except InvalidJob as exc:
                raise InvalidJob(f"periodic job {periodic.name!r}: {exc}") from None


class UndeclaredContracts(ContractRegistry):
    """The contracts of a producer that named no handlers module and did not opt out of
    validation: every create() raises HandlerNotFound saying how to name one. connect()
    hands it out, so that enqueueing unvalidated is always a decision, never an omission."""

    def validate(self, job_type: str, input: Any) -> None:
        raise HandlerNotFound(
            f"cannot validate a {job_type!r} job: no handlers module is known. Name the "
            "module that registers your job types (connect(handlers='myapp.jobs') or "
            "HYBRIDQ_HANDLERS_MODULE), or pass connect(validate=False) to enqueue unchecked"
        )


def load_register(module_name: str) -> Callable[[Any], None]:
    """The ``register(runner)`` function of a handlers module. The working directory is
    searched first, as ``python -m`` does (the ``hybridq`` command alone would not): an
    application's handlers live in its own tree, not in hybridq's installed packages."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HandlerNotFound(f"cannot import handlers module {module_name!r}: {exc}") from None
    register = getattr(module, "register", None)
    if not callable(register):
        raise HandlerNotFound(f"handlers module {module_name!r} defines no register(runner)")
    return register  # type: ignore[no-any-return]


def register_from(module_name: str, registry: ContractRegistry) -> None:
    """Import ``module_name`` and run its ``register(registry)``. HandlerNotFound when it
    cannot be imported, defines no register(runner), or its register() rejects one of its
    own declarations (a type registered twice, a sync handler, a bad cron expression)."""
    register = load_register(module_name)
    try:
        register(registry)
        registry.validate_periodic()
    except (TypeError, ValueError) as exc:  # InvalidJob is a ValueError too
        raise HandlerNotFound(f"handlers module {module_name!r}: {exc}") from exc


def load_contracts(module_name: str) -> ContractRegistry:
    """The job types and periodic jobs ``module_name`` declares (see register_from)."""
    registry = ContractRegistry()
    register_from(module_name, registry)
    return registry


def shape_of(model: type[BaseModel] | None) -> str:
    """A one-line shape for docs and ``hybridq contracts``, with each field's type and
    bounds: ``{calendar_id: string 1..200 chars, days?: integer 1..90 = 7}``; ``?`` marks an
    optional field."""
    if model is None:
        return "any JSON object"
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    fields = [
        f"{name}{'' if name in required else '?'}: {_describe(prop)}"
        for name, prop in schema.get("properties", {}).items()
    ]
    return "{" + ", ".join(fields) + "}"


def _describe(prop: dict[str, Any]) -> str:
    kind = str(
        prop.get("type")
        or "|".join(str(option.get("type", "?")) for option in prop.get("anyOf", []))
        or "object"
    )
    low, high = prop.get("minLength"), prop.get("maxLength")
    if low is not None or high is not None:
        kind += f" {low or 0}..{high if high is not None else ''} chars"
    low, high = prop.get("minimum"), prop.get("maximum")
    if low is not None or high is not None:
        kind += f" {'' if low is None else low}..{'' if high is None else high}"
    if "default" in prop:
        kind += f" = {json.dumps(prop['default'])}"
    return kind
