"""Talking to a tier under test: posting bodies and reading our error format."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

from tornado.httpclient import AsyncHTTPClient

from app.openapi.schemas import item_error_codes
from tests.conftest import Tier

PREDICT = "/v1/models/mobilenet_v2:predict"
T = TypeVar("T")

# The documented codes (docs/errors.md): per item, and per request with their statuses.
ITEM_CODES = frozenset(item_error_codes())
REQUEST_STATUS = {"invalid_request": 400, "payload_too_large": 413, "unsupported_media_type": 415}


async def post(tier: Tier, body: bytes, content_type: str | None, path: str = PREDICT) -> tuple[int, Any]:
    """POST ``body``; the status and the parsed JSON answer."""
    headers = {"Content-Type": content_type} if content_type is not None else {}
    response = await AsyncHTTPClient().fetch(
        tier.url(path), method="POST", body=body, headers=headers, raise_error=False, request_timeout=20
    )
    return response.code, json.loads(response.body)


async def post_json(tier: Tier, document: Any) -> tuple[int, Any]:
    return await post(tier, json.dumps(document).encode(), "application/json")


def error_code(answer: Any) -> str:
    """The code of a request-level error answer, after checking it has exactly our shape."""
    assert set(answer) == {"error"} and set(answer["error"]) == {"code", "message", "request_id"}, answer
    assert isinstance(answer["error"]["message"], str) and answer["error"]["message"], answer
    code: str = answer["error"]["code"]
    return code


def item_codes(answer: Any) -> list[str | None]:
    """Each prediction's error code, None where the item succeeded."""
    return [item.get("error", {}).get("code") for item in answer["predictions"]]


def top1(item: dict[str, Any]) -> str:
    label: str = item["classes"][0]["label"]
    return label


def request_head(port: int, content_type: str, framing: str) -> bytes:
    """The start line and headers of a predict POST; ``framing`` is a Content-Length or Transfer-Encoding line."""
    return (
        f"POST {PREDICT} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n{framing}\r\n\r\n"
    ).encode()


def port_of(tier: Tier) -> int:
    return int(tier.base_url.rsplit(":", 1)[1])


async def in_thread(client: Callable[..., T], *args: Any) -> T:
    """Run a blocking raw client in a worker thread while the tier keeps serving on this loop."""
    return await asyncio.get_running_loop().run_in_executor(None, client, *args)
