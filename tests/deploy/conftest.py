"""Fixtures of the deployment checks: the rendered manifests of each kustomization."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import KUSTOMIZATIONS, Doc, render


@pytest.fixture(scope="session", params=KUSTOMIZATIONS)
def kustomization(request: pytest.FixtureRequest) -> str:
    path: str = request.param
    return path


@pytest.fixture(scope="session")
def rendered(kustomization: str) -> list[Doc]:
    """``kubectl kustomize`` of each kustomization, parsed."""
    return render(kustomization)
