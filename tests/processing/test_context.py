"""The request context's stage times: each moment of the request counted once, for the earliest stage running."""

from __future__ import annotations

import pytest

from processing.context import RequestContext


def _context(*intervals: tuple[str, float, float]) -> RequestContext:
    context = RequestContext("test")
    for item, (stage, start, end) in enumerate(intervals):
        context.record(stage, start, end, item)
    return context


def test_overlapping_downloads_count_once_and_decoding_only_while_none_runs() -> None:
    context = _context(
        ("download", 0.0, 3.0),
        ("download", 1.0, 4.0),
        ("download", 6.0, 7.0),
        ("decode", 2.0, 6.5),  # 4..6 alone: 2 s; the rest is under a download
        ("predict", 8.0, 9.0),
        ("postprocess", 8.5, 10.0),  # 9..10 alone
    )
    assert context.stage_seconds() == pytest.approx(
        {"download": 5.0, "decode": 2.0, "predict": 1.0, "postprocess": 1.0}
    )


def test_stages_listed_in_order_an_empty_one_too_and_unknown_ones_left_out() -> None:
    context = _context(("predict", 2.0, 3.0), ("download", 0.0, 1.0), ("decode", 1.5, 1.5), ("other", 0.0, 9.0))
    seconds = context.stage_seconds()
    assert list(seconds) == ["download", "decode", "predict"]
    assert seconds == pytest.approx({"download": 1.0, "decode": 0.0, "predict": 1.0})


def test_a_later_stage_starting_inside_an_earlier_one_resumes_when_that_ends() -> None:
    # postprocess from 0 to 10; a download from 2 to 4 takes those moments; postprocess has the other 8.
    context = _context(("postprocess", 0.0, 10.0), ("download", 2.0, 4.0), ("download", 4.0, 5.0))
    assert context.stage_seconds() == pytest.approx({"download": 3.0, "postprocess": 7.0})
