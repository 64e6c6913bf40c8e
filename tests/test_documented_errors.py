"""docs/errors.md lists every code the tier can answer: from our error types, and from the generic
statuses the handlers turn into codes."""

from __future__ import annotations

import importlib
import re

from app.openapi.schemas import TORNADO_STATUSES, error_types
from handlers.base import _code_for_status
from processing.errors import GatewayError
from tests.support.tier import ROOT


def all_error_types() -> set[type[GatewayError]]:
    for package in ("app", "handlers", "processing"):
        for path in (ROOT / package).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            if module != "app.__main__":
                importlib.import_module(module)
    return set(error_types())


def documented_codes() -> set[str]:
    """The codes in the first column of the item and request error tables."""
    text = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    tables = re.findall(r"^## (?:Item|Request) errors.*?(?=^## )", text, flags=re.MULTILINE | re.DOTALL)
    assert len(tables) == 2
    return {code for table in tables for code in re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE)}


def test_every_error_code_is_documented() -> None:
    codes = {cls.code for cls in all_error_types()} - {"item_failed"}  # the abstract base of item errors
    assert codes - documented_codes() == set()


def test_every_generic_status_code_is_documented() -> None:
    assert {_code_for_status(status) for status in TORNADO_STATUSES} - documented_codes() == set()


def test_nothing_documented_is_unknown() -> None:
    known = {cls.code for cls in all_error_types()} | {_code_for_status(s) for s in TORNADO_STATUSES}
    assert documented_codes() - known == set()
