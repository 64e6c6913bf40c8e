"""The page's files write none of the limits ``GET /v1/models`` tells them: the page shows and keeps the tier's own.

Read as text, no browser: each limit's default, in the ways a number of bytes or images gets written
(``20971520``, ``20 MiB``, ``20 * 1024 * 1024``, ``20 << 20``, ``32``), must not appear in index.html or app.js.
"""

from __future__ import annotations

import re

import pytest

from app.openapi.schemas import answer_schemas
from app.settings import ServerSettings
from tests.support.tier import ROOT

PAGE = [ROOT / "app" / "static" / name for name in ("index.html", "app.js")]
UNITS = ((1 << 20, "MiB", "1024 * 1024", 20), (1 << 10, "KiB", "1024", 10))


def told_limits() -> dict[str, int]:
    """The limits the model list carries (its schema's ``limits``), with their defaults."""
    names = answer_schemas([])["ModelList"]["properties"]["limits"]["properties"]
    assert names, "the model list tells the page no limits"
    return {name: getattr(ServerSettings(), name) for name in names}


def spellings(n: int) -> set[str]:
    forms = {str(n), f"{n:,}", f"{n:_}"}
    for size, unit, product, shift in UNITS:
        if n >= size and n % size == 0:
            k = n // size
            forms |= {f"{k} {unit}", f"{k}\u00a0{unit}", f"{k}{unit}", f"{k} * {product}", f"{k} << {shift}"}
    return forms


def written(text: str, n: int) -> list[str]:
    return [form for form in spellings(n) if re.search(rf"(?<![\w.]){re.escape(form)}(?![\w.])", text)]


@pytest.mark.parametrize("limit", sorted(told_limits()))
def test_the_page_does_not_write_a_limit_the_tier_tells_it(limit: str) -> None:
    value = told_limits()[limit]
    assert {path.name: written(path.read_text(encoding="utf-8"), value) for path in PAGE} == {
        path.name: [] for path in PAGE
    }


@pytest.mark.parametrize(
    "text",
    [
        '<span class="hint">Up to 20 MiB per image.</span>',
        "let MAX_UPLOAD_BYTES = 20 * 1024 * 1024;",
        "const maxUpload = 20971520;",
        "if (urls.length > 32) return;",
    ],
)
def test_a_written_limit_is_found(text: str) -> None:
    assert any(written(text, value) for value in told_limits().values())


def test_a_number_that_is_no_limit_is_not_taken_for_one() -> None:
    assert not any(written("const MAX_IN_FLIGHT = 4; width: 320px; v1.32.0", v) for v in told_limits().values())
