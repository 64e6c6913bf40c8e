"""tools/bench/README.md points at files and modules that exist: a file moved without its pointer fails here."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "tools" / "bench" / "README.md"
# A path: some/dirs/name.ext, from the repository, from tools/ (`bench/load.py`) or from the README's folder.
PATH = re.compile(r"(?<![\w./-])((?:[\w.-]+/)+[\w.-]+\.(?:py|txt|md|yaml|json))\b")
BASES = (ROOT, ROOT / "tools", README.parent)
MODULE = re.compile(r"python -m ([\w.]+)")
GENERATED = ("build/",)  # written by the run itself


def named_paths(text: str) -> set[str]:
    return {p for p in PATH.findall(text) if not p.startswith(GENERATED)}


def missing_paths(text: str) -> list[str]:
    return sorted(p for p in named_paths(text) if not any((base / p).exists() for base in BASES))


def missing_modules(text: str) -> list[str]:
    return sorted({m for m in MODULE.findall(text) if importlib.util.find_spec(m) is None})


def test_every_file_the_bench_readme_names_exists() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(named_paths(text)) > 20  # the pattern still finds the README's pointers
    assert missing_paths(text) == []


def test_every_module_the_bench_readme_runs_exists() -> None:
    assert missing_modules(README.read_text(encoding="utf-8")) == []


def test_a_moved_file_is_caught() -> None:
    moved = "built on `app/tensors.py` and (`tests/app/test_backpressure.py`), run `python -m tools.bench.gone`"
    assert missing_paths(moved) == ["app/tensors.py", "tests/app/test_backpressure.py"]
    assert missing_modules(moved) == ["tools.bench.gone"]
