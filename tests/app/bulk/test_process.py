"""The client as a process: ``python -m app.bulk``, its former name ``python -m app.client`` and the ``imagegate``
console script, what it prints to a terminal and to a log, Ctrl-C and --resume, and what importing it costs."""

from __future__ import annotations

import asyncio
import configparser
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import app.console
from tests.app.bulk.support import CLASSIFIED_FIXTURES, read_lines
from tests.conftest import Tier
from tests.support.imageserver import FIXTURES
from tests.support.tier import ROOT

CLIENT = (sys.executable, "-m", "app.bulk")
FORMER_CLIENT = (sys.executable, "-m", "app.client")
CONSOLE_SCRIPT = Path(sys.executable).parent / "imagegate"  # where pip install puts it, beside the interpreter
PLAIN_LINE = re.compile(r"^imagegate classify: (\d+)/(\d+) \(\d+%\), \d+ failed, [\d.]+ images/s, ETA .+$")


def test_importing_the_client_loads_none_of_the_server() -> None:
    imports = "app.bulk.cli, app.bulk.__main__, app.client.__main__, app.console"
    code = f"import json, sys, {imports}; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, check=True).stdout)
    heavy = ("tornado", "grpc", "cv2", "numpy", "yaml", "google", "tensorflow_serving", "tqdm", "handlers")
    server = ("app.settings", "app.pipeline", "app.serving", "app.backend", "app.fetch", "app.observability")
    assert [m for m in loaded if m.split(".")[0] in heavy or m.startswith(server)] == []


def test_the_console_script_in_setup_cfg_resolves_to_the_dispatcher() -> None:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    (script,) = [line for line in setup["options.entry_points"]["console_scripts"].splitlines() if line.strip()]
    name, target = (part.strip() for part in script.split("="))
    module, function = target.split(":")
    assert name == "imagegate" and getattr(importlib.import_module(module), function) is app.console.main


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        ((), 2, "imagegate classify PATH|URLS.txt"),
        (("--help",), 0, "imagegate serve [--config FILE]"),
        (("serve", "--help"), 0, "--workers WORKERS"),  # the server's own command line, as python -m app has it
        (("classify", "--help"), 0, "--concurrency"),
        (("frobnicate",), 2, "unknown command 'frobnicate'"),
    ],
)
def test_the_imagegate_command_dispatches(args: tuple[str, ...], code: int, says: str) -> None:
    done = subprocess.run([sys.executable, "-m", "app.console", *args], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == code and says in done.stdout + done.stderr


def test_python_m_app_is_still_the_server() -> None:
    done = subprocess.run([sys.executable, "-m", "app", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "--workers WORKERS" in done.stdout


@pytest.mark.gen_test(timeout=60)
async def test_the_console_function_classifies(tier: Tier, tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    args = ["classify", str(FIXTURES), "--server", tier.base_url, "--model", "tiny", "-o", str(results)]
    code = await asyncio.get_running_loop().run_in_executor(None, app.console.main, args)
    assert code == 0 and len(read_lines(results)) == CLASSIFIED_FIXTURES


async def classify_fixtures(command: Sequence[str | Path], tier: Tier, output: Path, **kwargs: Any) -> list[str]:
    """The lines ``command`` writes to stderr classifying the fixtures; asserts every input has its result."""
    args = ["--server", tier.base_url, "--model", "tiny", "-o", str(output)]
    proc = await asyncio.create_subprocess_exec(
        *command, str(FIXTURES), *args, cwd=ROOT, stderr=asyncio.subprocess.PIPE, **kwargs
    )
    _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr
    assert len(read_lines(output)) == CLASSIFIED_FIXTURES
    return stderr.decode().splitlines()


@pytest.mark.gen_test(timeout=60)
async def test_the_former_name_python_m_app_client_still_classifies_and_names_the_new_one(
    tier: Tier, tmp_path: Path
) -> None:
    notice, *rest = await classify_fixtures(FORMER_CLIENT, tier, tmp_path / "out.jsonl")
    assert notice == "imagegate classify: python -m app.client is now python -m app.bulk (or imagegate classify)"
    assert not any("app.client" in line for line in rest)  # said once


@pytest.mark.gen_test(timeout=60)
async def test_the_installed_console_script_classifies(tier: Tier, tmp_path: Path) -> None:
    # This checkout's code first, whichever checkout the virtualenv was installed from.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    command: list[str | Path] = [CONSOLE_SCRIPT, "classify"]
    lines = await classify_fixtures(command, tier, tmp_path / "out.jsonl", env={**os.environ, "PYTHONPATH": path})
    assert lines[-1].startswith(f"imagegate classify: {CLASSIFIED_FIXTURES} classified, 0 failed in ")
    assert not any("app.client" in line for line in lines)


@pytest.mark.gen_test(timeout=60)
async def test_without_a_terminal_progress_is_plain_lines(tier: Tier, tmp_path: Path) -> None:
    args = ["--server", tier.base_url, "--model", "tiny", "--batch", "2", "--progress-every", "0"]
    proc = await asyncio.create_subprocess_exec(
        *CLIENT, str(FIXTURES), *args, "-o", str(tmp_path / "out.jsonl"), cwd=ROOT, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await proc.communicate()
    assert proc.returncode == 0
    text = stderr.decode()
    assert "\r" not in text and "\x1b" not in text
    progress, summary = text.splitlines()[:-1], text.splitlines()[-1]
    assert all(PLAIN_LINE.match(line) for line in progress), progress
    assert progress[-1].startswith(f"imagegate classify: {CLASSIFIED_FIXTURES}/{CLASSIFIED_FIXTURES} (100%)")
    assert summary.startswith(f"imagegate classify: {CLASSIFIED_FIXTURES} classified, 0 failed in ")


def read_terminal(master: int) -> bytes:
    """Everything written to a pseudo-terminal until its last writer closes it."""
    data = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child has exited and closed its side
            return data
        if not chunk:
            return data
        data += chunk


@pytest.mark.gen_test(timeout=60)
async def test_on_a_terminal_progress_is_a_bar_with_rate_and_eta(tier: Tier, tmp_path: Path) -> None:
    master, terminal = os.openpty()
    args = ["--server", tier.base_url, "--model", "tiny", "--batch", "1", "-o", str(tmp_path / "out.jsonl")]
    proc = await asyncio.create_subprocess_exec(*CLIENT, str(FIXTURES), *args, cwd=ROOT, stderr=terminal)
    os.close(terminal)
    try:
        screen = (await asyncio.get_running_loop().run_in_executor(None, read_terminal, master)).decode()
    finally:
        os.close(master)
    assert await proc.wait() == 0
    n = CLASSIFIED_FIXTURES
    # tqdm's last frame, drawn over the others after a carriage return: count, elapsed<ETA, rate
    assert re.search(rf"\rclassify: 100%\|█+\| {n}/{n} \[00:\d\d<00:00, +[\d.]+img/s\]", screen), screen


@pytest.mark.gen_test(timeout=90)
async def test_an_interrupted_run_resumes_to_completion_without_duplicates(tier: Tier, tmp_path: Path) -> None:
    """Ctrl-C after a few lines: the lines written are whole, and --resume sends only the rest."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for copy in range(8):
        for image in FIXTURES.iterdir():
            shutil.copy(image, photos / f"{copy}-{image.name}")
    total = 8 * CLASSIFIED_FIXTURES
    results = tmp_path / "results.jsonl"
    args = ["--server", tier.base_url, "--model", "tiny", "--concurrency", "1", "--batch", "1", "-o", str(results)]
    proc = await asyncio.create_subprocess_exec(
        *CLIENT, str(photos), *args, "--progress-every", "0", cwd=ROOT, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    while not (match := PLAIN_LINE.match((await proc.stderr.readline()).decode())) or int(match.group(1)) < 3:
        pass
    proc.send_signal(signal.SIGINT)
    rest = (await proc.stderr.read()).decode()
    assert await proc.wait() == 130, rest
    assert "imagegate classify: interrupted" in rest and "inputs not done: run again with --resume" in rest
    interrupted = read_lines(results)  # every line whole
    assert 3 <= len(interrupted) < total

    resumed = await asyncio.create_subprocess_exec(*CLIENT, str(photos), *args, "--resume", cwd=ROOT)
    assert await resumed.wait() == 0
    sources = [line["source"] for line in read_lines(results)]
    assert len(sources) == total and set(sources) == {str(p) for p in photos.iterdir()}
    assert all("classes" in line for line in read_lines(results))
