"""HTTP to the tier: a keep-alive connection per worker thread, and retries of what is transient.

Retried: connection failures, 503 (``overloaded``, ``backend_unavailable``) and 504 (``backend_timeout``).
A ``Retry-After`` is honoured (the tier sends one on each of those), otherwise the wait is a capped
exponential backoff with jitter. Anything else, 4xx above all, is answered at once: retrying a request
the tier refused on its merits gives the same refusal.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

RETRY_STATUSES = frozenset({503, 504})
USER_AGENT = "imagegate-classify/0.1"


class TierUnreachable(Exception):
    """No connection to the tier, after every retry."""


class Stopped(Exception):
    """The run was stopped (Ctrl-C, or the tier was lost) while this request waited to retry."""


@dataclass(frozen=True)
class RetryPolicy:
    retries: int  # the command's --retries (its default is in app/bulk/cli.py's Options)
    base_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry ``attempt + 1`` (``attempt`` counts from 0)."""
        if retry_after is not None:
            # The tier's word, plus a little so that clients it refused together do not return together.
            return retry_after + rand() * self.base_s
        backoff = min(self.cap_s, self.base_s * 2.0**attempt)
        return backoff / 2 + rand() * backoff / 2  # "equal jitter": spread out, yet never shorter than half


@dataclass(frozen=True)
class Answer:
    status: int
    document: Any  # the parsed JSON body, None when it is not JSON
    retry_after: float | None = None

    def error(self) -> tuple[str, str]:
        """The ``code`` and ``message`` of a refusal; made up from the status when the body has none."""
        error = self.document.get("error") if isinstance(self.document, dict) else None
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            return error["code"], str(error.get("message", ""))
        return f"http_{self.status}", f"the tier answered HTTP {self.status} without an error code"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delay-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


class TierClient:
    """Requests to one tier from many threads; each thread keeps its own connection."""

    def __init__(self, base_url: str, timeout_s: float, policy: RetryPolicy) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http or https URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._timeout_s = timeout_s
        self.policy = policy
        self.stopped = threading.Event()
        self.retried: Counter[str] = Counter()  # why requests were retried: an error code, or "connection"
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []

    def get(self, path: str, retries: int | None = None) -> Answer:
        return self.request("GET", path, None, {}, retries)

    def post(self, path: str, body: bytes, content_type: str) -> Answer:
        return self.request("POST", path, body, {"Content-Type": content_type})

    def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str], retries: int | None = None
    ) -> Answer:
        """Send until an answer that is not transient, or the retries run out; raises TierUnreachable, Stopped."""
        retries = self.policy.retries if retries is None else retries
        for attempt in range(retries + 1):
            if self.stopped.is_set():
                raise Stopped
            try:
                answer = self._send(method, path, body, headers)
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                if attempt == retries:
                    raise TierUnreachable(f"cannot reach the tier at {self.base_url}: {_describe(exc)}") from exc
                reason, retry_after = "connection", None
            else:
                if answer.status not in RETRY_STATUSES or attempt == retries:
                    return answer
                reason, retry_after = answer.error()[0], answer.retry_after
            with self._lock:
                self.retried[reason] += 1
            if self.stopped.wait(self.policy.delay(attempt, retry_after)):
                raise Stopped
        raise AssertionError("unreachable: the last attempt returns or raises")

    def close(self) -> None:
        with self._lock:
            for connection in self._connections:
                connection.close()

    def _send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Answer:
        connection = self._connection()
        connection.request(method, self._prefix + path, body=body, headers={"User-Agent": USER_AGENT, **headers})
        response = connection.getresponse()
        data = response.read()
        try:
            document = json.loads(data) if data else None
        except ValueError:
            document = None
        return Answer(response.status, document, parse_retry_after(response.getheader("Retry-After")))

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            connection = kind(self._host, self._port, timeout=self._timeout_s)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _drop_connection(self) -> None:
        """Close this thread's connection after a failure; the next request dials afresh."""
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
