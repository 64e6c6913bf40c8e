"""Every route's methods, from the application's own routing table: a 405 says ``Allow`` (RFC 9110 15.5.6), no
method it lists answers 405, and every method it leaves out does."""

from __future__ import annotations

import asyncio
import http.client

import pytest
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine
from tornado.routing import Rule
from tornado.web import Application, RequestHandler

from tests.conftest import Tier, TierFactory

# Tornado's methods, and two it does not know that clients (and schemathesis) send.
METHODS = (*RequestHandler.SUPPORTED_METHODS, "TRACE", "QUERY")
# One URL per route of the public interface; a route none of them reaches fails the test until one is added.
PATHS = (
    "/v1/models/tiny:predict",
    "/v1/models",
    "/v1/models/tiny/metadata",
    "/v1/models/tiny",
    "/healthz",
    "/readyz",
    "/metrics",
    "/admin/models/digits/routes:reset",
    "/openapi.json",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/tiny/ready",
    "/v2/models/tiny/infer",
    "/v2/models/tiny",
    "/v2/no/such/path",
    "/",
    "/static/app.js",
    "/no/such/path",  # the application's default handler
)


def routes(app: Application) -> list[Rule]:
    return list(app.wildcard_router.rules)


def route_of(app: Application, path: str) -> Rule | None:
    start = RequestStartLine("GET", path, "HTTP/1.1")
    request = HTTPServerRequest(start_line=start, headers=HTTPHeaders({"Host": "tier"}))
    return next((rule for rule in routes(app) if rule.matcher.match(request) is not None), None)


def answer(port: int, method: str, path: str) -> tuple[int, str | None]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        body = b"" if method in ("POST", "PUT", "PATCH") else None
        connection.request(method, path, body)
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Allow")
    finally:
        connection.close()


@pytest.mark.gen_test(timeout=60)
async def test_405_lists_exactly_the_methods_that_are_not_refused(make_tier: TierFactory) -> None:
    tier: Tier = await make_tier(["server.admin_token=secret", "server.page=true", "server.metrics=true"])
    app = tier.server.request_callback
    assert isinstance(app, Application)
    reached = [route_of(app, path) for path in PATHS]
    missing = [rule.matcher for rule in routes(app) if rule not in reached]
    assert not missing, f"routes no path in PATHS reaches: {missing}"
    port = int(tier.base_url.rsplit(":", 1)[1])
    for path in PATHS:
        answers = {m: await asyncio.to_thread(answer, port, m, path) for m in METHODS}
        allows = {allow for status, allow in answers.values() if status == 405}
        assert len(allows) == 1, f"{path}: 405s with Allow {allows}"  # TRACE and QUERY are always among them
        (allow,) = allows
        assert allow is not None, f"{path}: 405 without Allow"
        listed = [m.strip() for m in allow.split(",") if m.strip()]
        for method, (status, _) in answers.items():
            if method in listed:
                assert status != 405, f"{method} {path}: 405, though Allow lists it"
            elif listed or method not in RequestHandler.SUPPORTED_METHODS:
                assert status == 405, f"{method} {path}: {status}, though Allow ({listed}) leaves it out"
            else:  # no resource at this path: every method Tornado knows is 404, the others 405 with an empty Allow
                assert status == 404, f"{method} {path}: {status} on a path without a resource"
