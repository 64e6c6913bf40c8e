"""The OpenAPI document's error codes come from the error classes: a new class is in the served document
without an edit to app/openapi/schemas.py, and every class of the product is there."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient

from app.openapi.schemas import TORNADO_STATUSES, error_types
from handlers.base import _code_for_status
from processing.errors import GatewayError, ItemError
from tests.conftest import TierFactory
from tests.test_documented_errors import all_error_types

NEW_CODES = ("brewing_refused", "source_steamed")


@pytest.fixture
def new_error_classes() -> Iterator[None]:
    """Two error classes defined here, and gone again after the test (``__subclasses__`` holds weak references)."""

    class BrewingRefused(GatewayError, code=NEW_CODES[0], status=418):
        """A request-level error no module of the tier defines."""

    class SourceSteamed(ItemError, code=NEW_CODES[1]):
        """An item error no module of the tier defines."""

    yield
    del BrewingRefused, SourceSteamed
    gc.collect()
    assert not {cls.code for cls in error_types()} & set(NEW_CODES), "the test's classes outlived it"


def codes(document: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The request and the item error codes of a document."""
    schemas = document["components"]["schemas"]
    request = schemas["Error"]["properties"]["error"]["properties"]["code"]["enum"]
    return set(request), set(schemas["ItemError"]["properties"]["code"]["enum"])


async def served_document(make_tier: TierFactory) -> dict[str, Any]:
    tier = await make_tier()
    document: dict[str, Any] = json.loads((await AsyncHTTPClient().fetch(tier.url("/openapi.json"))).body)
    return document


@pytest.mark.gen_test
async def test_a_new_error_class_is_in_the_served_document(new_error_classes: None, make_tier: TierFactory) -> None:
    request, item = codes(await served_document(make_tier))
    assert NEW_CODES[0] in request and NEW_CODES[0] not in item
    assert NEW_CODES[1] in item and NEW_CODES[1] not in request


@pytest.mark.gen_test
async def test_every_error_class_of_the_product_is_in_the_served_document(make_tier: TierFactory) -> None:
    every = all_error_types()  # every module of the product imported
    items = {cls.code for cls in every if issubclass(cls, ItemError) and cls is not ItemError}
    requests = {cls.code for cls in every if not issubclass(cls, ItemError)}
    requests |= {_code_for_status(status) for status in TORNADO_STATUSES}
    assert codes(await served_document(make_tier)) == (requests, items)
