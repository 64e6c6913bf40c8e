"""Every route that takes a body takes it through the one intake (handlers/intake.py): its caps, its
drain-or-close refusals and its cancellation when the client leaves are written once."""

from __future__ import annotations

import ast
import importlib
import inspect

from tornado.web import RequestHandler, _has_stream_request_body

from handlers.intake import BodyHandler
from tests.support.tier import ROOT
from tests.test_architecture import modules


def handler_classes() -> list[type[RequestHandler]]:
    found: list[type[RequestHandler]] = []
    for name, _ in modules("handlers"):
        for _, cls in inspect.getmembers(importlib.import_module(name), inspect.isclass):
            if issubclass(cls, RequestHandler) and cls.__module__ == name:
                found.append(cls)
    return found


def test_every_handler_that_streams_a_body_is_a_body_handler() -> None:
    streaming = [cls for cls in handler_classes() if _has_stream_request_body(cls)]
    assert streaming, "no handler takes a body: this test would hold for nothing"
    assert [cls.__name__ for cls in streaming if not issubclass(cls, BodyHandler)] == []


def test_no_handler_reads_a_body_tornado_buffered() -> None:
    """``self.request.body`` would bypass the intake: a body route streams, through BodyHandler."""
    readers = []
    for _, path in modules("handlers"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("body", "body_arguments", "files"):
                inner = node.value
                if isinstance(inner, ast.Attribute) and inner.attr == "request":
                    readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert readers == []
