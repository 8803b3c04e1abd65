"""The ports name exactly what their implementations offer: a method added to PgStore or to
the Redis index without its Protocol (or the reverse) fails here, not in a reader's head."""

from __future__ import annotations

import inspect

import pytest

from queue_core import ports
from queue_core.index import IndexRepair, RedisIndex
from queue_core.store import PgSessionStore, PgStore, PgTokenStore


def public_methods(cls: type) -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and callable(member)
    }


@pytest.mark.parametrize(
    ("protocol", "implementation", "not_in_port"),
    [
        (ports.JobStore, PgStore, {"aclose"}),  # its lifecycle is connect()'s
        (ports.ReadyIndex, RedisIndex, {"keys_for"}),  # key names: for the repairs only
        (ports.IndexMaintenance, IndexRepair, set()),
        (ports.TokenStore, PgTokenStore, set()),
        (ports.SessionStore, PgSessionStore, set()),
    ],
)
def test_port_and_implementation_name_the_same_methods(
    protocol: type, implementation: type, not_in_port: set[str]
) -> None:
    assert public_methods(protocol) == public_methods(implementation) - not_in_port


def test_the_store_roles_together_are_the_job_store() -> None:
    roles = [ports.EnqueueStore, ports.ClaimStore, ports.OutcomeStore, ports.MaintenanceStore]
    assert set().union(*(public_methods(r) for r in roles)) == public_methods(ports.JobStore)
