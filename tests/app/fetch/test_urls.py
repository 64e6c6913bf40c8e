"""Which URLs the fetcher accepts at all."""

from __future__ import annotations

import pytest

from app.fetch.errors import UrlInvalid
from app.fetch.urls import validate_url


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.jpg",
        "file:///etc/passwd",
        "gopher://example.com/",
        "javascript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        "//example.com/a.jpg",
        "example.com/a.jpg",
        "http://user:pass@example.com/a.jpg",
        "http://user@example.com/a.jpg",
        "http://example.com\\@127.0.0.1/",
        "http:///a.jpg",
        "http://example.com:0/",
        "http://example.com:99999/",
        "http://example.com:80:80/",
        "http://exa mple.com/",
        "http://example.com/a\nb.jpg",
        "http://example.com/\x00.jpg",
        "http://" + "a" * 64 + ".example.com/",  # a DNS label longer than 63 characters
        "http://example.com/" + "a" * 2048,
    ],
)
def test_urls_we_never_fetch_are_invalid(url: str) -> None:
    with pytest.raises(UrlInvalid):
        validate_url(url)


@pytest.mark.parametrize(
    "url",
    ["http://example.com/a.jpg", "HTTPS://Example.COM:8443/a.jpg?x=1#f", "http://[2001:4860::1]/", "http://bücher.de/"],
)
def test_ordinary_urls_are_valid(url: str) -> None:
    assert validate_url(url).host


def test_a_hop_holds_the_host_port_and_scheme_once_read() -> None:
    hop = validate_url("HTTPS://Example.COM/a.jpg")
    assert (hop.scheme, hop.host, hop.port, hop.host_header) == ("https", "example.com", 443, "example.com")
    hop = validate_url("http://[2001:4860::1]:8080/")
    assert (hop.host, hop.port, hop.host_header) == ("2001:4860::1", 8080, "[2001:4860::1]:8080")


@pytest.mark.parametrize("space", ["\u00a0", "\u2028", "\u3000", "\t", "\x0b"])
def test_unicode_spaces_are_refused_like_ascii_ones(space: str) -> None:
    with pytest.raises(UrlInvalid, match="whitespace"):
        validate_url(f"http://example.com/a{space}b.jpg")


def test_a_lone_surrogate_is_invalid() -> None:
    with pytest.raises(UrlInvalid, match="surrogate"):
        validate_url("http://example.com/\udc80.jpg")


def test_the_request_line_and_host_are_ascii() -> None:
    hop = validate_url("http://bücher.example:8080/café/ß.jpg?q=ü&x=1")
    assert hop.target == "/caf%C3%A9/%C3%9F.jpg?q=%C3%BC&x=1"
    assert hop.host_header == "xn--bcher-kva.example:8080"
    assert validate_url("http://[::1]/a.jpg").host_header == "[::1]"
    assert validate_url("http://a.example").target == "/"
