"""Each default of ``imagegate classify`` is written once, as a dataclass field (the command's in ``Options``): the
parser reads them from there, nothing else in app/bulk writes one, and the README states the same values."""

from __future__ import annotations

import ast
import re
from dataclasses import fields

from app.bulk.cli import CHECK_RETRIES, Options, parse_args
from app.bulk.transport import RetryPolicy
from tests.support.tier import ROOT

BULK = ROOT / "app" / "bulk"


def test_the_command_line_defaults_are_the_options_defaults() -> None:
    assert parse_args(["photos/"]) == Options("photos/")


def written_defaults(source: str) -> list[str]:
    """Default values written outside a dataclass field: ``default=`` keywords and parameter defaults.

    ``None`` ("not given") is not a value; a callable (``clock=time.monotonic``) is a seam for tests, not a value.
    """
    found: list[ast.expr] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg == "default":
            found.append(node.value)
        elif isinstance(node, ast.arguments):
            found += [value for value in [*node.defaults, *node.kw_defaults] if value is not None]
    found.sort(key=lambda value: (value.lineno, value.col_offset))
    return [f"{value.lineno}: {ast.unparse(value)}" for value in found if _is_value(value)]


def _is_value(node: ast.expr) -> bool:
    try:
        return ast.literal_eval(node) is not None
    except ValueError:
        return False


def test_no_default_is_written_outside_a_dataclass_field() -> None:
    found = {path.name: written_defaults(path.read_text(encoding="utf-8")) for path in BULK.rglob("*.py")}
    assert {name: lines for name, lines in found.items() if lines} == {}


def test_a_second_copy_is_found() -> None:
    copies = "def f(timeout_s: float = 60.0, retry_after: float | None = None, clock=time.monotonic) -> None: ...\n"
    copies += 'parser.add_argument("--retries", type=int, default=10)\nparser.add_argument("--limit", default=-1)\n'
    assert written_defaults(copies) == ["1: 60.0", "2: 10", "3: -1"]


def test_the_readme_states_the_defaults() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Classifying in bulk", 1)[1].split("\n## ", 1)[0]
    stated = {name.replace("-", "_"): float(n) for name, n in re.findall(r"`--([a-z-]+) (\d+(?:\.\d+)?)`", section)}
    defaults = {f.name: f.default for f in fields(Options)}
    numeric = {name: float(v) for name, v in defaults.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    assert stated == numeric
    assert f"`--server` (default `{Options.server}`)" in section
    assert f"({RetryPolicy.base_s:g} s doubling up to {RetryPolicy.cap_s:g} s" in section
    assert f"told after {CHECK_RETRIES} retries" in section
