"""The browser page at /, driven in headless Chromium against the real tier and backend."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, Request, Route, expect

from app.settings import ServerSettings
from tests.browser.conftest import MAX_IMAGES_PER_REQUEST, MAX_UPLOAD_BYTES, XSS
from tests.support.imageserver import FIXTURES, ImageServer
from tests.support.tier import TierProcess

pytestmark = pytest.mark.browser

PREDICT = re.compile(r"/v1/models/[^/]+:predict$")

DROP_FILES = """
([files]) => {
  const transfer = new DataTransfer();
  for (const f of files) {
    const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], f.name, { type: f.type }));
  }
  const zone = document.getElementById("drop-zone");
  for (const type of ["dragenter", "dragover", "drop"]) {
    zone.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: transfer }));
  }
}
"""


def open_page(page: Page, tier: TierProcess, model: str = "mobilenet_v2") -> None:
    page.goto(tier.base_url + "/")
    select = page.get_by_label("Model", exact=True)
    expect(select).to_be_enabled()
    select.select_option(model)


def drop_files(page: Page, paths: list[Path]) -> None:
    """Drop files on the drop zone as a drag from the desktop would."""
    files = [{"name": p.name, "type": "image/jpeg", "data": base64.b64encode(p.read_bytes()).decode()} for p in paths]
    page.evaluate(DROP_FILES, [files])


def classify(page: Page) -> None:
    page.get_by_role("button", name="Classify", exact=True).click()


def cards(page: Page) -> Locator:
    return page.locator("#results > li.card")


def top_label(card: Locator) -> Locator:
    return card.locator(".class-label").first


def record_predicts(page: Page) -> list[Request]:
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request) if PREDICT.search(request.url) else None)
    return requests


def assert_no_csp_violations(page: Page) -> None:
    assert page.evaluate("window.__cspViolations") == []


def test_keyboard_upload_of_coffee_shows_espresso_first(page: Page, tier_process: TierProcess) -> None:
    # Playwright subscribes to file choosers fire-and-forget when the first listener is added; adding
    # one before navigating makes sure it is on before the key press (else no chooser is reported).
    page.on("filechooser", lambda chooser: None)
    open_page(page, tier_process)
    page.locator("#drop-zone").focus()
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    chooser.value.set_files(FIXTURES / "coffee.jpg")
    expect(page.locator("#file-summary")).to_have_text("1 image chosen: coffee.jpg.")
    classify(page)

    card = cards(page).first
    expect(top_label(card)).to_have_text("espresso")
    expect(card.get_by_role("img", name="coffee.jpg")).to_be_visible()
    expect(card.locator(".card-title")).to_have_text("coffee.jpg")
    expect(card.locator(".class-score").first).to_have_text(re.compile(r"^\d{1,3}\.\d%$"))
    expect(card.locator(".card-meta")).to_have_text(
        re.compile(r"^mobilenet_v2 v1 · server\s[\d.]+\sm?s · total\s[\d.]+\sm?s$")
    )
    expect(page.locator("#progress-count")).to_have_text("1 of 1 done")
    assert_no_csp_violations(page)


def test_two_dropped_photos_fill_their_own_cards_as_answers_arrive(page: Page, tier_process: TierProcess) -> None:
    held: list[Route] = []

    def hold_chelsea(route: Route) -> None:
        if b'filename="chelsea.jpg"' in (route.request.post_data_buffer or b""):
            held.append(route)
        else:
            route.continue_()

    page.route(PREDICT, hold_chelsea)
    requests = record_predicts(page)
    open_page(page, tier_process)
    drop_files(page, [FIXTURES / "coffee.jpg", FIXTURES / "chelsea.jpg"])
    expect(page.locator("#file-summary")).to_have_text("2 images chosen: coffee.jpg, chelsea.jpg.")
    classify(page)

    coffee, chelsea = cards(page).nth(0), cards(page).nth(1)
    expect(top_label(coffee)).to_have_text("espresso")
    expect(page.locator("#progress-count")).to_have_text("1 of 2 done")
    expect(chelsea.locator(".card-status")).to_have_text("Classifying…")
    chelsea.evaluate("card => { card.dataset.mark = 'waiting' }")
    assert len(held) == 1
    held[0].continue_()

    expect(page.locator("#progress-count")).to_have_text("2 of 2 done")
    expect(cards(page)).to_have_count(2)
    expect(page.locator(".card[data-mark=waiting] .card-title")).to_have_text("chelsea.jpg")
    expect(top_label(chelsea)).to_have_text("Egyptian Mau")  # ImageNet class 285, a cat
    assert len(requests) == 2, "one request per uploaded image"


def test_pasted_url_is_classified_by_the_server(
    page: Page, tier_process: TierProcess, image_server: ImageServer
) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    open_page(page, tier_process)
    url = image_server.url("coffee.jpg")
    page.get_by_label("Image URLs, one per line").fill(url)
    classify(page)

    card = cards(page).first
    expect(top_label(card)).to_have_text("espresso")
    expect(card.locator(".card-title")).to_have_text(url)
    expect(card.locator("img")).to_have_count(0)  # the page never loads the remote URL itself
    assert all(r.startswith(tier_process.base_url) for r in requests), requests


def test_a_url_that_404s_fails_alone(page: Page, tier_process: TierProcess, image_server: ImageServer) -> None:
    open_page(page, tier_process)
    missing, good = image_server.url("missing.jpg"), image_server.url("chelsea.jpg")
    page.get_by_label("Image URLs, one per line").fill(f"{missing}\n{good}\n")
    classify(page)

    expect(page.locator("#progress-count")).to_have_text("2 of 2 done")
    expect(page.locator("#progress-failed")).to_have_text(", 1 failed")
    failed, ok = cards(page).nth(0), cards(page).nth(1)
    expect(failed.locator(".error-code code")).to_have_text("source_http_error")
    expect(failed.locator(".error-message")).to_contain_text("404")
    expect(failed.locator(".classes")).to_have_count(0)
    expect(ok.locator(".classes li")).to_have_count(5)


def test_a_whole_request_failure_shows_on_every_card_of_it(
    page: Page, tier_process: TierProcess, image_server: ImageServer
) -> None:
    open_page(page, tier_process)
    page.locator("#model option").first.evaluate("option => { option.value = 'no_such_model' }")
    page.get_by_label("Model", exact=True).select_option("no_such_model")
    page.get_by_label("Image URLs, one per line").fill(
        f"{image_server.url('coffee.jpg')}\n{image_server.url('rocket.jpg')}"
    )
    classify(page)

    expect(page.locator("#progress-count")).to_have_text("2 of 2 done")
    for i in range(2):
        expect(cards(page).nth(i).locator(".error-code code")).to_have_text("model_not_found")
        expect(cards(page).nth(i).locator(".error-message")).to_contain_text("no_such_model")


def test_hostile_labels_and_file_names_stay_text(page: Page, tier_process: TierProcess) -> None:
    open_page(page, tier_process, model="tiny")
    page.locator("#files").set_input_files(
        [
            {"name": "rocket.jpg", "mimeType": "image/jpeg", "buffer": (FIXTURES / "rocket.jpg").read_bytes()},
            {"name": f"{XSS}.jpg", "mimeType": "image/jpeg", "buffer": f"{XSS} is not a JPEG".encode()},
        ]
    )
    classify(page)

    expect(page.locator("#progress-count")).to_have_text("2 of 2 done")
    labelled, broken = cards(page).nth(0), cards(page).nth(1)
    expect(top_label(labelled)).to_have_text(re.compile("^" + re.escape(XSS) + r" \d$"))
    expect(broken.locator(".card-title")).to_have_text(f"{XSS}.jpg")  # the echoed `source`
    expect(broken.locator(".error-code code")).to_have_text("image_decode_failed")
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("img[src='x']").count() == 0
    assert_no_csp_violations(page)


def test_the_limits_are_the_tiers_own() -> None:
    defaults = ServerSettings()
    assert defaults.max_upload_bytes != MAX_UPLOAD_BYTES
    assert defaults.max_images_per_request != MAX_IMAGES_PER_REQUEST


def test_the_hint_says_the_tiers_upload_limit(page: Page, tier_process: TierProcess) -> None:
    open_page(page, tier_process)
    expect(page.locator("#drop-hint")).to_have_text("Up to 3 MiB per image. You can also paste an image.")


def test_a_file_over_the_tiers_limit_is_refused_without_a_request(
    page: Page, tier_process: TierProcess, tmp_path: Path
) -> None:
    huge = tmp_path / "huge.jpg"
    with huge.open("wb") as f:
        f.truncate(MAX_UPLOAD_BYTES + 1)  # sparse: nothing is written
    requests = record_predicts(page)
    open_page(page, tier_process)
    page.locator("#files").set_input_files([huge, FIXTURES / "coffee.jpg"])
    classify(page)

    expect(page.locator("#progress-count")).to_have_text("2 of 2 done")
    refused, sent = cards(page).nth(0), cards(page).nth(1)
    expect(refused.locator(".error-message")).to_contain_text("the limit is 3 MiB per image. Not sent.")
    expect(refused.locator(".error-code code")).to_have_text("too_large")
    expect(top_label(sent)).to_have_text("espresso")
    assert len(requests) == 1
    answer = requests[0].response()
    assert answer is not None
    assert [item["source"] for item in answer.json()["predictions"]] == ["coffee.jpg"]


def test_urls_go_in_groups_the_tier_takes(page: Page, tier_process: TierProcess, image_server: ImageServer) -> None:
    requests = record_predicts(page)
    open_page(page, tier_process)
    names = ("coffee.jpg", "chelsea.jpg", "rocket.jpg")
    page.get_by_label("Image URLs, one per line").fill("\n".join(image_server.url(n) for n in names))
    classify(page)

    expect(page.locator("#progress-count")).to_have_text("3 of 3 done")
    expect(page.locator("#progress-failed")).to_have_text("")
    assert [len(r.post_data_json["instances"]) for r in requests] == [MAX_IMAGES_PER_REQUEST, 1]


def test_a_tier_without_models_says_so(page: Page, empty_tier_process: TierProcess) -> None:
    page.goto(empty_tier_process.base_url + "/")
    expect(page.locator("#model-status")).to_contain_text("no models")
    expect(page.get_by_label("Model", exact=True)).to_be_disabled()
    expect(page.get_by_role("button", name="Classify", exact=True)).to_be_disabled()


def test_controls_are_labelled_and_in_order(page: Page, tier_process: TierProcess) -> None:
    open_page(page, tier_process)
    order: list[str] = []
    for _ in range(5):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id || document.activeElement.className"))
    assert order == ["skip-link", "model", "drop-zone", "urls", "classify"]
    page.keyboard.press("Enter")
    expect(page.locator("#form-message")).to_have_text("Add an image or paste an image URL first.")
    expect(page.locator("#progress")).to_have_attribute("aria-live", "polite")
    expect(page.get_by_label("Image files")).to_have_attribute("accept", "image/*")
    expect(page.get_by_label("Take a photo")).to_have_attribute("capture", "environment")


def show_several_results(page: Page, tier: TierProcess, image_server: ImageServer) -> None:
    open_page(page, tier)
    page.locator("#files").set_input_files([FIXTURES / n for n in ("coffee.jpg", "chelsea.jpg", "astronaut.jpg")])
    page.get_by_label("Image URLs, one per line").fill(
        f"{image_server.url('rocket.jpg')}\n{image_server.url('missing.jpg')}"
    )
    classify(page)
    expect(page.locator("#progress-count")).to_have_text("5 of 5 done")
    expect(page.locator("#classify")).to_have_attribute("aria-disabled", "false")
    expect(page.locator(".card .classes")).to_have_count(4)


def test_results_screenshot(page: Page, tier_process: TierProcess, image_server: ImageServer, artifacts: Path) -> None:
    show_several_results(page, tier_process, image_server)
    page.screenshot(path=str(artifacts / "results.png"), full_page=True, animations="disabled")
    assert_no_csp_violations(page)


def test_results_on_a_phone(
    browser: Browser, tier_process: TierProcess, image_server: ImageServer, artifacts: Path
) -> None:
    context = browser.new_context(
        viewport={"width": 375, "height": 812}, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    try:
        page = context.new_page()
        show_several_results(page, tier_process, image_server)
        expect(page.get_by_text("Take a photo")).to_be_visible()
        page.screenshot(path=str(artifacts / "results-mobile.png"), full_page=True, animations="disabled")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
    finally:
        context.close()
