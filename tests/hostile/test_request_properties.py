"""Property-based requests through the real HTTP layer: any body gets a documented answer, never a 500.

The parsers have their own property tests in tests/processing; these feed generated
bodies to a running tier, with few examples, to check the layers between agree.
The tier resolves no names and may connect nowhere, so generated URLs fail fast on their item.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import tornado.ioloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Tier, TierFactory
from tests.hostile.payloads import multipart
from tests.hostile.tierclient import ITEM_CODES, REQUEST_STATUS, error_code, post
from tests.hostile.traps import FakeDnsResolver
from tests.support.imageserver import FIXTURES

COFFEE = (FIXTURES / "coffee.jpg").read_bytes()
FEW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def offline_tier(io_loop: tornado.ioloop.IOLoop, make_tier: TierFactory) -> Tier:
    """One tier for all examples of a test: it keeps no state between requests."""
    overrides = ["fetch.allow_cidrs=[]", "server.max_parts=6", "server.max_images_per_request=4"]
    tier: Tier = io_loop.run_sync(lambda: make_tier(overrides, resolver=FakeDnsResolver(answers={})))
    return tier


def assert_documented(status: int, answer: Any, files: int | None = None) -> None:
    """A 200 with one prediction per input, each a result or a documented item error; or a request error."""
    if status != 200:
        assert REQUEST_STATUS.get(error_code(answer)) == status, (status, answer)
        return
    predictions = answer["predictions"]
    assert files is None or len(predictions) == files
    for item in predictions:
        assert ("classes" in item) != ("error" in item), item
        if "error" in item:
            assert item["error"]["code"] in ITEM_CODES and item["error"]["message"], item


IMAGE_BYTES = st.one_of(
    st.binary(max_size=256),
    st.sampled_from([COFFEE, COFFEE[:400], b"\xff\xd8\xff", b"GIF89a", b"\x89PNG\r\n\x1a\n", b""]),
)
FIELD_NAMES = st.one_of(st.sampled_from(["image", "data", "file", "images", "top_k"]), st.text(max_size=8))
FILENAMES = st.one_of(st.none(), st.text(alphabet=st.characters(blacklist_characters='"\r\n'), max_size=12))
PARTS = st.lists(st.tuples(FIELD_NAMES, FILENAMES, IMAGE_BYTES), max_size=8)


@FEW
@given(parts=PARTS, cut=st.one_of(st.none(), st.integers(min_value=0, max_value=400)), junk=st.binary(max_size=32))
def test_any_multipart_body_gets_a_documented_answer(
    io_loop: tornado.ioloop.IOLoop,
    offline_tier: Tier,
    parts: list[tuple[str, str | None, bytes]],
    cut: int | None,
    junk: bytes,
) -> None:
    safe = [
        (name.replace('"', "").replace("\r", "").replace("\n", ""), filename, data) for name, filename, data in parts
    ]
    body, content_type = multipart(safe)
    if cut is not None:
        body = body[:cut] + junk  # damaged: truncated, with junk after
    status, answer = io_loop.run_sync(lambda: post(offline_tier, body, content_type))
    assert_documented(status, answer)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
INSTANCE = st.one_of(
    st.from_regex(r"\Ahttps?://[a-z0-9.\-\[\]:]{1,24}/[a-z]{0,8}\Z"),
    st.builds(lambda url: {"url": url}, st.text(max_size=30)),
    st.builds(lambda b64: {"b64": b64}, st.text(alphabet="ABCDEFabcdef0123456789+/=", max_size=40)),
    JSON_VALUES,
)
DOCUMENTS = st.one_of(
    JSON_VALUES,
    st.lists(INSTANCE, max_size=6),
    st.fixed_dictionaries(
        {"instances": st.lists(INSTANCE, max_size=6)},
        optional={"top_k": st.one_of(st.integers(-2, 1002), st.text(max_size=4)), "extra": JSON_VALUES},
    ),
)


@FEW
@given(document=DOCUMENTS)
def test_any_json_document_gets_a_documented_answer(
    io_loop: tornado.ioloop.IOLoop, offline_tier: Tier, document: Any
) -> None:
    body = json.dumps(document).encode()
    status, answer = io_loop.run_sync(lambda: post(offline_tier, body, "application/json"))
    assert_documented(status, answer)


@FEW
@given(
    data=IMAGE_BYTES,
    content_type=st.sampled_from(["image/jpeg", "image/png", "image/anything", "application/octet-stream"]),
)
def test_any_raw_body_gets_a_documented_answer(
    io_loop: tornado.ioloop.IOLoop, offline_tier: Tier, data: bytes, content_type: str
) -> None:
    status, answer = io_loop.run_sync(lambda: post(offline_tier, data, content_type))
    assert_documented(status, answer, files=None if status != 200 else 1)
