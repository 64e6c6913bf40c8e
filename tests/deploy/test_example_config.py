"""deploy/config.example.yaml documents every key of the settings, and shows each default as it is.

Read against the settings dataclasses (app/settings.py): every key path appears outside the example
parts (a route target's keys, whose default is no target, in some target), and every value equals its
field's default unless its line, or a line above it in its subtree, says ``# example``. An example
line that names the default (``# example; default 127.0.0.1``) names it right. Keys follow the order
of the dataclasses' fields. The file also loads with the tier's own loader.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings, load_settings
from tests.support.tier import ROOT

EXAMPLE = ROOT / "deploy" / "config.example.yaml"
MARK = re.compile(r"#\s*example\b")
NAMED_DEFAULT = re.compile(r"#\s*example; default (\S+?)[.,;]?(?:\s|$)")
ANY_MODEL, ANY_TARGET = "<model>", "[]"

KeyPath = tuple[str, ...]


def key_paths(cls: type[Any], prefix: KeyPath = ()) -> set[KeyPath]:
    """Every key a settings file can hold, a model's under ``models.<model>``, a target's under ``targets.[]``."""
    paths: set[KeyPath] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = (*prefix, f.name)
        paths.add(path)
        hint, args = hints[f.name], typing.get_args(hints[f.name])
        if dataclasses.is_dataclass(hint):
            paths |= key_paths(typing.cast(type[Any], hint), path)
        elif typing.get_origin(hint) in (Mapping, dict):
            paths |= key_paths(args[1], (*path, ANY_MODEL))
        elif typing.get_origin(hint) is tuple and dataclasses.is_dataclass(args[0]):
            paths |= key_paths(typing.cast(type[Any], args[0]), (*path, ANY_TARGET))
    return paths


@dataclass
class Reading:
    """What the walk over the file found: the keys it saw and the values that are not their defaults."""

    lines: list[str]
    seen: set[KeyPath] = field(default_factory=set)
    wrong: list[str] = field(default_factory=list)

    def marked(self, node: yaml.Node) -> bool:
        return bool(MARK.search(self.lines[node.start_mark.line]))


def plain(value: Any) -> Any:
    return tuple(plain(v) for v in value) if isinstance(value, list | tuple) else value


def read_section(node: yaml.Node, cls: type[Any], generic: KeyPath, where: str, example: bool, out: Reading) -> None:
    assert isinstance(node, yaml.MappingNode), f"{where}: a mapping"
    fields = {f.name: f for f in dataclasses.fields(cls)}
    keys = [k.value for k, _ in node.value if k.value in fields]
    if keys != [name for name in fields if name in keys]:
        out.wrong.append(f"{where or 'the file'}: keys {keys} are not in the order of {cls.__name__}'s fields")
    hints = typing.get_type_hints(cls)
    for key_node, value_node in node.value:
        name, path, here = key_node.value, (*generic, key_node.value), f"{where}.{key_node.value}".lstrip(".")
        if name not in fields:
            out.wrong.append(f"{here}: not a setting")
            continue
        if not example or ANY_TARGET in path:  # an example model does not document a key; a target is one
            out.seen.add(path)
        marked = example or out.marked(key_node)
        read_field(value_node, fields[name], hints[name], path, here, marked, out)
        if out.marked(key_node):
            read_named_default(key_node, fields[name], here, out)


def read_field(
    node: yaml.Node, f: dataclasses.Field[Any], hint: Any, path: KeyPath, where: str, example: bool, out: Reading
) -> None:
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        read_section(node, typing.cast(type[Any], hint), path, where, example, out)
    elif typing.get_origin(hint) in (Mapping, dict):
        for name, model in node.value:
            read_section(model, args[1], (*path, ANY_MODEL), f"{where}.{name.value}", example or out.marked(name), out)
    elif typing.get_origin(hint) is tuple and dataclasses.is_dataclass(args[0]):
        for i, item in enumerate(node.value):  # the default is no item: any item is an example
            read_section(item, typing.cast(type[Any], args[0]), (*path, ANY_TARGET), f"{where}[{i}]", True, out)
        if node.value and not example:
            out.wrong.append(f"{where}: not empty (the default), and not marked # example")
    else:
        read_value(node, f, where, example, out)


def read_value(node: yaml.Node, f: dataclasses.Field[Any], where: str, example: bool, out: Reading) -> None:
    value = plain(yaml.safe_load(yaml.serialize(node)))
    if not example and f.default is not dataclasses.MISSING and value != f.default:
        out.wrong.append(f"{where}: {value!r}, but the default is {f.default!r} (mark the line # example)")


def read_named_default(key_node: yaml.Node, f: dataclasses.Field[Any], where: str, out: Reading) -> None:
    named = NAMED_DEFAULT.search(out.lines[key_node.start_mark.line])
    if named and plain(yaml.safe_load(named.group(1))) != f.default:
        out.wrong.append(f"{where}: its comment says the default is {named.group(1)}, but it is {f.default!r}")


def read_example(text: str) -> Reading:
    out = Reading(text.splitlines())
    document = yaml.compose(text)
    assert document is not None, "an empty file"
    read_section(document, Settings, (), "", False, out)
    return out


def test_every_key_is_in_the_example() -> None:
    missing = key_paths(Settings) - read_example(EXAMPLE.read_text(encoding="utf-8")).seen
    assert sorted(".".join(p) for p in missing) == []


def test_every_value_is_the_default_unless_marked_as_an_example() -> None:
    assert read_example(EXAMPLE.read_text(encoding="utf-8")).wrong == []


def replace_line(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


@pytest.mark.parametrize(
    ("old", "new", "missing"),
    [
        ("  metrics: true ", "  # metrics: true ", "server.metrics"),
        ("      max_in_flight: 2 ", "      # max_in_flight: 2 ", "models.<model>.batching.max_in_flight"),
        ("        min_samples: 50 ", "        # min_samples: 50 ", "models.<model>.routes.rollback.min_samples"),
        ("label: stable, ", "", "models.<model>.routes.targets.[].label"),
        ("    served_name: null ", "    # served_name: null ", "models.<model>.served_name"),  # an example has it
    ],
)
def test_a_key_left_out_is_found(old: str, new: str, missing: str) -> None:
    text = replace_line(EXAMPLE.read_text(encoding="utf-8"), old, new)
    assert {".".join(p) for p in key_paths(Settings) - read_example(text).seen} == {missing}


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("  max_upload_bytes: 20971520 ", "  max_upload_bytes: 10485760 "),
        ("        window: 200 ", "        window: 100 "),
        ("      key_header: X-User-Id ", "      key_header: X-Session "),
        ("      max_in_flight: 2 ", "      max_in_flight: 4 "),
        ("      targets: [] ", "      targets: [{name: a, version: 1, weight: 1}] "),
        ("host: 0.0.0.0                 # example; default 127.0.0.1", "host: 0.0.0.0  # example; default 0.0.0.0"),
        ("resize: crop              # example;", "resize: crop              #"),
        ("  page: true ", "  pages: true "),  # unknown
    ],
)
def test_a_value_that_drifted_from_its_default_is_found(old: str, new: str) -> None:
    text = replace_line(EXAMPLE.read_text(encoding="utf-8"), old, new)
    assert len(read_example(text).wrong) == 1


def test_keys_out_of_order_are_found() -> None:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)
    port = next(i for i, line in enumerate(lines) if line.startswith("  port: "))
    lines[port], lines[port + 1] = lines[port + 1], lines[port]
    assert [w.split(":")[0] for w in read_example("".join(lines)).wrong] == ["server"]


def test_the_example_loads(tmp_path: Path) -> None:
    """Its label paths point into a container: here they point at a file of two labels."""
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    path = tmp_path / "config.yaml"
    path.write_text(EXAMPLE.read_text().replace("/models/mobilenet_v2/labels.txt", str(labels)))
    settings = load_settings(path, {})
    assert settings.backend.address == "tfserving:8500"
    assert settings.models["mobilenet_v2_float"].input.std == (0.229, 0.224, 0.225)
    assert [t.name for t in settings.models["digits"].routes.targets] == ["stable", "canary"]
