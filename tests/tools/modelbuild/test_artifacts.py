"""Build caching and atomic replacement, with recipes that write plain files (no TF)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.modelbuild.artifacts import (
    LABELS_NAME,
    STAMP_NAME,
    Recipe,
    build_model,
    is_current,
    read_stamp,
    remove_leftovers,
    write_if_changed,
)
from tools.modelbuild.build import RECIPES, bring_up_to_date


def _writer(text: str) -> Recipe:
    def build(target: Path) -> dict[str, object]:
        (target / "1").mkdir()
        (target / "1" / "model.txt").write_text(text)
        return {"text": text}

    return Recipe("demo", 1, build)


def _failing(target: Path) -> dict[str, object]:
    (target / "1").mkdir()
    raise RuntimeError("interrupted")


def test_build_writes_stamp_and_model(tmp_path: Path) -> None:
    recipe = _writer("a")
    assert not is_current(tmp_path, recipe)
    stamp = build_model(tmp_path, recipe)
    assert stamp["recipe"] == "demo/1" and stamp["info"] == {"text": "a"}
    assert read_stamp(tmp_path / "demo") == stamp
    assert is_current(tmp_path, recipe)
    assert (tmp_path / "demo" / "1" / "model.txt").read_text() == "a"


def test_new_recipe_version_is_outdated(tmp_path: Path) -> None:
    build_model(tmp_path, _writer("a"))
    newer = Recipe("demo", 2, _writer("b").build)
    assert not is_current(tmp_path, newer)
    build_model(tmp_path, newer)
    assert (tmp_path / "demo" / "1" / "model.txt").read_text() == "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_failed_build_keeps_the_previous_model(tmp_path: Path) -> None:
    build_model(tmp_path, _writer("a"))
    with pytest.raises(RuntimeError):
        build_model(tmp_path, Recipe("demo", 2, _failing))
    assert (tmp_path / "demo" / "1" / "model.txt").read_text() == "a"
    remove_leftovers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_model_without_stamp_is_not_current(tmp_path: Path) -> None:
    build_model(tmp_path, _writer("a"))
    (tmp_path / "demo" / STAMP_NAME).unlink()
    assert not is_current(tmp_path, _writer("a"))


def test_write_if_changed_validates_and_skips_same_text(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    seen: list[str] = []
    assert write_if_changed(path, "x\n", seen.append)
    assert not write_if_changed(path, "x\n", seen.append)
    assert seen == ["x\n"] and path.read_text() == "x\n"


def _named(labels: list[str]) -> Recipe:
    return Recipe("demo", 1, _writer("a").build, lambda: labels)


def test_a_build_writes_the_recipes_labels(tmp_path: Path) -> None:
    build_model(tmp_path, _named(["tabby cat", "tiger cat"]))
    assert (tmp_path / "demo" / LABELS_NAME).read_text(encoding="utf-8") == "tabby cat\ntiger cat\n"


def test_corrected_labels_are_rewritten_without_a_rebuild(tmp_path: Path) -> None:
    """An existing checkout's models keep their build; only labels.txt follows a corrected name."""
    built = build_model(tmp_path, _named(["tabby cat", "a cat having a striped coat"]))
    model = tmp_path / "demo" / "1" / "model.txt"
    model.write_text("as built")  # a rebuild would write "a" again

    stamp, status = bring_up_to_date(tmp_path, _named(["tabby cat", "tiger cat"]))
    assert (stamp, status) == (built, "up to date, labels.txt rewritten")
    assert (tmp_path / "demo" / LABELS_NAME).read_text(encoding="utf-8") == "tabby cat\ntiger cat\n"
    assert model.read_text() == "as built" and read_stamp(tmp_path / "demo") == built

    assert bring_up_to_date(tmp_path, _named(["tabby cat", "tiger cat"])) == (built, "up to date")


def test_an_outdated_recipe_is_built(tmp_path: Path) -> None:
    stamp, status = bring_up_to_date(tmp_path, _named(["x"]))
    assert status == "built" and stamp["recipe"] == "demo/1"


def test_every_demo_model_names_its_classes() -> None:
    assert all(recipe.labels is not None for recipe in RECIPES)
