"""Cached, atomic model directories: a completion stamp per model and build-then-rename.

A model directory ``<out>/<name>/`` is complete when its stamp names the current recipe. A
build writes into ``<out>/.tmp-<name>-<pid>/``, puts the stamp there last and only then renames
it into place, so an interrupted build leaves no half model under the real name. A lock file
serialises concurrent builders, which makes leftover temporary directories safe to delete.

``labels.txt`` comes from the recipe too, but needs no build: a current model whose labels changed
(a corrected class name) has the file rewritten in place and keeps its stamp.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STAMP_NAME = "build-stamp.json"
LABELS_NAME = "labels.txt"
LOCK_NAME = ".build.lock"
TEMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"


@dataclass(frozen=True)
class Recipe:
    """How to build one model and name its classes; bump ``version`` whenever the model would change."""

    name: str
    version: int
    build: Callable[[Path], dict[str, object]]
    labels: Callable[[], Sequence[str]] | None = None  # the class names in class-id order, for labels.txt

    @property
    def tag(self) -> str:
        return f"{self.name}/{self.version}"


def read_stamp(model_dir: Path) -> dict[str, Any] | None:
    """The stamp of a completed build, or None when there is none (or it is unreadable)."""
    try:
        stamp = json.loads((model_dir / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def is_current(out: Path, recipe: Recipe) -> bool:
    """True when ``out/<name>`` was completed by this recipe version."""
    stamp = read_stamp(out / recipe.name)
    return stamp is not None and stamp.get("recipe") == recipe.tag


@contextmanager
def build_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out`` for the duration (blocks while another build runs)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_NAME, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def remove_leftovers(out: Path) -> None:
    """Delete temporary and superseded directories of interrupted builds (call under the lock)."""
    for path in out.iterdir():
        if path.is_dir() and path.name.startswith((TEMP_PREFIX, OLD_PREFIX)):
            shutil.rmtree(path)


def _swap_into_place(staged: Path, final: Path) -> None:
    old = final.with_name(f"{OLD_PREFIX}{final.name}-{os.getpid()}")
    if final.exists():
        final.rename(old)
    staged.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def build_model(out: Path, recipe: Recipe) -> dict[str, Any]:
    """Build ``recipe`` into ``out/<name>`` atomically and return the stamp written."""
    staged = out / f"{TEMP_PREFIX}{recipe.name}-{os.getpid()}"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir()
    started = time.monotonic()
    info = recipe.build(staged)
    write_labels(staged, recipe)
    stamp = {"recipe": recipe.tag, "seconds": round(time.monotonic() - started, 2), "info": info}
    (staged / STAMP_NAME).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    _swap_into_place(staged, out / recipe.name)
    return stamp


def write_labels(model_dir: Path, recipe: Recipe) -> bool:
    """Write the recipe's labels to ``model_dir/labels.txt`` unless it holds them already; True if written."""
    if recipe.labels is None:
        return False
    return write_if_changed(model_dir / LABELS_NAME, "".join(f"{label}\n" for label in recipe.labels()))


def write_if_changed(path: Path, text: str, validate: Callable[[str], object] | None = None) -> bool:
    """Validate and atomically write ``text`` unless ``path`` already holds it; True if written."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    if validate is not None:
        validate(text)
    staged = path.with_name(f"{TEMP_PREFIX}{path.name}-{os.getpid()}")
    staged.write_text(text, encoding="utf-8")
    os.replace(staged, path)
    return True
