"""The pipeline's call and its result, in typed values every protocol shares (v1 JSON, v2 tensors, the page).

A ``Prediction`` holds each image's answer (typed by its model's output kind, ``processing/kinds``) or its
error, in input order, and the version that answered. Each protocol renders it (``processing/v1.py``,
``processing/oip.py``); none reads another's output. Stage times are on the request's context.
"""

from __future__ import annotations

from dataclasses import dataclass

from processing.errors import InvalidRequest, ItemError
from processing.kinds.base import ItemAnswer, OutputKind
from processing.sources import NO_DETECTION_PARAMS, DetectionParams, ImageSource


@dataclass(frozen=True)
class PredictCall:
    """One predict request, whichever protocol it came in by."""

    model: str
    sources: tuple[ImageSource, ...]
    version: int | None = None  # the path's version or label, if any; else the model's routes or default choose
    label: str | None = None
    top_k: int | None = None  # classes per image; None: the model's configured top_k
    detection: DetectionParams = NO_DETECTION_PARAMS  # a detection model's settings the request overrides


def check_request_params(call: PredictCall, kind: OutputKind) -> None:
    """Refuse a parameter the model's output kind does not take (``score_threshold`` for a classifier): a setting
    the answer would silently ignore is an error."""
    foreign = sorted(call.detection.given() - kind.request_params)
    if foreign:
        names = " and ".join(f"'{name}'" for name in foreign)
        raise InvalidRequest(f"{names} applies only to detection models; model '{call.model}' is a {kind.name} model")


@dataclass(frozen=True)
class ItemResult:
    source: str  # what the answer echoes: the URL, or the upload's name
    answer: ItemAnswer | ItemError


@dataclass(frozen=True)
class Prediction:
    model: str
    version: int | None  # None when no image reached the backend
    items: tuple[ItemResult, ...]

    def failures(self) -> list[tuple[int, str, ItemError]]:
        """The items that failed: their positions, sources and errors."""
        return [
            (i, item.source, item.answer) for i, item in enumerate(self.items) if isinstance(item.answer, ItemError)
        ]

    def answers(self) -> list[ItemAnswer]:
        """Every item's answer; only for a prediction none of whose items failed."""
        answers = [item.answer for item in self.items if not isinstance(item.answer, ItemError)]
        if len(answers) != len(self.items):
            raise ValueError("some items failed; they have no answer")
        return answers
