"""The guarded resolver: every address a name resolves to is checked before any is dialled."""

from __future__ import annotations

import socket

import pytest

from app.fetch.errors import SourceForbidden, SourceUnreachable
from app.fetch.policy import AddressPolicy
from app.fetch.resolver import GuardedResolver
from tests.support.resolvers import TableResolver


@pytest.mark.gen_test
async def test_guarded_resolver_refuses_unless_every_address_is_allowed() -> None:
    inner = TableResolver(
        table={
            "ok.test": [(socket.AF_INET, ("8.8.8.8", 80))],
            "mixed.test": [(socket.AF_INET, ("8.8.8.8", 80)), (socket.AF_INET, ("10.0.0.1", 80))],
            "empty.test": [],
            "odd.test": [(socket.AF_UNIX, ("/run/socket",))],
        }
    )
    guarded = GuardedResolver(inner=inner, policy=AddressPolicy())
    assert await guarded.resolve("ok.test", 80) == [(socket.AF_INET, ("8.8.8.8", 80))]
    with pytest.raises(SourceForbidden):
        await guarded.resolve("mixed.test", 80)
    with pytest.raises(SourceForbidden):
        await guarded.resolve("odd.test", 80)
    for unreachable in ("empty.test", "missing.test"):
        with pytest.raises(SourceUnreachable):
            await guarded.resolve(unreachable, 80)


@pytest.mark.gen_test
async def test_a_denied_host_is_refused_before_it_is_resolved() -> None:
    inner = TableResolver(table={})
    guarded = GuardedResolver(inner=inner, policy=AddressPolicy(deny_hosts=["internal.test"]))
    with pytest.raises(SourceForbidden):
        await guarded.resolve("internal.test", 80)  # TableResolver would raise SourceUnreachable
