"""The test DNS server: the A records a test sets, over UDP and TCP on one port."""

from __future__ import annotations

from dnslib import RCODE, DNSRecord

from tests.support.dns import LoopbackDNS


def lookup(dns: LoopbackDNS, name: str, qtype: str = "A", tcp: bool = False) -> DNSRecord:
    question = DNSRecord.question(name, qtype)
    return DNSRecord.parse(question.send(dns.host, dns.port, tcp=tcp, timeout=5))


def test_answers_the_addresses_the_test_sets_over_udp_and_tcp() -> None:
    with LoopbackDNS("tfserving.test") as dns:
        dns.answer(["127.0.0.2", "127.0.0.3"])
        for tcp in (False, True):
            assert [str(rr.rdata) for rr in lookup(dns, "tfserving.test", tcp=tcp).rr] == ["127.0.0.2", "127.0.0.3"]
        dns.answer(["127.0.0.4"])
        assert [str(rr.rdata) for rr in lookup(dns, "TFServing.test.").rr] == ["127.0.0.4"]
        assert dns.queries == 3


def test_no_other_records_and_no_other_names() -> None:
    with LoopbackDNS("tfserving.test") as dns:
        dns.answer(["127.0.0.2"])
        aaaa = lookup(dns, "tfserving.test", "AAAA")
        assert aaaa.header.rcode == RCODE.NOERROR and not aaaa.rr
        assert lookup(dns, "other.test").header.rcode == RCODE.NXDOMAIN
        assert lookup(dns, "tfserving.test", "TXT").rr == []
        assert dns.queries == 0  # only A lookups of the name are counted
