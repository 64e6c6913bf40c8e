"""Where a URL may point: forbidden addresses, odd spellings, redirects and DNS rebinding.

Forbidden addresses that can be bound here get a real listener (a ConnectionTrap) and
the test asserts it saw zero connections. Ranges that cannot be bound here come from a
FakeDnsResolver, and the test asserts the refusal is ``source_forbidden`` (decided before
any connection), not ``source_unreachable`` or ``source_timeout`` (a connection tried).
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Awaitable
from typing import Any

import pytest

from app.fetch.policy import AddressPolicy
from processing.errors import ItemError
from tests.conftest import TierFactory
from tests.hostile.conftest import IMAGE_SERVER_ONLY, PRODUCTION_POLICY, FetcherFactory, TrapFactory
from tests.hostile.tierclient import item_codes, post_json
from tests.hostile.traps import ConnectionTrap, FakeDnsResolver, RecordingResolver, ipv6_loopback_available
from tests.support.imageserver import FIXTURES, ImageServer

COFFEE = (FIXTURES / "coffee.jpg").read_bytes()
DEV_POLICY = AddressPolicy(allow_cidrs=["127.0.0.0/8", "::1/128"])  # as deploy/config.dev.yaml

needs_ipv6 = pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback here")


async def refusal(fetch: Awaitable[bytes]) -> str:
    """The error code of a fetch that must fail."""
    with pytest.raises(ItemError) as caught:
        await fetch
    return caught.value.code


# --- Loopback in every spelling, with a real listener that must see nothing ----------

IPV4_LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "localhost",
    "LocalHost",
    "2130706433",  # decimal
    "0x7f000001",  # hex
    "0x7f.1",  # hex, shortened
    "017700000001",  # octal
    "0177.0.0.1",  # octal first octet
    "127.1",  # shortened
    "127.0.1",
    "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
    "[::ffff:7f00:1]",
    "0.0.0.0",  # the unspecified address is dialled as loopback
    "0",
]


@pytest.mark.gen_test
@pytest.mark.parametrize("host", IPV4_LOOPBACK_SPELLINGS)
async def test_loopback_in_any_spelling_is_never_dialled(
    host: str, fetchers: FetcherFactory, traps: TrapFactory
) -> None:
    trap = traps("127.0.0.1")
    code = await refusal(fetchers(PRODUCTION_POLICY).fetch(trap.url(host=host)))
    assert (code, trap.connections) == ("source_forbidden", 0)


@pytest.mark.gen_test(timeout=30)
async def test_a_production_tier_dials_no_spelling_of_loopback(make_tier: TierFactory, traps: TrapFactory) -> None:
    """The same through the HTTP layer: every spelling is an item error, and the trap sees nothing."""
    tier = await make_tier(["fetch.allow_cidrs=[]"])
    trap = traps("127.0.0.1")
    urls = [trap.url(host=host) for host in IPV4_LOOPBACK_SPELLINGS]
    code, answer = await post_json(tier, urls)
    assert code == 200 and item_codes(answer) == ["source_forbidden"] * len(urls), answer
    assert trap.connections == 0


@pytest.mark.gen_test
@pytest.mark.parametrize("host", ["127.0.0.2", "2130706434", "127.2", "[::ffff:127.0.0.2]"])
async def test_the_rest_of_127_8_is_loopback_too(host: str, fetchers: FetcherFactory, traps: TrapFactory) -> None:
    trap = traps("127.0.0.2")
    code = await refusal(fetchers(PRODUCTION_POLICY).fetch(trap.url(host=host)))
    assert (code, trap.connections) == ("source_forbidden", 0)


@needs_ipv6
@pytest.mark.gen_test
@pytest.mark.parametrize("host", ["[::1]", "[0:0:0:0:0:0:0:1]", "[::]", "[::127.0.0.1]"])
async def test_ipv6_loopback_and_unspecified_are_never_dialled(
    host: str, fetchers: FetcherFactory, traps: TrapFactory
) -> None:
    trap = traps("::1")
    code = await refusal(fetchers(PRODUCTION_POLICY).fetch(trap.url(host=host)))
    assert (code, trap.connections) == ("source_forbidden", 0)


@pytest.mark.gen_test
@pytest.mark.parametrize("host", ["0.0.0.0", "0", "[::]"])
async def test_the_dev_loopback_allowance_does_not_cover_the_unspecified_address(
    host: str, fetchers: FetcherFactory, traps: TrapFactory
) -> None:
    if host == "[::]" and not ipv6_loopback_available():
        pytest.skip("no IPv6 loopback here")
    trap = traps("::1" if host == "[::]" else "127.0.0.1")
    code = await refusal(fetchers(DEV_POLICY).fetch(trap.url(host=host)))
    assert (code, trap.connections) == ("source_forbidden", 0)


@pytest.mark.gen_test
async def test_tornado_resolves_ip_literals_through_our_resolver(fetchers: FetcherFactory, images: ImageServer) -> None:
    """Why odd spellings cannot slip through: every host goes through the guarded resolver.

    A canonical IP literal is checked there without a lookup; any other spelling is resolved
    by the inner resolver and the address it answers is checked.
    """
    resolver = RecordingResolver()
    assert await fetchers(resolver=resolver).fetch(images.url("coffee.jpg")) == COFFEE
    assert resolver.calls == []  # 127.0.0.1 needed no lookup, and the dev policy allowed it
    assert await refusal(fetchers(PRODUCTION_POLICY, resolver=resolver).fetch(images.url("coffee.jpg"))) == (
        "source_forbidden"
    )
    assert await refusal(fetchers(PRODUCTION_POLICY, resolver=resolver).fetch("http://2130706433:9/")) == (
        "source_forbidden"
    )
    assert resolver.calls == [("2130706433", 9)]


# --- Ranges that cannot be bound here, from a fake DNS --------------------------------

FORBIDDEN_ANSWERS = [
    "10.0.0.1",  # private
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata (link-local)
    "169.254.0.1",
    "100.64.0.1",  # shared address space (carrier-grade NAT)
    "100.127.255.254",
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "192.0.2.1",  # documentation
    "198.51.100.7",
    "203.0.113.9",
    "198.18.0.1",  # benchmarking
    "192.0.0.8",  # IETF protocol assignments
    "240.0.0.1",  # reserved
    "255.255.255.255",  # broadcast
    "0.1.2.3",  # "this network"
    "fe80::1",  # link-local
    "fc00::1",  # unique local
    "fd00:ec2::254",  # the cloud metadata service over IPv6
    "ff02::1",  # multicast
    "2001:db8::1",  # documentation
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b::808:808",  # NAT64 of a public address: the translator is inside
    "64:ff9b:1::1",  # local-use NAT64
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2001::1",  # Teredo
    "::ffff:10.0.0.1",  # IPv4-mapped private
    "::ffff:169.254.169.254",
    "fec0::1",  # deprecated site-local
    "100::1",  # discard-only
    "3fff::1",  # documentation (RFC 9637)
    "192.0.0.170",  # NAT64 discovery
]


@pytest.mark.gen_test
@pytest.mark.parametrize("address", FORBIDDEN_ANSWERS)
async def test_forbidden_ranges_are_refused_before_connecting(address: str, fetchers: FetcherFactory) -> None:
    dns = FakeDnsResolver(answers={"photos.example": [[address]]})
    code = await refusal(fetchers(PRODUCTION_POLICY, resolver=dns).fetch("http://photos.example/cat.jpg"))
    assert code == "source_forbidden"  # not source_unreachable/source_timeout: no connection was tried
    assert dns.calls == ["photos.example"]


@pytest.mark.gen_test
async def test_one_forbidden_address_among_public_ones_refuses_the_host(fetchers: FetcherFactory) -> None:
    dns = FakeDnsResolver(answers={"photos.example": [["93.184.216.34", "10.0.0.1", "2606:2800:220:1::1"]]})
    code = await refusal(fetchers(PRODUCTION_POLICY, resolver=dns).fetch("http://photos.example/cat.jpg"))
    assert code == "source_forbidden"


# --- Configured allow and deny ---------------------------------------------------------


@pytest.mark.gen_test
async def test_deny_cidrs_and_deny_hosts_refuse_an_otherwise_allowed_source(
    fetchers: FetcherFactory, images: ImageServer
) -> None:
    hits = len(images.hits)
    narrower_deny = AddressPolicy(allow_cidrs=["127.0.0.0/8"], deny_cidrs=["127.0.0.1/32"])
    assert await refusal(fetchers(narrower_deny).fetch(images.url("coffee.jpg"))) == "source_forbidden"
    dns = FakeDnsResolver(answers={"images.example": [["127.0.0.1"]]})
    by_name = AddressPolicy(allow_cidrs=["127.0.0.1/32"], deny_hosts=["*.example"])
    url = f"http://images.example:{images.port}/coffee.jpg"
    assert await refusal(fetchers(by_name, resolver=dns).fetch(url)) == "source_forbidden"
    assert dns.calls == []  # refused by name, before any resolution
    assert len(images.hits) == hits


@pytest.mark.gen_test
async def test_allow_hosts_is_the_only_list_fetched(fetchers: FetcherFactory, images: ImageServer) -> None:
    dns = FakeDnsResolver(answers={"images.example": [["127.0.0.1"]], "other.example": [["127.0.0.1"]]})
    fetcher = fetchers(AddressPolicy(allow_cidrs=["127.0.0.1/32"], allow_hosts=["images.example"]), resolver=dns)
    assert await fetcher.fetch(f"http://images.example:{images.port}/coffee.jpg") == COFFEE
    assert await refusal(fetcher.fetch(f"http://other.example:{images.port}/coffee.jpg")) == "source_forbidden"
    assert await refusal(fetcher.fetch(images.url("coffee.jpg"))) == "source_forbidden"  # IP literal not listed


# --- Redirects ---------------------------------------------------------------------------


@pytest.mark.gen_test
@pytest.mark.parametrize("host", ["127.0.0.2", "2130706434", "[::ffff:127.0.0.2]"])
async def test_a_redirect_to_a_forbidden_address_is_refused(
    host: str, fetchers: FetcherFactory, traps: TrapFactory, images: ImageServer
) -> None:
    trap = traps("127.0.0.2")
    path = f"hostile/redirect-to-trap-{host}"
    images.route(path, lambda h: h.redirect(trap.url(host=host)))
    code = await refusal(fetchers(IMAGE_SERVER_ONLY).fetch(images.url(path)))
    assert (code, trap.connections) == ("redirect_forbidden", 0)


@pytest.mark.gen_test
async def test_a_redirect_to_the_metadata_service_is_refused(fetchers: FetcherFactory, images: ImageServer) -> None:
    dns = FakeDnsResolver(answers={"images.example": [["127.0.0.1"]], "metadata.example": [["169.254.169.254"]]})
    images.route("hostile/to-metadata", lambda h: h.redirect("http://metadata.example/latest/meta-data/"))
    url = f"http://images.example:{images.port}/hostile/to-metadata"
    assert await refusal(fetchers(resolver=dns).fetch(url)) == "redirect_forbidden"
    assert dns.calls == ["images.example", "metadata.example"]


@pytest.mark.gen_test
@pytest.mark.parametrize(
    "location",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/coffee.jpg",
        "gopher://127.0.0.1:70/_GET",
        "javascript:alert(1)",
        "data:image/jpeg;base64,/9j/4AAQ",
        "http://user:secret@127.0.0.1/coffee.jpg",
        "http://exa mple.com/",
    ],
)
async def test_a_redirect_to_a_url_we_never_fetch_is_refused(
    location: str, fetchers: FetcherFactory, images: ImageServer
) -> None:
    path = f"hostile/redirect-to-{zlib.crc32(location.encode())}"
    images.route(path, lambda h: h.redirect(location))
    assert await refusal(fetchers().fetch(images.url(path))) == "redirect_forbidden"


@pytest.mark.gen_test
async def test_a_redirect_loop_stops_at_the_limit(fetchers: FetcherFactory, images: ImageServer) -> None:
    images.route("hostile/loop", lambda h: h.redirect("/hostile/loop"))
    before = images.hits.count("/hostile/loop")
    assert await refusal(fetchers(max_redirects=3).fetch(images.url("hostile/loop"))) == "too_many_redirects"
    assert images.hits.count("/hostile/loop") - before == 4  # the URL and 3 redirects, then no more


def redirect_to(location: str, handler: Any) -> None:
    handler.redirect(location)


@pytest.mark.gen_test
async def test_a_chain_longer_than_the_limit_fails_and_one_within_it_works(
    fetchers: FetcherFactory, images: ImageServer
) -> None:
    for i, target in enumerate(["/hostile/chain-1", "/hostile/chain-2", "/coffee.jpg"]):
        images.route(f"hostile/chain-{i}", functools.partial(redirect_to, target))
    assert await fetchers(max_redirects=3).fetch(images.url("hostile/chain-0")) == COFFEE
    assert await refusal(fetchers(max_redirects=2).fetch(images.url("hostile/chain-0"))) == "too_many_redirects"


# --- DNS rebinding -------------------------------------------------------------------------
#
# A rebinding attacker's DNS answers a harmless address to whoever checks and an internal
# one to whoever connects. Here 127.0.0.1 (allowed, the image server) plays the harmless
# public address and 127.0.0.2 (forbidden, a trap on the same port) the internal one. The
# fetcher never checks one resolution and dials another: each connection resolves once,
# and that answer is both judged and dialled.


@pytest.mark.gen_test
async def test_rebinding_between_two_fetches_is_caught_on_the_second(
    fetchers: FetcherFactory, traps: TrapFactory, images: ImageServer
) -> None:
    trap = traps("127.0.0.2", images.port)
    dns = FakeDnsResolver(answers={"rebind.example": [["127.0.0.1"], ["127.0.0.2"]]})
    fetcher = fetchers(IMAGE_SERVER_ONLY, resolver=dns)
    url = f"http://rebind.example:{images.port}/coffee.jpg"
    assert await fetcher.fetch(url) == COFFEE
    assert await refusal(fetcher.fetch(url)) == "source_forbidden"
    assert (dns.calls, trap.connections) == (["rebind.example", "rebind.example"], 0)


@pytest.mark.gen_test
async def test_rebinding_between_redirect_hops_is_caught_on_the_hop(
    fetchers: FetcherFactory, traps: TrapFactory, images: ImageServer
) -> None:
    trap = traps("127.0.0.2", images.port)
    dns = FakeDnsResolver(answers={"rebind.example": [["127.0.0.1"], ["127.0.0.2"]]})
    images.route("hostile/rebind-hop", lambda h: h.redirect("/coffee.jpg"))
    url = f"http://rebind.example:{images.port}/hostile/rebind-hop"
    assert await refusal(fetchers(IMAGE_SERVER_ONLY, resolver=dns).fetch(url)) == "redirect_forbidden"
    assert (dns.calls, trap.connections) == (["rebind.example", "rebind.example"], 0)


def test_trap_counts_what_reaches_it() -> None:
    """The traps above prove nothing if they cannot count: one real connection is counted."""
    import socket

    trap = ConnectionTrap("127.0.0.2")
    try:
        with socket.create_connection((trap.host, trap.port), timeout=2):
            pass
        assert trap.connections == 1
    finally:
        trap.close()
