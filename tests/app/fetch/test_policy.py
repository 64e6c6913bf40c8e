"""The address policy: which addresses and host names may be dialled."""

from __future__ import annotations

import ipaddress

import pytest

from app.fetch.errors import SourceForbidden
from app.fetch.policy import AddressPolicy


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001::1"])
def test_global_unicast_is_allowed_by_default(address: str) -> None:
    AddressPolicy().check_address(ipaddress.ip_address(address))


def test_the_longer_prefix_wins_and_deny_wins_a_tie() -> None:
    policy = AddressPolicy(allow_cidrs=["10.0.0.0/8", "8.8.8.8/32"], deny_cidrs=["10.1.0.0/16", "8.8.8.0/24"])
    assert policy.allows(ipaddress.ip_address("10.2.3.4"))
    assert not policy.allows(ipaddress.ip_address("10.1.2.3"))
    assert policy.allows(ipaddress.ip_address("8.8.8.8"))  # a /32 allow inside a /24 deny
    assert not policy.allows(ipaddress.ip_address("8.8.8.9"))
    tie = AddressPolicy(allow_cidrs=["127.0.0.0/8"], deny_cidrs=["127.0.0.0/8"])
    assert not tie.allows(ipaddress.ip_address("127.0.0.1"))


def test_allowing_loopback_does_not_allow_the_unspecified_address() -> None:
    policy = AddressPolicy(allow_cidrs=["127.0.0.0/8", "::1/128"])
    assert policy.allows(ipaddress.ip_address("127.0.0.2"))
    assert not policy.allows(ipaddress.ip_address("0.0.0.0"))
    assert not policy.allows(ipaddress.ip_address("::"))


def test_ipv4_mapped_addresses_are_judged_as_ipv4() -> None:
    policy = AddressPolicy(deny_cidrs=["8.8.8.0/24"])
    with pytest.raises(SourceForbidden):
        policy.check_address(ipaddress.ip_address("::ffff:8.8.8.8"))
    AddressPolicy().check_address(ipaddress.ip_address("::ffff:8.8.4.4"))


def test_host_lists_match_names_case_and_trailing_dot_and_wildcards() -> None:
    policy = AddressPolicy(allow_hosts=["images.example.com", "*.cdn.example"], deny_hosts=["bad.cdn.example"])
    for allowed in ("images.example.com", "IMAGES.example.com.", "a.cdn.example", "x.y.cdn.example"):
        policy.check_host(allowed)
    for refused in ("example.com", "cdn.example", "bad.cdn.example", "BAD.cdn.example.", "evilcdn.example"):
        with pytest.raises(SourceForbidden):
            policy.check_host(refused)


def test_an_empty_allow_list_allows_any_host_not_denied() -> None:
    policy = AddressPolicy(deny_hosts=["metadata.google.internal"])
    policy.check_host("example.com")
    with pytest.raises(SourceForbidden):
        policy.check_host("Metadata.Google.Internal.")
