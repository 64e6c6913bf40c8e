"""A detection model's answer on the page: boxes, labels and keypoints drawn over the image, in headless Chromium.

The dev configuration's ``squares`` detector (saturated red, green and blue squares; keypoints each box's top-left
corner and centre) answers boxes in the image's own pixels, EXIF-upright. The page shows the upload scaled to its
card; the tests find the drawn marks in screenshots (overlay shown, overlay hidden: the pixels that change are the
overlay's) and check them against the answer mapped to the screen by the image's display scale and offset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from playwright.sync_api import Browser, Locator, Page, Route, expect

from tests.browser.test_page import (
    PREDICT,
    assert_no_csp_violations,
    cards,
    classify,
    open_page,
    record_predicts,
)
from tests.support.exif import with_exif_orientation
from tests.support.imageserver import ImageServer
from tests.support.tier import TierProcess

pytestmark = pytest.mark.browser

GREY = (128, 128, 128)
RED, GREEN = (0, 0, 255), (0, 255, 0)  # BGR
# A mark's edge is anti-aliased over about a pixel and the answer itself is within a pixel of the square (the
# model's 256-pixel letterbox), shown here at less than full size: 1.5 screen pixels fails a box off by a stroke.
TOLERANCE_PX = 1.5
# A pixel belongs to the overlay when the overlay changes it by more than this (sum over the three channels).
CHANGED = 60


@dataclass(frozen=True)
class Square:
    x: int
    y: int
    side: int
    bgr: tuple[int, int, int]


# Upright (displayed) 480 x 320, landscape: a red square at the right, a smaller green one at the lower left.
SQUARES = (Square(300, 60, 120, RED), Square(60, 170, 100, GREEN))
UPRIGHT_SIZE = (480, 320)


def upright_image() -> np.ndarray:
    width, height = UPRIGHT_SIZE
    image = np.full((height, width, 3), GREY, dtype=np.uint8)
    for s in SQUARES:
        image[s.y : s.y + s.side, s.x : s.x + s.side] = s.bgr
    return image


def png_file(tmp_path: Path) -> Path:
    path = tmp_path / "squares.png"
    cv2.imwrite(str(path), upright_image())
    return path


def exif_rotated_file(tmp_path: Path) -> Path:
    """Stored turned a quarter counter-clockwise, with EXIF orientation 6 (turn clockwise to show): shown upright."""
    stored = cv2.rotate(upright_image(), cv2.ROTATE_90_COUNTERCLOCKWISE)
    ok, jpeg = cv2.imencode(".jpg", stored, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    path = tmp_path / "squares-exif6.jpg"
    path.write_bytes(with_exif_orientation(jpeg.tobytes(), 6))
    return path


@dataclass(frozen=True)
class Shown:
    """How the page shows the image: its box on screen (CSS pixels = screen pixels here) and natural size."""

    left: float
    top: float
    width: float
    height: float
    natural_width: int
    natural_height: int

    @property
    def scale(self) -> float:
        return min(self.width / self.natural_width, self.height / self.natural_height)

    def to_screen(self, x: float, y: float) -> tuple[float, float]:
        """Image pixels to viewport pixels, as object-fit: contain centres the scaled image in its box."""
        dx = (self.width - self.natural_width * self.scale) / 2
        dy = (self.height - self.natural_height * self.scale) / 2
        return self.left + dx + x * self.scale, self.top + dy + y * self.scale


SHOWN = """
(image) => {
  image.scrollIntoView({ block: "center" });
  const r = image.getBoundingClientRect();
  return [r.left, r.top, r.width, r.height, image.naturalWidth, image.naturalHeight];
}
"""


def shown(card: Locator) -> Shown:
    left, top, width, height, natural_width, natural_height = card.locator("img").evaluate(SHOWN)
    return Shown(left, top, width, height, int(natural_width), int(natural_height))


def screenshot(page: Page) -> np.ndarray:
    """The viewport as BGR, one pixel per CSS pixel."""
    png = page.screenshot(animations="disabled")
    decoded: np.ndarray | None = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None
    return decoded


def with_and_without_overlay(page: Page, card: Locator) -> tuple[np.ndarray, np.ndarray]:
    overlay = card.locator(".overlay")
    drawn = screenshot(page)
    overlay.evaluate("svg => { svg.style.visibility = 'hidden' }")
    bare = screenshot(page)
    overlay.evaluate("svg => { svg.style.visibility = '' }")
    return drawn, bare


def square_on_screen(bare: np.ndarray, bgr: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """The square's pixels as Chromium shows the image: left, top, right, bottom edges (exclusive)."""
    mask = np.all(np.abs(bare.astype(np.int16) - np.array(bgr, dtype=np.int16)) < 80, axis=2)
    rows, columns = np.nonzero(mask)
    assert rows.size, f"no {bgr} pixels on screen"
    return int(columns.min()), int(rows.min()), int(columns.max()) + 1, int(rows.max()) + 1


def band_centre(changed: np.ndarray, around: float) -> float:
    """The centre of the run of changed pixels (a 1-d mask) nearest ``around``, in pixel coordinates."""
    lo = max(int(around) - 8, 0)
    window = np.nonzero(changed[lo : int(around) + 9])[0]
    assert window.size, f"nothing drawn near {around:.1f}"
    return float(window.mean()) + lo + 0.5


def answer_of(requests: list[Any]) -> dict[str, Any]:
    assert len(requests) == 1
    response = requests[0].response()
    assert response is not None
    prediction: dict[str, Any] = response.json()["predictions"][0]
    return prediction


def js_round(value: float) -> int:
    """JavaScript's Math.round (halves up), which the page uses; Python's round() takes halves to even."""
    return math.floor(value + 0.5)


def label_text(detection: dict[str, Any], index: int) -> str:
    return f"{index + 1}. {detection['label']} {detection['score'] * 100:.1f}%"


def upload_to_squares(page: Page, tier: TierProcess, path: Path) -> tuple[Locator, dict[str, Any]]:
    requests = record_predicts(page)
    open_page(page, tier, "squares")
    page.locator("#files").set_input_files(path)
    classify(page)
    expect(page.locator("#progress-count")).to_have_text("1 of 1 done")
    return cards(page).first, answer_of(requests)


def check_marks_sit_where_the_answer_says(page: Page, card: Locator, detections: list[dict[str, Any]]) -> None:
    expect(card.locator(".overlay .box")).to_have_count(len(detections))
    image = shown(card)
    assert (image.natural_width, image.natural_height) == UPRIGHT_SIZE, "Chromium shows the image EXIF-upright"
    assert image.scale < 0.9, "the image is shown scaled, so the display scale is under test"
    drawn, bare = with_and_without_overlay(page, card)
    changed = np.abs(drawn.astype(np.int16) - bare.astype(np.int16)).sum(axis=2) > CHANGED
    for detection in detections:
        box = detection["box"]
        left, top = image.to_screen(box["x"], box["y"])
        right, bottom = image.to_screen(box["x"] + box["width"], box["y"] + box["height"])
        # The image as Chromium shows it has the square where the answer, mapped to the screen, says.
        square = square_on_screen(bare, RED if detection["label"] == "red" else GREEN)
        assert np.allclose(square, (left, top, right, bottom), atol=TOLERANCE_PX), (square, (left, top, right, bottom))
        # And the drawn box's edges lie on it: left and right edges across a row, the bottom edge down a column
        # (a row and column clear of the keypoints and the label).
        row, column = round(top + 0.75 * (bottom - top)), round(left + 0.75 * (right - left))
        assert band_centre(changed[row], left) == pytest.approx(left, abs=TOLERANCE_PX)
        assert band_centre(changed[row], right) == pytest.approx(right, abs=TOLERANCE_PX)
        assert band_centre(changed[:, column], bottom) == pytest.approx(bottom, abs=TOLERANCE_PX)
        # The centre keypoint is drawn at the answered centre.
        cx, cy = image.to_screen(*detection["keypoints"][1])
        ys, xs = np.nonzero(changed[round(cy) - 6 : round(cy) + 7, round(cx) - 6 : round(cx) + 7])
        assert xs.mean() + round(cx) - 6 + 0.5 == pytest.approx(cx, abs=TOLERANCE_PX)
        assert ys.mean() + round(cy) - 6 + 0.5 == pytest.approx(cy, abs=TOLERANCE_PX)


def test_the_detector_is_described_by_its_kind(page: Page, tier_process: TierProcess) -> None:
    open_page(page, tier_process, "squares")
    expect(page.locator("#model-status")).to_have_text(
        "Detector (draws boxes, labels and keypoints on the image), input 256\u00d7256."
    )


def test_boxes_labels_and_keypoints_are_drawn_where_the_answer_says(
    page: Page, tier_process: TierProcess, tmp_path: Path, artifacts: Path
) -> None:
    card, prediction = upload_to_squares(page, tier_process, png_file(tmp_path))
    detections = prediction["detections"]
    assert sorted(d["label"] for d in detections) == ["green", "red"]
    check_marks_sit_where_the_answer_says(page, card, detections)
    label_height = card.locator(".box-label").first.evaluate("label => label.getBoundingClientRect().height")
    before = shown(card).scale
    page.set_viewport_size({"width": 600, "height": 900})  # two narrower columns instead of three: another scale
    expect(card.locator("img")).not_to_have_js_property("clientWidth", round(before * UPRIGHT_SIZE[0]))
    check_marks_sit_where_the_answer_says(page, card, detections)
    assert shown(card).scale != pytest.approx(before, abs=0.05)
    # The label keeps its size on screen (12 CSS px type) whatever the image's scale.
    resized_label = card.locator(".box-label").first.evaluate("label => label.getBoundingClientRect().height")
    assert resized_label == pytest.approx(label_height, abs=0.5)

    # Labels are text, on the image and in the card's list, not only colour.
    expect(card.locator(".box-label")).to_have_text([label_text(d, i) for i, d in enumerate(detections)])
    expect(card.locator(".detection-label")).to_have_text([f"{i + 1}. {d['label']}" for i, d in enumerate(detections)])
    expect(card.locator(".keypoint")).to_have_count(sum(len(d["keypoints"]) for d in detections))
    expect(page.locator("#progress-latest")).to_contain_text("squares.png: 2 detections, best")
    card.screenshot(path=str(artifacts / "detections.png"), animations="disabled")
    assert_no_csp_violations(page)


def test_an_exif_rotated_photo_is_shown_upright_with_its_boxes_on_a_phone(
    browser: Browser, tier_process: TierProcess, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        card, prediction = upload_to_squares(page, tier_process, exif_rotated_file(tmp_path))
        check_marks_sit_where_the_answer_says(page, card, prediction["detections"])
    finally:
        context.close()


def test_an_image_without_squares_says_nothing_was_detected(
    page: Page, tier_process: TierProcess, tmp_path: Path
) -> None:
    path = tmp_path / "grey.png"
    cv2.imwrite(str(path), np.full((64, 96, 3), GREY, dtype=np.uint8))
    card, prediction = upload_to_squares(page, tier_process, path)
    assert prediction["detections"] == []
    expect(card.locator(".detections")).to_have_text("Nothing detected above the threshold.")
    expect(card.locator(".overlay .box")).to_have_count(0)
    expect(page.locator("#progress-latest")).to_contain_text("grey.png: nothing detected")


def test_a_url_cards_detections_are_listed_as_text(
    page: Page, tier_process: TierProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    served = tmp_path_factory.mktemp("served")
    png_file(served)
    with ImageServer(directory=served) as server:
        requests = record_predicts(page)
        open_page(page, tier_process, "squares")
        page.get_by_label("Image URLs, one per line").fill(server.url("squares.png"))
        classify(page)
        expect(page.locator("#progress-count")).to_have_text("1 of 1 done")
    detections = answer_of(requests)["detections"]
    card = cards(page).first
    expected = [f"{i + 1}. {d['label']}" for i, d in enumerate(detections)]
    assert sorted(d["label"] for d in detections) == ["green", "red"]
    expect(card.locator(".detection-label")).to_have_text(expected)
    x, y, width, height = (js_round(detections[0]["box"][k]) for k in ("x", "y", "width", "height"))
    expect(card.locator(".detection-where").first).to_have_text(
        f"at x {x}, y {y}, {width}\u00d7{height} px, 2 keypoints"
    )
    expect(card.locator("img")).to_have_count(0)  # the page never loads the remote image, so draws nothing
    expect(card.locator(".overlay")).to_have_count(0)


@pytest.mark.parametrize(("model", "fit"), [("squares", "contain"), ("mobilenet_v2", "cover")])
def test_a_detectors_uploads_show_whole_before_the_answer(
    page: Page, tier_process: TierProcess, tmp_path: Path, model: str, fit: str
) -> None:
    held: list[Route] = []
    page.route(PREDICT, lambda route: held.append(route))
    open_page(page, tier_process, model)
    page.locator("#files").set_input_files(png_file(tmp_path))
    classify(page)
    image = cards(page).first.locator("img")
    expect(image).to_have_css("object-fit", fit)  # the kind, from GET /v1/models, decides before any answer
    assert len(held) == 1
    held[0].continue_()
    expect(page.locator("#progress-count")).to_have_text("1 of 1 done")
    expect(image).to_have_css("object-fit", fit)
