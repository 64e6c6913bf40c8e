"""What to classify: the images of a folder (by extension and magic bytes), one image, or a list of URLs and paths."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from processing.sniff import sniff_format

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp"})
HEAD_BYTES = 16  # enough for every signature sniff_format knows


class InputError(Exception):
    """The folder or list named on the command line cannot be read; nothing is sent."""


@dataclass(frozen=True)
class Input:
    """One image to classify: a URL the tier downloads, or a local file uploaded to it."""

    source: str  # the URL or path as given or found; the output's ``source`` and the key of --resume
    is_url: bool


@dataclass
class Inputs:
    items: list[Input]
    not_images: list[str] = field(default_factory=list)  # files named like images whose bytes are not
    duplicates: int = 0


def read_inputs(target: str, stdin: TextIO) -> Inputs:
    """The inputs named by ``target``: a folder, an image file, a list file, or ``-`` for a list on ``stdin``."""
    try:
        if target == "-":
            return _unique(_from_lines(stdin))
        path = Path(target)
        if path.is_dir():
            return _from_folder(path)
        if sniff_format(_head(path)) is not None:
            return Inputs([Input(target, is_url=False)])
        with path.open(encoding="utf-8") as lines:
            return _unique(_from_lines(lines))
    except OSError as exc:
        raise InputError(f"cannot read {target}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read {target}: not an image, a folder or a UTF-8 list of URLs and paths") from exc


def _head(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(HEAD_BYTES)


def _from_lines(lines: Iterable[str]) -> Iterator[Input]:
    """One URL or path a line; blank lines and lines starting with ``#`` are skipped."""
    for raw in lines:
        line = raw.strip()
        if line and not line.startswith("#"):
            # Anything with a scheme goes to the tier, which answers url_invalid for one it does not fetch.
            yield Input(line, is_url="://" in line)


def _from_folder(folder: Path) -> Inputs:
    """Image files under ``folder``, depth first in name order; a file named like an image must also start like one."""
    found = Inputs([])
    for directory, subdirectories, names in os.walk(folder):
        subdirectories.sort()
        for name in sorted(names):
            path = Path(directory, name)
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            try:
                is_image = sniff_format(_head(path)) is not None
            except OSError:
                is_image = True  # keep it: its upload fails as file_unreadable, so the output says why
            if is_image:
                found.items.append(Input(str(path), is_url=False))
            else:
                found.not_images.append(str(path))
    return found


def _unique(inputs: Iterable[Input]) -> Inputs:
    """The inputs in order, each source once: one output line per source is what --resume relies on."""
    seen: dict[str, Input] = {}
    duplicates = 0
    for item in inputs:
        if item.source in seen:
            duplicates += 1
        else:
            seen[item.source] = item
    return Inputs(list(seen.values()), duplicates=duplicates)
