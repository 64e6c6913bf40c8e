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


def test_a_literal_verdict_is_remembered_per_host_with_each_call_its_own_port() -> None:
    guarded = GuardedResolver(
        inner=TableResolver(table={}), policy=AddressPolicy(allow_cidrs=["127.0.0.0/8", "::1/128"])
    )
    for _ in range(2):  # the second time from what the first one judged
        assert guarded.literal("127.0.0.1", 8080) == [(socket.AF_INET, ("127.0.0.1", 8080))]
        assert guarded.literal("127.0.0.1", 9090) == [(socket.AF_INET, ("127.0.0.1", 9090))]
        assert guarded.literal("::1", 80) == [(socket.AF_INET6, ("::1", 80, 0, 0))]
        assert guarded.literal("images.example", 80) is None  # a name: looked up, not judged here
        with pytest.raises(SourceForbidden):  # a refusal is judged again every time, never remembered as allowed
            guarded.literal("10.0.0.1", 80)
