"""The images' recipe: hadolint, a build context of what the Dockerfile copies, a pinned base and numeric
users, and pinned runtime requirements that still satisfy the package's own.

No image is built here (no Docker engine on the development machine or CI); what the tier's image holds
was measured by installing the build stage's requirements into a prefix (README "Deploying").
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from docker.utils.build import exclude_paths  # type: ignore[import-untyped]
from packaging.requirements import Requirement

from tests.deploy.manifests import ROOT, run_tool

DOCKERFILES = sorted(ROOT.glob("Dockerfile*"))
IMAGE_REQUIREMENTS = ROOT / "deploy" / "image"


def stages(dockerfile: Path) -> list[tuple[str, list[str]]]:
    """(stage name, its instructions) in order, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    found: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            found.append((line.split()[-1] if " AS " in line.upper() else "", []))
        elif found:
            found[-1][1].append(line)
    return found


def pins(path: Path) -> dict[str, Requirement]:
    lines = (line.split("#")[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return {(r := Requirement(line)).name.lower().replace("_", "-"): r for line in lines if line}


def test_hadolint_finds_nothing() -> None:
    assert DOCKERFILES
    result = run_tool("hadolint", ["--failure-threshold", "style", *map(str, DOCKERFILES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_base_is_pinned_and_every_image_runs_as_a_numeric_user() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim-\w+@sha256:[0-9a-f]{64}", base.group(1)), base
    built = stages(ROOT / "Dockerfile")
    assert built[-1][0] == "tier", "the default target (the last stage) is the tier"
    for name in ("tier", "models"):
        users = [i.split()[1] for n, instructions in built if n == name for i in instructions if i.startswith("USER")]
        assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), f"stage {name} runs as {users}"


def test_the_build_context_holds_what_the_dockerfile_copies_and_nothing_else() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    context = exclude_paths(str(ROOT), [p for p in patterns if p and not p.startswith("#")])
    sources = {
        src.rstrip("/")
        for _, instructions in stages(ROOT / "Dockerfile")
        for i in instructions
        if i.startswith("COPY") and "--from=" not in i
        for src in i.split()[1:-1]
    }
    for source in sources - {"build/models"}:  # built by `make models`, which the README asks for first
        assert source in context, f"COPY {source}: left out of the build context"
    for path in context:
        assert not path.startswith((".venv", ".git/", "tests", "tools", "build/bench")), path
        assert path.split("/")[0] in {"app", "handlers", "processing", "deploy", "build"} or "/" not in path, path
    assert "build/models/models.config" not in context, "that file names the build machine's paths"


def test_the_pinned_runtime_satisfies_the_package() -> None:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    required = [Requirement(line) for line in setup["options"]["install_requires"].split("\n") if line.strip()]
    runtime = pins(IMAGE_REQUIREMENTS / "tier-requirements.txt")
    for requirement in required:
        name = requirement.name.lower().replace("_", "-")
        assert name in runtime, f"{name} is missing from the image's requirements"
        (pinned,) = runtime[name].specifier
        assert pinned.operator == "==" and requirement.specifier.contains(pinned.version), runtime[name]
    assert "tensorflow" not in runtime, "only TensorFlow's generated protos belong in the tier's image"


def test_the_protos_come_from_the_tensorflow_release_of_the_serving_api() -> None:
    (serving,) = pins(IMAGE_REQUIREMENTS / "tier-requirements.txt")["tensorflow-serving-api"].specifier
    (tensorflow,) = pins(IMAGE_REQUIREMENTS / "proto-requirements.txt")["tensorflow"].specifier
    assert tensorflow.version.split(".")[:2] == serving.version.split(".")[:2]
