"""What a run classifies: a folder by extension and magic bytes, a list file or standard input."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from app.bulk.inputs import Input, InputError, read_inputs
from tests.support.imageserver import FIXTURES


def test_a_folder_gives_its_images_by_extension_and_magic_bytes(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "coffee.jpg", tmp_path / "coffee.JPG")
    (tmp_path / "nested").mkdir()
    shutil.copy(FIXTURES / "digit_3.png", tmp_path / "nested" / "three.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "fake.jpg").write_bytes(b"<html>an error page saved as .jpg</html>")
    found = read_inputs(str(tmp_path), io.StringIO())
    assert found.items == [Input(str(tmp_path / "coffee.JPG"), False), Input(str(tmp_path / "nested/three.png"), False)]
    assert found.not_images == [str(tmp_path / "fake.jpg")]


def test_a_list_has_urls_and_paths_and_skips_blanks_comments_and_repeats(tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("# photos\nhttp://a.test/1.jpg\n\n  photos/2.jpg  \nhttp://a.test/1.jpg\nftp://a.test/3.jpg\n")
    found = read_inputs(str(listing), io.StringIO())
    assert found.items == [
        Input("http://a.test/1.jpg", True),
        Input("photos/2.jpg", False),
        Input("ftp://a.test/3.jpg", True),  # the tier answers url_invalid: the output says why
    ]
    assert found.duplicates == 1


def test_a_dash_reads_the_list_from_standard_input() -> None:
    assert read_inputs("-", io.StringIO("http://a.test/1.jpg\n")).items == [Input("http://a.test/1.jpg", True)]


def test_one_image_file_is_one_input() -> None:
    assert read_inputs(str(FIXTURES / "coffee.jpg"), io.StringIO()).items == [
        Input(str(FIXTURES / "coffee.jpg"), False)
    ]


@pytest.mark.parametrize("content", [None, b"\x00\xff\xfe binary that is neither an image nor text"])
def test_an_unreadable_target_is_an_input_error(tmp_path: Path, content: bytes | None) -> None:
    target = tmp_path / "list.txt"
    if content is not None:
        target.write_bytes(content)
    with pytest.raises(InputError, match=f"cannot read {target}"):
        read_inputs(str(target), io.StringIO())
