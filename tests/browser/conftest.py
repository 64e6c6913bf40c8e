"""Headless Chromium against the real tier (a subprocess) and the real local backend.

The backend and the tiers start once per module; each test gets a fresh browser context.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.backend import LocalBackend
from tests.support.imageserver import ImageServer
from tests.support.tier import ROOT, TierProcess, start_tier

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
XSS = "<img src=x onerror=window.__xss=1>"
# The tier's limits under test, neither of them the default: the page must show and keep the tier's own.
MAX_UPLOAD_BYTES = 3 << 20
MAX_IMAGES_PER_REQUEST = 2

# Runs before the page's own script: records CSP violations so a test can assert there are none.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


@pytest.fixture(scope="session", autouse=True)
def patient_expectations() -> None:
    """The first prediction warms the model up on 2 shared cores; allow more than the default 5 s."""
    expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def local_backend(backend: LocalBackend) -> LocalBackend:
    """The session's local backend (tests/conftest.py)."""
    return backend


@pytest.fixture(scope="module")
def hostile_labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Labels for the tiny model (8 classes), every one carrying a script-injection attempt."""
    path = tmp_path_factory.mktemp("labels") / "tiny-labels.txt"
    path.write_text("".join(f"{XSS} {i}\n" for i in range(8)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tier_process(local_backend: LocalBackend, hostile_labels: Path) -> Iterator[TierProcess]:
    """The dev configuration, with the tiny model's labels replaced by hostile ones, and limits of its own."""
    overrides = [
        f"models.tiny.postprocess.labels={hostile_labels}",
        f"server.max_upload_bytes={MAX_UPLOAD_BYTES}",
        f"server.max_images_per_request={MAX_IMAGES_PER_REQUEST}",
    ]
    process = start_tier(local_backend.address, overrides=overrides)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def empty_tier_process(local_backend: LocalBackend) -> Iterator[TierProcess]:
    """A tier that serves no models at all."""
    process = start_tier(local_backend.address, overrides=["models={}"])
    yield process
    process.stop()


@pytest.fixture(scope="module")
def image_server() -> Iterator[ImageServer]:
    with ImageServer() as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Module-scoped: Playwright's sync API keeps an event loop running until it stops, which
    would break the asyncio tests collected after this module."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; install it with `make browser`")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(RECORD_CSP_VIOLATIONS)
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
