"""The results file, retries' waits and plain progress lines, without a tier."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest

from app.bulk.output import OutputError, done_sources, open_output
from app.bulk.progress import PlainProgress
from app.bulk.run import Tally, summary
from app.bulk.transport import RetryPolicy, parse_retry_after


def test_resuming_cuts_an_unfinished_last_line_and_reads_the_sources(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps({"source": "a.jpg", "classes": []}) + "\n" + '{"source": "b.jp')
    assert done_sources(results) == {"a.jpg"}
    assert results.read_text().endswith("}\n")


def test_a_file_that_is_not_a_results_file_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "notes.jsonl"
    other.write_text("hello\n")
    with pytest.raises(OutputError, match="line 1 is not a result line"):
        open_output(other, resume=True)
    with pytest.raises(OutputError, match="exists: pass --resume"):
        open_output(other, resume=False)


def test_retry_after_is_honoured_and_backoff_is_capped_with_jitter() -> None:
    policy = RetryPolicy(retries=10, base_s=0.5, cap_s=30.0)
    assert policy.delay(5, retry_after=1.0, rand=lambda: 0.0) == 1.0
    assert policy.delay(5, retry_after=1.0, rand=lambda: 0.999) < 1.5
    assert [policy.delay(n, None, rand=lambda: 0.0) for n in range(4)] == [0.25, 0.5, 1.0, 2.0]
    assert [policy.delay(n, None, rand=lambda: 1.0) for n in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert policy.delay(20, None, rand=lambda: 1.0) == 30.0


def test_retry_after_is_read_as_seconds_or_a_date() -> None:
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412475.0) == 5.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_plain_progress_prints_a_line_at_most_every_interval() -> None:
    now = [0.0]
    stream = io.StringIO()
    progress = PlainProgress(stream, total=10, every_s=5.0, clock=lambda: now[0])
    for step in range(10):
        now[0] = step * 1.0 + 1.0
        progress.advance(1, 1 if step == 3 else 0)
    assert stream.getvalue().splitlines() == [
        "imagegate classify: 5/10 (50%), 1 failed, 1.0 images/s, ETA 5 s",
        "imagegate classify: 10/10 (100%), 1 failed, 1.0 images/s, ETA 0 s",
    ]


def test_the_summary_counts_failures_by_code_and_retries_by_reason() -> None:
    tally = Tally(classified=9, failed=Counter({"source_http_error": 1}))
    text = summary(tally, 2.0, Counter({"overloaded": 3}))
    assert text == (
        "9 classified, 1 failed (source_http_error: 1) in 2.0 s, 5.0 images/s; 3 requests retried (overloaded: 3)"
    )
