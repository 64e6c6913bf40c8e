"""The shape of the code: dependencies point one way, each module stays small, the wheel holds the product only,
and a predict request reaches the gRPC stub in a few calls of our own code."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc.aio._channel
import pytest
from tornado.httpclient import AsyncHTTPClient

from tests.conftest import Tier
from tests.support.imageserver import FIXTURES
from tests.support.tier import ROOT

PRODUCT = ("app", "handlers", "processing")
MAX_MODULE_LINES = 350
NGINX_SET_UP = re.compile(r"^\s*master_process off;", re.MULTILINE)  # a line of an nginx configuration


def modules(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield ".".join(p for p in parts if p != "__init__"), path


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def offenders(package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> dict[str, list[str]]:
    found = {}
    for name, path in modules(package):
        bad = [
            m
            for m in imported(path)
            if any(m == f or m.startswith(f + ".") for f in forbidden)
            and not any(m == a or m.startswith(a + ".") for a in allowed)
        ]
        if bad:
            found[name] = sorted(bad)
    return found


def test_processing_is_pure() -> None:
    forbidden = ("app", "handlers", "tools", "tests", "tornado", "grpc", "asyncio", "os")
    assert offenders("processing", forbidden) == {}


def test_handlers_never_import_the_application_or_tools() -> None:
    assert offenders("handlers", ("app", "tools", "tests", "grpc")) == {}


def test_the_product_never_imports_development_tools_or_tests() -> None:
    assert offenders("app", ("tools", "tests")) == {}


def test_development_tools_never_import_the_tests() -> None:
    """``make run``, the bench and the rollout demo start processes with ``tools/``; the tests reuse it."""
    assert offenders("tools", ("tests",)) == {}


def starts_processes(path: Path) -> bool:
    """Whether ``path`` calls ``subprocess.Popen`` (or an imported ``Popen``) itself."""
    calls = [node.func for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(node, ast.Call)]
    return "Popen" in {f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "") for f in calls}


def test_one_toolkit_starts_the_processes_of_the_tools_and_the_tests() -> None:
    """Start, wait for the ready line with a deadline, stop the group: written once (``tools.process``), as is the
    nginx set-up (``tools.nginx``)."""
    starters = [
        name for package in ("tools", "tests/support") for name, path in modules(package) if starts_processes(path)
    ]
    assert starters == ["tools.process"]
    nginx = [
        name
        for package in ("tools", "tests")
        for name, path in modules(package)
        if NGINX_SET_UP.search(path.read_text())
    ]
    assert nginx == ["tools.nginx"]


@pytest.mark.parametrize(
    ("package", "may_use"),
    [
        # The lower sub-packages of app/ know only each other's leaves, the settings and the errors.
        ("app/fetch", ("app.fetch", "app.settings")),
        ("app/backend", ("app.backend", "app.errors")),
    ],
)
def test_app_sub_packages_point_down(package: str, may_use: tuple[str, ...]) -> None:
    assert offenders(package, ("app", "handlers"), allowed=may_use) == {}


def test_only_the_serving_package_and_main_assemble_the_process() -> None:
    importers = set(offenders("app", ("app.serving",)))
    # app.console is the `imagegate` console script: `imagegate serve` is `python -m app`.
    assert importers <= {"app.__main__", "app.console"} | {name for name, _ in modules("app/serving")}


def test_the_bulk_client_stays_apart_from_the_server() -> None:
    """app/bulk talks to a tier over HTTP: the standard library, tqdm, and the tier's idea of an image."""
    server = ("app", "handlers", "processing", "tools", "tests", "tornado", "grpc", "numpy", "cv2", "yaml")
    assert offenders("app/bulk", server, allowed=("app.bulk", "processing.sniff")) == {}


def test_no_product_module_is_long() -> None:
    lengths = {name: len(path.read_text().splitlines()) for package in PRODUCT for name, path in modules(package)}
    assert {name: n for name, n in lengths.items() if n > MAX_MODULE_LINES} == {}


@pytest.mark.slow
def test_the_wheel_holds_the_product_only(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    subprocess.run([*command, str(ROOT)], check=True, capture_output=True, timeout=180)
    (wheel,) = tmp_path.glob("imagegate-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == set(PRODUCT)
    assert "app/static/index.html" in zipfile.ZipFile(wheel).namelist()
    (entry_points,) = [n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert "imagegate = app.console:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def our_frames(stack: list[inspect.FrameInfo]) -> list[str]:
    """``module.function`` of the frames in the product's packages, outermost first."""
    inside = [f for f in reversed(stack) if Path(f.filename).resolve().is_relative_to(ROOT)]
    ours = [f for f in inside if Path(f.filename).resolve().relative_to(ROOT).parts[0] in PRODUCT]
    return [f"{Path(f.filename).stem}.{f.function}" for f in ours]


@pytest.mark.gen_test
async def test_a_predict_reaches_the_grpc_stub_in_four_calls_of_our_code(
    tier: Tier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Route to stub, batching off: the pipeline runs the request, its predict step (app/routing/routed.py) picks
    the version and sends the rows, the client encodes them, the boundary calls."""
    chains: list[list[str]] = []
    real_call = grpc.aio._channel.UnaryUnaryMultiCallable.__call__

    def recording_call(self: Any, request: Any, **kwargs: Any) -> Any:
        chains.append(our_frames(inspect.stack()))
        return real_call(self, request, **kwargs)

    monkeypatch.setattr(grpc.aio._channel.UnaryUnaryMultiCallable, "__call__", recording_call)
    body = (FIXTURES / "coffee.jpg").read_bytes()
    response = await AsyncHTTPClient().fetch(
        tier.url("/v1/models/tiny:predict"), method="POST", body=body, headers={"Content-Type": "image/jpeg"}
    )
    assert response.code == 200
    assert chains == [["pipeline.run", "routed.predict", "tfserving.predict", "rpc_errors.call_backend"]]
