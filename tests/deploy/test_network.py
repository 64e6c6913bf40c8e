"""The NetworkPolicies: default deny, TF Serving's gRPC port open to the tier only and its REST (metrics) port to
Prometheus only, the tier's DNS to kube-dns only, and its fetch egress the complement of what app/fetch/policy.py
refuses (derived from the policy itself, for IPv4 and IPv6).

Each check returns its findings; each has a test that breaks a copy of the manifests to show it notices.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest

from app.fetch.policy import EXTRA_DENIED, AddressPolicy, IPNetwork
from tests.deploy.manifests import Doc, named, selects, workloads

TIER = {"app.kubernetes.io/name": "imagegate"}
TFSERVING = {"app.kubernetes.io/name": "tfserving"}
KUBE_DNS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}


def special_networks(version: int) -> list[IPNetwork]:
    """Every range Python's ipaddress classifies (the policy's ``_is_special`` asks about these), and EXTRA_DENIED."""
    address: Any = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    constants = address._constants
    found: list[IPNetwork] = [*constants._private_networks, constants._multicast_network, constants._linklocal_network]
    found += [constants._loopback_network] if version == 4 else [ipaddress.ip_network("::1/128")]
    found += [constants._public_network] if version == 4 else [constants._sitelocal_network]
    found += [constants._reserved_network] if version == 4 else constants._reserved_networks
    return [*found, *(n for n in EXTRA_DENIED if n.version == version)]


def refused_by_the_policy(version: int) -> list[IPNetwork]:
    """The ranges the tier's default fetch policy refuses, collapsed (checked at both ends of each range)."""
    policy = AddressPolicy()
    refused = [n for n in special_networks(version) if not policy.allows(n[0]) and not policy.allows(n[-1])]
    return _collapse(refused)


def _collapse(networks: Iterable[IPNetwork]) -> list[IPNetwork]:
    collapse: Any = ipaddress.collapse_addresses  # typed for one IP version at a time; ours are one version
    return list(collapse(networks))


def _exclude(networks: Iterable[IPNetwork], removed: Iterable[IPNetwork]) -> list[IPNetwork]:
    remaining = list(networks)
    for cut in removed:
        pieces: list[IPNetwork] = []
        for network in remaining:
            if network.version != cut.version or not network.overlaps(cut):
                pieces.append(network)
            elif not cut.supernet_of(network):  # type: ignore[arg-type]
                pieces += network.address_exclude(cut)  # type: ignore[arg-type]
        remaining = pieces
    return _collapse(remaining)


def allowed_by_the_policy(version: int) -> list[IPNetwork]:
    everything = ipaddress.ip_network("0.0.0.0/0" if version == 4 else "::/0")
    return _exclude([everything], refused_by_the_policy(version))


def fetch_rule(docs: Sequence[Doc]) -> Doc:
    """The tier's egress rule for ports 80 and 443."""
    egress = named(docs, "NetworkPolicy", "imagegate-egress")["spec"]["egress"]
    rules: list[Doc] = [r for r in egress if {p["port"] for p in r.get("ports", [])} == {80, 443}]
    (rule,) = rules
    return rule


def fetch_blocks(docs: Sequence[Doc]) -> list[Doc]:
    return [peer["ipBlock"] for peer in fetch_rule(docs)["to"]]


def egress_mismatches(docs: Sequence[Doc]) -> list[str]:
    """Where the fetch egress differs from the policy's allowed space, per IP version."""
    found = []
    for version in (4, 6):
        blocks = [b for b in fetch_blocks(docs) if ipaddress.ip_network(b["cidr"]).version == version]
        opened = _exclude(
            [ipaddress.ip_network(b["cidr"]) for b in blocks],
            [ipaddress.ip_network(c) for b in blocks for c in b.get("except", [])],
        )
        wanted = allowed_by_the_policy(version)
        if opened != wanted:
            extra, missing = _exclude(opened, wanted), _exclude(wanted, opened)
            found.append(f"IPv{version}: opens {[str(n) for n in extra]}, misses {[str(n) for n in missing]}")
    return found


def _ingress_peers(policy: Doc, port: int) -> list[Doc]:
    return [
        peer
        for rule in policy["spec"].get("ingress", [])
        if any(p["port"] == port for p in rule.get("ports", [])) or "ports" not in rule
        for peer in rule.get("from", [{}])
    ]


def tfserving_ingress_gaps(docs: Sequence[Doc]) -> list[str]:
    """TF Serving's :8500 from anything but tier pods, its REST port from anything but Prometheus, or more ports."""
    found = []
    policies = [d for d in docs if d["kind"] == "NetworkPolicy" and "Ingress" in d["spec"].get("policyTypes", [])]
    tfserving = [p for p in policies if not p["spec"]["podSelector"] or selects(p["spec"]["podSelector"], TFSERVING)]
    for policy in tfserving:
        for rule in policy["spec"].get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            if not ports or ports - {8500, 8501}:
                found.append(f"{policy['metadata']['name']}: opens ports {ports or 'all'}")
        for peer in _ingress_peers(policy, 8500):
            if "namespaceSelector" in peer or "ipBlock" in peer or not selects(peer.get("podSelector", {}), TIER):
                found.append(f"{policy['metadata']['name']}: :8500 from {peer}")
        for peer in _ingress_peers(policy, 8501):
            if "prometheus" not in str(peer.get("podSelector", {})) or "namespaceSelector" not in peer:
                found.append(f"{policy['metadata']['name']}: :8501 from {peer}")
    return found


def default_deny_gaps(docs: Sequence[Doc]) -> list[str]:
    """Each namespace needs a policy selecting every pod, isolating both ways and allowing nothing: a pod added
    later is denied until a policy of its own opens what it needs."""
    namespaces = {w["metadata"]["namespace"] for w in workloads(docs)}
    denying = {
        d["metadata"]["namespace"]
        for d in docs
        if d["kind"] == "NetworkPolicy"
        and not d["spec"]["podSelector"]
        and set(d["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not d["spec"].get("ingress")
        and not d["spec"].get("egress")
    }
    return [f"namespace {ns}: no default-deny NetworkPolicy" for ns in sorted(namespaces - denying)]


def dns_gaps(docs: Sequence[Doc]) -> list[str]:
    """The tier's port-53 rules must name kube-dns (a rule without ``to`` opens port 53 to any address)."""
    egress = named(docs, "NetworkPolicy", "imagegate-egress")["spec"]["egress"]
    found = []
    for rule in egress:
        if not any(p["port"] == 53 for p in rule.get("ports", [])) and rule.get("ports"):
            continue
        for peer in rule.get("to", [{}]):
            dns = peer.get("podSelector", {}).get("matchLabels", {}).get("k8s-app") == "kube-dns"
            if not (dns and peer.get("namespaceSelector") == KUBE_DNS["namespaceSelector"]):
                found.append(f"port 53 (or every port) to {peer}")
    return found


def test_the_fetch_egress_is_what_the_fetch_policy_allows(rendered: list[Doc]) -> None:
    assert egress_mismatches(rendered) == []


def test_the_derivation_covers_the_issues_ranges() -> None:
    refused = refused_by_the_policy(4)
    for cidr in ("0.0.0.0/8", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24"):
        assert any(ipaddress.ip_network(cidr).subnet_of(n) for n in refused), cidr  # type: ignore[arg-type]
    assert ipaddress.ip_network("224.0.0.0/3") in refused
    assert any(n.supernet_of(ipaddress.ip_network("2a00::/16")) for n in allowed_by_the_policy(6))  # type: ignore[arg-type]


def test_tfserving_is_reachable_only_from_the_tier_and_prometheus(rendered: list[Doc]) -> None:
    assert tfserving_ingress_gaps(rendered) == []
    assert named(rendered, "NetworkPolicy", "tfserving-ingress")


def test_every_pod_is_isolated_both_ways(rendered: list[Doc]) -> None:
    assert default_deny_gaps(rendered) == []


def test_the_tiers_dns_goes_to_kube_dns_only(rendered: list[Doc]) -> None:
    assert dns_gaps(rendered) == []


Breakage = Callable[[list[Doc]], object]


def _policy(docs: list[Doc], name: str) -> Doc:
    return named(docs, "NetworkPolicy", name)


BREAKAGES: dict[str, tuple[Callable[[list[Doc]], list[str]], Breakage]] = {
    "an except dropped": (egress_mismatches, lambda d: fetch_blocks(d)[0]["except"].remove("192.0.2.0/24")),
    "an IPv4-only egress": (egress_mismatches, lambda d: fetch_rule(d)["to"].pop()),
    "IPv6 without exceptions": (egress_mismatches, lambda d: fetch_blocks(d)[1].pop("except")),
    "grpc from any pod": (
        tfserving_ingress_gaps,
        lambda d: _policy(d, "tfserving-ingress")["spec"]["ingress"][0]["from"][0].update(podSelector={}),
    ),
    "metrics from the tier": (
        tfserving_ingress_gaps,
        lambda d: _policy(d, "tfserving-ingress")["spec"]["ingress"][1].update(
            {"from": [{"podSelector": {"matchLabels": TIER}}]}
        ),
    ),
    "an open port": (
        tfserving_ingress_gaps,
        lambda d: _policy(d, "tfserving-ingress")["spec"]["ingress"][0].pop("ports"),
    ),
    "no default deny": (default_deny_gaps, lambda d: d.remove(_policy(d, "default-deny"))),
    "a default that allows": (default_deny_gaps, lambda d: _policy(d, "default-deny")["spec"].update(egress=[{}])),
    "DNS to anywhere": (dns_gaps, lambda d: _policy(d, "imagegate-egress")["spec"]["egress"][1].pop("to")),
}


@pytest.mark.parametrize(("check", "breakage"), BREAKAGES.values(), ids=BREAKAGES.keys())
def test_the_network_checks_notice(
    rendered: list[Doc], check: Callable[[list[Doc]], list[str]], breakage: Breakage
) -> None:
    broken = copy.deepcopy(rendered)
    breakage(broken)
    assert check(broken)
