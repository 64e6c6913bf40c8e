"""Names that say what they hold: each class of the product is defined once, under one name."""

from __future__ import annotations

import ast
from collections import defaultdict

from tests.support.tier import ROOT
from tests.test_architecture import PRODUCT


def test_no_two_classes_of_the_product_share_a_name() -> None:
    """A Protocol named like the class that satisfies it, or two handlers of one name, read as one thing."""
    places: defaultdict[str, list[str]] = defaultdict(list)
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    places[node.name].append(str(path.relative_to(ROOT)))
    assert {name: where for name, where in places.items() if len(where) > 1} == {}
