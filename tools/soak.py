"""The soak: good, bad and oversized requests through nginx to a tier, from keep-alive clients, for minutes.

    .venv/bin/python -m tools.soak                        # 3 minutes, 16 clients, nginx buffering request bodies
    .venv/bin/python -m tools.soak --buffering off --seconds 60
    .venv/bin/python -m tools.soak --seconds 60 --set server.lingering_max_connections=0   # no lingering close

It starts the local backend (``build/models``, ``make models``), a tier (``deploy/config.dev.yaml``: the default
limits) and nginx in front of it (``tools.nginx.PROXY``: upstream keep-alive, ``proxy_next_upstream off``), runs the
clients, and prints how each kind of request was answered and nginx's upstream errors. The exit status is 1 if any
answer is not the one expected of its kind (a 502 among them) or a connection broke.

With ``--buffering off`` a client opens a new connection after each oversized request: nginx passes the tier's
early 413 on, then closes the client's connection (its own lingering close, having stopped reading the body),
although its answer said keep-alive; the next request on it would find it closed (docs/operations.md).
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tools.localserving.launcher import start_local_backend
from tools.nginx import start_proxy
from tools.process import ROOT
from tools.tier import start_tier

MIB = 1 << 20
PREDICT = "/v1/models/tiny:predict"
IMAGES = ROOT / "tests" / "fixtures" / "images"
PIECE = 256 * 1024  # a chunked body's chunks
ZEROS = memoryview(bytes(64 * MIB))  # the oversized bodies' bytes, shared
ERROR_LINE = re.compile(
    r"^\S+ \S+ \[(?:error|crit|alert|emerg)\] \d+#\d+: (?:\*\d+ )?(.*?)(?:, client: .*)?$", re.MULTILINE
)


@dataclass(frozen=True)
class Kind:
    """One kind of request and the answer it must get."""

    name: str
    content_type: str
    body: bytes | memoryview
    status: int
    code: str | None = None  # the error code the JSON answer must carry
    chunked: bool = False  # sent with Transfer-Encoding: chunked, no Content-Length
    method: str = "POST"
    path: str = PREDICT

    @property
    def oversized(self) -> bool:
        return self.status == 413


def json_of_size(size: int) -> bytes:
    """A well-formed JSON request of ``size`` bytes: one URL padded out (over any JSON cap it is refused unread)."""
    head, tail = b'{"instances": ["http://example.com/', b'"]}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


def multipart_of_size(size: int) -> tuple[bytes, str]:
    head = b'--soak\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n\r\n'
    tail = b"\r\n--soak--\r\n"
    return head + bytes(size - len(head) - len(tail)) + tail, "multipart/form-data; boundary=soak"


def oversized(upload_bytes: int, json_bytes: int = 2 * MIB) -> list[Kind]:
    """Requests over the tier's caps (``server.max_json_bytes`` under ``json_bytes``, ``server.max_upload_bytes``
    under ``upload_bytes``): refused on a declared length, or as the body crosses the cap."""
    form, form_type = multipart_of_size(upload_bytes)
    return [
        Kind("json", "application/json", json_of_size(json_bytes), 413, "payload_too_large"),
        Kind("upload", "image/jpeg", ZEROS[:upload_bytes], 413, "payload_too_large"),
        Kind("multipart", form_type, form, 413, "payload_too_large"),
        Kind("chunked", "image/jpeg", ZEROS[:upload_bytes], 413, "payload_too_large", chunked=True),
    ]


def good_and_bad() -> list[Kind]:
    """Requests the tier serves (200), and small ones it refuses on their headers or their content."""
    coffee = (IMAGES / "coffee.jpg").read_bytes()
    form = b'--b\r\nContent-Disposition: form-data; name="image"; filename="c.jpg"\r\n\r\n' + coffee + b"\r\n--b--\r\n"
    return [
        Kind("image", "image/jpeg", coffee, 200),
        Kind("form", "multipart/form-data; boundary=b", form, 200),
        Kind("text", "text/plain", b"x" * 5000, 415, "unsupported_media_type"),
        Kind("no_boundary", "multipart/form-data", b"--b\r\n\r\n--b--\r\n", 400, "invalid_request"),
        Kind("empty_instances", "application/json", b'{"instances": []}', 400, "invalid_request"),
        Kind("unknown_model", "image/jpeg", coffee, 404, "model_not_found", path="/v1/models/nope:predict"),
        Kind("put", "image/jpeg", coffee, 405, "method_not_allowed", method="PUT"),
    ]


def _pieces(body: bytes | memoryview) -> Iterator[bytes | memoryview]:
    return (body[i : i + PIECE] for i in range(0, len(body), PIECE))


def exchange(connection: http.client.HTTPConnection, kind: Kind) -> tuple[str, str | None]:
    """Send one request of ``kind`` and read its answer: the status (or the exception that broke the connection,
    which is then closed) and the JSON answer's error code."""
    body = _pieces(kind.body) if kind.chunked else kind.body
    try:
        connection.request(kind.method, kind.path, body, {"Content-Type": kind.content_type})
        response = connection.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as exc:
        connection.close()
        return type(exc).__name__, None
    return str(response.status), error_code(data)


def error_code(data: bytes) -> str | None:
    try:
        code = json.loads(data)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


Outcome = tuple[str, str, str | None]  # the kind's name, the status (or how it broke), the error code


def client(
    port: int, kinds: list[Kind], *, offset: int = 0, count: int = 0, until: float = 0.0, fresh: bool = False
) -> list[Outcome]:
    """One keep-alive client: ``kinds`` in turn from ``offset``, ``count`` requests or until ``until`` (monotonic).
    With ``fresh``, a new connection after each oversized request."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    outcomes: list[Outcome] = []
    try:
        while (count and len(outcomes) < count) or (until and time.monotonic() < until):
            kind = kinds[(offset + len(outcomes)) % len(kinds)]
            outcomes.append((kind.name, *exchange(connection, kind)))
            if fresh and kind.oversized:
                connection.close()
    finally:
        connection.close()
    return outcomes


def unexpected(outcomes: list[Outcome], kinds: list[Kind]) -> Counter[Outcome]:
    """The outcomes that are not the answer their kind must get."""
    expected = {(k.name, str(k.status), k.code) for k in kinds}
    return Counter(o for o in outcomes if o not in expected)


def upstream_errors(error_log: str) -> Counter[str]:
    """nginx's errors (such as ``writev() failed (104: Connection reset by peer) while sending request to
    upstream``), without their times and connection numbers."""
    return Counter(m[1] for m in ERROR_LINE.finditer(error_log))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--buffering", choices=("on", "off"), default="on", help="nginx's proxy_request_buffering")
    parser.add_argument("--upload-mib", type=int, default=25, help="oversized bodies (the default cap is 20 MiB)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a tier setting (repeatable)")
    args = parser.parse_args(argv)
    kinds = good_and_bad() + oversized(args.upload_mib * MIB)
    backend = start_local_backend(model_config_file=ROOT / "build" / "models" / "models.config")
    try:
        tier = start_tier(backend.address, overrides=args.set)
        try:
            nginx = start_proxy(int(tier.base_url.rsplit(":", 1)[1]), request_buffering=args.buffering == "on")
            try:
                started = time.monotonic()
                until = started + args.seconds
                with ThreadPoolExecutor(args.clients) as pool:
                    runs = [
                        pool.submit(client, nginx.port, kinds, offset=i, until=until, fresh=args.buffering == "off")
                        for i in range(args.clients)
                    ]
                    outcomes = [o for run in runs for o in run.result()]
                elapsed = time.monotonic() - started
                log = nginx.error_log.read_text()
            finally:
                nginx.stop()
        finally:
            tier.stop()
    finally:
        backend.stop()
    return report(outcomes, kinds, log, elapsed, args)


def report(outcomes: list[Outcome], kinds: list[Kind], log: str, elapsed: float, args: argparse.Namespace) -> int:
    statuses = Counter(status for _, status, _ in outcomes)
    print(
        f"soak: {len(outcomes)} requests in {elapsed:.0f} s, {args.clients} keep-alive clients through nginx "
        f"(proxy_request_buffering {args.buffering}), oversized bodies {args.upload_mib} MiB"
        + "".join(f", --set {item}" for item in args.set)
    )
    print("statuses: " + ", ".join(f"{status} x {n}" for status, n in sorted(statuses.items())))
    for (name, status, code), n in sorted(Counter(outcomes).items()):
        print(f"  {name:16} {status:>24} {code or '':24} {n:6}")
    errors = upstream_errors(log)
    print("nginx upstream errors: " + (", ".join(f"{n} x {line}" for line, n in errors.most_common()) or "none"))
    wrong = unexpected(outcomes, kinds)
    if wrong:
        print("unexpected: " + ", ".join(f"{n} x {o}" for o, n in wrong.most_common()))
    return 1 if wrong or errors else 0


if __name__ == "__main__":
    sys.exit(main())
