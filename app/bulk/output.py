"""The results file: one JSON line per input, flushed as it goes, and what a resumed run finds in it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from app.bulk import PROG


class OutputError(Exception):
    """The output file cannot be used: it exists without --resume, or it is not a results file."""


class ResultWriter:
    """Writes each line whole and flushes it, so an interrupted run leaves only complete lines behind."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, line: dict[str, Any]) -> None:
        self._stream.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._stream.flush()


def open_output(path: Path, resume: bool) -> tuple[TextIO, set[str]]:
    """The file to append to and the sources already in it; without ``resume`` it must be new or empty."""
    try:
        if not resume and path.exists() and path.stat().st_size > 0:
            raise OutputError(f"{path} exists: pass --resume to continue it, or choose another -o")
        done = done_sources(path) if resume and path.exists() else set()
        return path.open("a", encoding="utf-8"), done
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc


def done_sources(path: Path) -> set[str]:
    """The sources a results file holds; an unfinished last line (a run killed mid-write) is cut off."""
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) < len(data):
        with path.open("r+b") as file:
            file.truncate(len(complete))
    sources: set[str] = set()
    for number, raw in enumerate(complete.splitlines(), start=1):
        try:
            sources.add(json.loads(raw)["source"])
        except (ValueError, KeyError, TypeError) as exc:
            raise OutputError(f"{path} line {number} is not a result line of {PROG}") from exc
    return sources
