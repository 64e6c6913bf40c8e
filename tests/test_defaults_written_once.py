"""Every default is written once, in the settings dataclasses (app/settings.py).

The product (app/, handlers/, processing/) must not write a setting's default a second time under the
setting's name: as a parameter's default, a dataclass field, a constant (``MAX_BYTES``, ``DEFAULT_WINDOW``)
or a keyword argument. A copy like that drifts when the setting changes. Defaults that mean "nothing set"
(None, booleans, 0, 1, empty) are left out: they are not facts anyone could change in one place only.
"""

from __future__ import annotations

import ast
import dataclasses
import operator
import re
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import ModelSettings, Settings
from tests.support.tier import ROOT

PRODUCT = ("app", "handlers", "processing")
SETTINGS = ROOT / "app" / "settings.py"
UNITS = {"MIB": 1 << 20, "KIB": 1 << 10}  # names the settings' own defaults are written with
OPERATORS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.LShift: operator.lshift,
}


class NotAConstant(Exception):
    pass


def meaningful(value: Any) -> bool:
    return not (value is None or isinstance(value, bool) or value in (0, 1, "", ()))


def settings_defaults(cls: type[Any] = Settings) -> dict[str, list[Any]]:
    """Every settings field's meaningful default, by field name, across all the settings dataclasses."""
    found: dict[str, list[Any]] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING and meaningful(f.default):
            found.setdefault(f.name, []).append(f.default)
        for inner in (hints[f.name], *typing.get_args(hints[f.name])):
            if dataclasses.is_dataclass(inner):
                for name, values in settings_defaults(typing.cast(type[Any], inner)).items():
                    found.setdefault(name, []).extend(values)
    return found


def constant(node: ast.expr) -> Any:
    """The value of a constant expression (``20 * MIB``, ``(0.0,)``); NotAConstant for anything else."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple | ast.List):
        return tuple(constant(e) for e in node.elts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -constant(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        return OPERATORS[type(node.op)](constant(node.left), constant(node.right))
    if isinstance(node, ast.Name) and node.id in UNITS:
        return UNITS[node.id]
    raise NotAConstant


def written_values(tree: ast.AST) -> Iterator[tuple[str, ast.expr]]:
    """(name, value) of every default, field, constant and keyword argument in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            args = node.args
            with_defaults = [*args.posonlyargs, *args.args][
                len(args.posonlyargs) + len(args.args) - len(args.defaults) :
            ]
            yield from ((a.arg, d) for a, d in zip(with_defaults, args.defaults, strict=True))
            yield from ((a.arg, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            yield node.target.id, node.value
        elif isinstance(node, ast.Assign):
            yield from ((t.id, node.value) for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.keyword) and node.arg is not None:
            yield node.arg, node.value


def copies(source: str, defaults: dict[str, list[Any]]) -> list[str]:
    """``name = value`` for each setting's default that ``source`` writes again under the setting's name."""
    found = []
    for name, node in written_values(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "field":
            node = next((k.value for k in node.keywords if k.arg == "default"), node)
        key = name.lower().removeprefix("default_")
        try:
            value = constant(node)
        except (NotAConstant, TypeError, ArithmeticError):
            continue
        if key in defaults and meaningful(value) and value in defaults[key]:
            found.append(f"{name} = {ast.unparse(node)} (line {node.lineno})")
    return found


def product_files() -> Iterator[Path]:
    for package in PRODUCT:
        yield from (p for p in sorted((ROOT / package).rglob("*.py")) if p != SETTINGS)


def test_no_product_module_writes_a_settings_default_again() -> None:
    defaults = settings_defaults()
    found = {str(p.relative_to(ROOT)): copies(p.read_text(encoding="utf-8"), defaults) for p in product_files()}
    assert {path: lines for path, lines in found.items() if lines} == {}


@pytest.mark.parametrize(
    "source",
    [
        "def rollback(window: int = 200) -> None: ...",
        "async def fetch(url, *, max_bytes=20 * MIB): ...",
        "class Routes:\n    key_header: str = 'X-User-Id'\n",
        "@dataclass\nclass Shadow:\n    max_latency_ratio: float = field(default=1.25)\n",
        "MAX_UPLOAD_BYTES = 20 << 20\n",
        "DEFAULT_MIN_SAMPLES = 50\n",
        "limits = FetchLimits(max_bytes=20971520)\n",
        "policy = Policy(content_types=['image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/bmp', "
        "'application/octet-stream'])\n",
    ],
)
def test_a_copy_of_a_default_is_found(source: str) -> None:
    assert len(copies(source, settings_defaults())) == 1


@pytest.mark.parametrize(
    "source",
    [
        "def rollback(window: int = 100): ...",  # another value: a choice of its own
        "def f(limits, max_bytes=limits.max_bytes): ...",  # read from the settings
        "def f(label=None, version=1, metrics=True): ...",  # nothing set
        "timeout = 10.0\n",  # no setting is called timeout
    ],
)
def test_what_is_not_a_copy(source: str) -> None:
    assert copies(source, settings_defaults()) == []


def test_the_settings_defaults_are_seen() -> None:
    defaults = settings_defaults()
    assert defaults["window"] == [200] and defaults["key_header"] == ["X-User-Id"]
    assert defaults["max_upload_bytes"] == [20 << 20] and defaults["max_in_flight"] == [2]
    assert "labels" not in defaults and "metrics" not in defaults  # None and True mean nothing set


# The prose may state a default, as "`server.drain_delay_s` (default 5)" or in a table row whose first
# cells are settings and whose next is the default (docs/errors.md); it must state the settings' own.
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
STATED_INLINE = re.compile(r"`([a-z_]+(?:\.[a-z_]+)+)` \(default ([^)]+)\)")
NOT_A_SETTING = object()
STATED_IN_A_ROW = re.compile(r"^\| ((?:`[a-z_]+(?:\.[a-z_]+)+`(?:, )?)+) \| ([^|]+) \|", re.MULTILINE)


def default_of(dotted: str) -> Any:
    """The default of a setting named by its dotted key (``models.<name>.*`` as any model's); NOT_A_SETTING else."""
    section: Any = Settings()
    parts = dotted.split(".")
    if parts[0] == "models" and len(parts) > 2:
        section, parts = ModelSettings(), parts[2:]
    for part in parts:
        if not dataclasses.is_dataclass(section) or part not in {f.name for f in dataclasses.fields(section)}:
            return NOT_A_SETTING  # such as the file models.config
        section = getattr(section, part)
    return section


def stated_value(text: str) -> Any:
    """``1,048,576 (1 MiB)`` is 1048576, ``none`` is (), backquoted items are a tuple of them."""
    if text.strip() == "none":
        return ()
    if "`" in text:
        return tuple(re.findall(r"`([^`]+)`", text))
    return yaml.safe_load(text.split(" (")[0].replace(",", "").strip())


def misstated_defaults(text: str) -> list[str]:
    stated = [(m[1], m[2]) for m in STATED_INLINE.finditer(text)]
    stated += [(key, m[2]) for m in STATED_IN_A_ROW.finditer(text) for key in re.findall(r"`([^`]+)`", m[1])]
    settings = [(key, value) for key, value in stated if default_of(key) is not NOT_A_SETTING]
    return [f"{key}: {value.strip()}" for key, value in settings if stated_value(value) != default_of(key)]


def test_the_docs_state_the_settings_defaults() -> None:
    found = {str(p.relative_to(ROOT)): misstated_defaults(p.read_text(encoding="utf-8")) for p in DOCS}
    assert {path: wrong for path, wrong in found.items() if wrong} == {}


@pytest.mark.parametrize(
    "text",
    [
        "For `server.drain_delay_s` (default 10) the tier goes on accepting connections.",
        "| `server.max_upload_bytes` | 10,485,760 (10 MiB) | each uploaded file | `payload_too_large` |",
        "| `fetch.allow_cidrs`, `fetch.deny_cidrs` | `10.0.0.0/8` | see above | `source_forbidden` |",
        "| `models.<name>.routes.rollback.window` | 100 | requests compared | |",
    ],
)
def test_a_misstated_default_is_found(text: str) -> None:
    assert misstated_defaults(text.replace("<name>", "m")) != []
