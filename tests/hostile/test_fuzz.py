"""Fuzzing the whole request grammar through HTTP against a tier process, on one keep-alive connection.

Every generated request (JSON of any shape and nesting, URLs of every kind, query strings,
multipart bodies with odd boundaries and headers, raw bytes, odd paths and Content-Types) must get
a documented status with a documented body; the next request on the same connection must succeed
(unless the answer said ``Connection: close``); and the tier's log must hold no traceback.

The tier may download only from this test's image server, which listens alone on 127.0.0.5: the
policy allows that one address and that one host name, so no generated URL reaches anything else
and no name is ever resolved. Fixed seed (``derandomize``), 2,200 examples in all.
"""

from __future__ import annotations

import base64
import json
import socket
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile.payloads import multipart
from tests.support.backend import LocalBackend
from tests.support.imageserver import FIXTURES, ImageServer
from tests.support.tier import TierProcess, start_tier

IMAGE_HOST = "127.0.0.5"
COFFEE = (FIXTURES / "coffee.jpg").read_bytes()
DIGIT = (FIXTURES / "digit_3.png").read_bytes()
DOCUMENTED_STATUSES = {200, 400, 404, 405, 413, 415}
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
STATUS_COUNTS: Counter[int] = Counter()


@dataclass
class Connection:
    """One keep-alive connection to the tier, reopened only when the tier said it would close it."""

    port: int
    sock: socket.socket | None = None

    def send(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=20)
        self.sock.sendall(raw)
        status, headers, body = read_response(self.sock)
        if headers.get("connection", "").lower() == "close":
            self.sock.close()
            self.sock = None
        return status, headers, body


def read_response(sock: socket.socket, data: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One final answer from ``sock``, after any ``100 Continue``."""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the tier closed the connection without an answer (had {data[:200]!r})"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    if lines[0].split()[1].startswith("1"):
        return read_response(sock, body)
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the tier closed the connection in the middle of an answer"
        body += chunk
    return int(lines[0].split()[1]), headers, body[:length]


@pytest.fixture(scope="module")
def fuzz_images() -> Iterator[ImageServer]:
    with ImageServer(host=IMAGE_HOST) as server:
        yield server


@pytest.fixture(scope="module")
def fuzzed_tier(backend: LocalBackend, fuzz_images: ImageServer) -> Iterator[TierProcess]:
    overrides = [
        f"fetch.allow_cidrs=[{IMAGE_HOST}/32]",
        f"fetch.allow_hosts=[{IMAGE_HOST}]",
        "fetch.total_timeout_s=3",
        "server.max_images_per_request=6",
        "server.max_parts=8",
        "server.max_json_bytes=65536",
    ]
    tier = start_tier(backend.address, overrides=overrides)
    yield tier
    tier.stop()
    output = "".join(tier.output)
    assert "Traceback" not in output, output[-4000:]
    print(f"\nfuzz: {sum(STATUS_COUNTS.values())} requests, statuses {dict(sorted(STATUS_COUNTS.items()))}")


@pytest.fixture(scope="module")
def connection(fuzzed_tier: TierProcess) -> Connection:
    return Connection(int(fuzzed_tier.base_url.rsplit(":", 1)[1]))


def http_request(method: str, path: str, content_type: str | None, body: bytes, extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: tier\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    return (head + extra + f"Content-Length: {len(body)}\r\n\r\n").encode("utf-8", "surrogatepass") + body


def check(connection: Connection, raw: bytes) -> None:
    """The answer is documented, and the connection (or a new one, if announced) serves the next request."""
    status, headers, body = connection.send(raw)
    STATUS_COUNTS[status] += 1
    assert status in DOCUMENTED_STATUSES, (status, body[:300])
    answer = json.loads(body, parse_constant=lambda name: pytest.fail(f"{name} in the answer"))
    if status == 200:
        assert isinstance(answer.get("predictions"), list), answer
        for item in answer["predictions"]:
            assert ("classes" in item) != ("error" in item) or "outputs" in item, item
    else:
        assert set(answer) == {"error"} and set(answer["error"]) == {"code", "message", "request_id"}, answer
        assert headers.get("content-type", "").startswith("application/json")
        assert answer["error"]["request_id"] == headers["x-request-id"]
    follow_up, _, _ = connection.send(http_request("GET", "/healthz", None, b""))
    assert follow_up == 200


# --- the grammar ----------------------------------------------------------------------------

LONE_SURROGATES = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=2)
TEXT = st.text(st.characters(codec="utf-8"), max_size=12) | LONE_SURROGATES
JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT
JSON_ANY = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=10,
)
IMAGE_PATHS = st.sampled_from(["coffee.jpg", "chelsea.jpg", "digit_3.png", "nope.jpg", "", "a/../coffee.jpg"])
URLS = st.one_of(
    st.builds(lambda p, port: f"http://{IMAGE_HOST}:{port}/{p}", IMAGE_PATHS, st.sampled_from(["PORT", "1", "0"])),
    st.builds(
        lambda host, p: f"http://{host}/{p}", st.sampled_from(["example.com", "10.0.0.1", "[::1]", "xn--e"]), TEXT
    ),
    st.builds(lambda scheme, rest: f"{scheme}://{rest}", st.sampled_from(["ftp", "file", "gopher", "HTTP"]), TEXT),
    TEXT,
)
INSTANCES = st.one_of(
    URLS,
    st.builds(lambda url: {"url": url}, URLS),
    st.builds(lambda data: {"b64": base64.b64encode(data).decode()}, st.sampled_from([DIGIT, COFFEE[:300], b""])),
    st.builds(lambda text: {"b64": text}, TEXT),
    JSON_ANY,
)
TOP_K = st.one_of(st.integers(-5, 1005), TEXT, st.sampled_from(["3", "\u00b9", "\u0663", " 7 ", "1e2"]), JSON_ANY)
DOCUMENTS = st.one_of(
    JSON_ANY,
    st.lists(INSTANCES, max_size=7),
    st.fixed_dictionaries({"instances": st.lists(INSTANCES, max_size=7)}, optional={"top_k": TOP_K, "x": JSON_ANY}),
    st.integers(1, 200).map(lambda depth: "[" * depth + "]" * depth),  # nesting, as raw text
)
MODELS = st.sampled_from(["tiny", "digits", "mobilenet_v2", "nope", "%ff", "t%69ny", "digits/versions/2"])
PATHS = st.one_of(
    st.builds(lambda model: f"/v1/models/{model}:predict", MODELS),
    st.builds(lambda label: f"/v1/models/digits/labels/{label}:predict", st.sampled_from(["stable", "x", "%e2%82"])),
    st.builds(lambda text: "/v1/models/tiny:predict?top_k=" + urllib.parse.quote(text, errors="surrogatepass"), TEXT),
    st.sampled_from(["/v1/models/tiny:predict?top_k=2&x=1", "/nope", "/v1/models/tiny:predictx"]),
)
CONTENT_TYPES = st.one_of(
    st.sampled_from(["application/json", "image/jpeg", "image/png", "application/octet-stream", "text/plain"]),
    st.sampled_from(["multipart/form-data", "application/json; charset=latin1", "IMAGE/PNG", ""]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
)


def with_port(text: str, images: ImageServer) -> str:
    return text.replace("PORT", str(images.port))


@settings(FUZZ, max_examples=900)
@given(path=PATHS, document=DOCUMENTS)
def test_json_bodies(connection: Connection, fuzz_images: ImageServer, path: str, document: Any) -> None:
    text = document if isinstance(document, str) and document.startswith("[") else json.dumps(document)
    check(connection, http_request("POST", path, "application/json", with_port(text, fuzz_images).encode()))


BOUNDARIES = st.one_of(st.just("b0undary"), st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=80))
PART_NAMES = st.sampled_from(["image", "data", "file", "images", "top_k", "other", ""])
PART_DATA = st.sampled_from([DIGIT, COFFEE[:500], b"", b"3", "\u00b9".encode(), b"--b0undary"]) | st.binary(max_size=64)
PARTS = st.lists(st.tuples(PART_NAMES, st.one_of(st.none(), st.sampled_from(["a.png", "", "x\u00e9.jpg"])), PART_DATA))


@settings(FUZZ, max_examples=500)
@given(
    path=PATHS,
    boundary=BOUNDARIES,
    declared=st.one_of(st.none(), BOUNDARIES),
    parts=PARTS,
    cut=st.one_of(st.none(), st.integers(0, 600)),
)
def test_multipart_bodies(
    connection: Connection, path: str, boundary: str, declared: str | None, parts: Any, cut: int | None
) -> None:
    body, _ = multipart(parts, boundary=boundary)
    body = body if cut is None else body[:cut]
    content_type = "multipart/form-data" + (f"; boundary={declared if declared is not None else boundary}")
    check(connection, http_request("POST", path, content_type, body))


@settings(FUZZ, max_examples=500)
@given(
    path=PATHS,
    content_type=st.one_of(st.none(), CONTENT_TYPES),
    body=st.one_of(st.binary(max_size=300), st.sampled_from([DIGIT, COFFEE[:2000], b"\xff\xd8\xff\xe0", b"GIF89a"])),
    extra=st.sampled_from(["", "Expect: 100-continue\r\n", "X-Whatever: \u00e9\r\n", "Accept: */*\r\n"]),
)
def test_raw_bodies_content_types_and_headers(
    connection: Connection, path: str, content_type: str | None, body: bytes, extra: str
) -> None:
    check(connection, http_request("POST", path, content_type, body, extra))


@settings(FUZZ, max_examples=300)
@given(method=st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "OPTIONS"]), path=PATHS, body=st.binary(max_size=40))
def test_other_methods(connection: Connection, method: str, path: str, body: bytes) -> None:
    check(connection, http_request(method, path, "application/json", body))
