"""The tier as a real subprocess, for tests that need one: ``tools.tier`` starts it (the rollout demo and the
bench start theirs there too), with the repository's paths the tests share."""

from __future__ import annotations

from tools.process import ROOT
from tools.tier import DEV_CONFIG, TierProcess, start_tier

__all__ = ["DEV_CONFIG", "ROOT", "TierProcess", "start_tier"]
