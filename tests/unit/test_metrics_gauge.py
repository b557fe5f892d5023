"""hack/image/metrics_gauge.py: the value its schedule gives at each moment."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack" / "image"))
import metrics_gauge

pytestmark = pytest.mark.unit


def test_the_value_is_the_latest_step_begun() -> None:
    steps = metrics_gauge.parse_schedule("0:1,15:5,30:0.5")
    assert steps == [(0, 1), (15, 5), (30, 0.5)]
    assert [metrics_gauge.value_at(steps, t) for t in (0, 14.9, 15, 29, 30, 1e6)] == [
        1, 1, 5, 5, 0.5, 0.5,
    ]  # fmt: skip


@pytest.mark.parametrize("bad", ["5:1", "0:1,20:2,10:3", ""])
def test_a_schedule_must_start_at_zero_and_go_forward(bad: str) -> None:
    with pytest.raises(SystemExit, match="--schedule"):
        metrics_gauge.parse_schedule(bad)
