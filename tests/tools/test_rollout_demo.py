"""``python -m tools.rollout_demo`` end to end, on fewer digits: the outcomes its phases are there to show."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tools.rollout_demo import MIN_SAMPLES, WINDOW, Demo, main


@pytest.mark.slow
def test_the_demo_shows_a_better_canary_promoted_and_a_broken_one_rolled_back(tmp_path: Path) -> None:
    out = io.StringIO()
    demo = Demo(tmp_path, 150)
    with demo.running():
        one, two, three, four, five, after = demo.run(out)
        canary = {r["name"]: r for r in demo.routes()}["canary"]

    assert set(one.versions()) == {1} and not one.failures()
    assert set(two.versions()) == {1, 2} and not two.failures()
    assert 0.02 <= two.versions()[2] / len(two.outcomes) <= 0.2  # the 10 % canary, sticky per user
    assert two.error_rate(1) >= 0.15 and two.error_rate(2) <= two.error_rate(1) / 3  # v2 is the better model
    assert set(three.versions()) == {2} and not three.failures()  # promoted: everyone on v2
    assert three.error_rate(2) < 0.1

    assert set(four.versions()) == {2} and not four.failures()  # v3 not on the backend: the canary waits
    assert four.note == "canary waiting, weight 0"

    assert (canary["state"], canary["weight"], canary["version"]) == ("rolled_back", 0, 3)
    failures = five.failures()
    assert MIN_SAMPLES <= len(failures) <= WINDOW  # only the canary's own, until two checks in a row judged it
    assert all(o.status == 200 and o.error == "item model_output_invalid" for o in failures)
    assert set(five.versions()) == {2}
    assert set(after.versions()) == {2} and not after.failures()
    assert "== 5b. after the rollback" in out.getvalue()


def test_the_command_line_refuses_an_unknown_flag() -> None:
    with pytest.raises(SystemExit):
        main(["--no-such-flag"])
