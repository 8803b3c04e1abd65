"""Registering job types and periodic jobs (queue_core.contracts). Pure: no servers."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from queue_core import ContractRegistry, HandlerNotFound, InvalidJob
from queue_core.contracts import load_contracts


async def first(job: dict[str, Any]) -> dict[str, Any]:
    return {"handler": "first"}


async def second(job: dict[str, Any]) -> dict[str, Any]:
    return {"handler": "second"}


def test_registering_a_job_type_twice_raises_and_keeps_the_first_handler() -> None:
    registry = ContractRegistry()
    registry.register_handler("email", first)

    with pytest.raises(ValueError, match="'email' is registered already"):
        registry.register_handler("email", second)

    contract = registry.get("email")
    assert contract is not None and contract.handler is first


def test_declaring_a_periodic_job_name_twice_raises() -> None:
    registry = ContractRegistry()
    registry.register_periodic("nightly", cron="0 3 * * *", job_type="email")

    with pytest.raises(ValueError, match="'nightly' is declared already"):
        registry.register_periodic("nightly", cron="0 4 * * *", job_type="email")

    assert [p.cron for p in registry.periodic] == ["0 3 * * *"]


@pytest.fixture
def scratch_module() -> Iterator[types.ModuleType]:
    module = types.ModuleType("scratch_handlers_for_test_contracts")
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


def test_a_handlers_module_whose_register_fails_is_reported_by_name(
    scratch_module: types.ModuleType,
) -> None:
    def register(runner: ContractRegistry) -> None:
        runner.register_handler("email", first)
        runner.register_handler("email", second)

    scratch_module.register = register  # type: ignore[attr-defined]

    with pytest.raises(HandlerNotFound, match="scratch_handlers_for_test_contracts.*already"):
        load_contracts(scratch_module.__name__)


def test_unknown_job_type_and_bad_input_are_invalid_jobs() -> None:
    from pydantic import BaseModel

    class In(BaseModel):
        n: int

    registry = ContractRegistry()
    registry.register_handler("typed", first, input_model=In)

    registry.validate("typed", {"n": 1})
    with pytest.raises(InvalidJob, match="unknown job_type 'typo' \\(registered: typed\\)"):
        registry.validate("typo", {"n": 1})
    with pytest.raises(InvalidJob, match="input for typed: n:"):
        registry.validate("typed", {"n": "one"})


def test_a_periodic_job_of_a_type_its_module_does_not_register_fails_at_load(
    scratch_module: types.ModuleType,
) -> None:
    def register(runner: ContractRegistry) -> None:
        runner.register_handler("email", first)
        runner.register_periodic("digest", cron="0 7 * * *", job_type="emial")

    scratch_module.register = register  # type: ignore[attr-defined]

    with pytest.raises(HandlerNotFound, match="periodic job 'digest': unknown job_type 'emial'"):
        load_contracts(scratch_module.__name__)
