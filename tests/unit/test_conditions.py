from __future__ import annotations

import pytest

from egpu.domain.conditions import same_status, set_condition

pytestmark = pytest.mark.unit


def test_transition_time_moves_only_with_the_status() -> None:
    first = set_condition([], "Ready", False, "Pending", "waiting", 1, "t1")
    again = set_condition(first, "Ready", False, "StillPending", "still waiting", 2, "t2")
    assert again[0]["lastTransitionTime"] == "t1"
    assert again[0]["reason"] == "StillPending" and again[0]["observedGeneration"] == 2
    flipped = set_condition(again, "Ready", True, "AllReady", "", 2, "t3")
    assert flipped[0]["lastTransitionTime"] == "t3" and flipped[0]["status"] == "True"


def test_other_conditions_keep_their_place() -> None:
    conds = set_condition([], "A", True, "R", "", None, "t")
    conds = set_condition(conds, "B", True, "R", "", None, "t")
    conds = set_condition(conds, "A", False, "R", "", None, "t2")
    assert [c["type"] for c in conds] == ["A", "B"]


def test_same_status_ignores_timestamps_only() -> None:
    a = {"phase": "Running", "conditions": set_condition([], "A", True, "R", "m", 1, "t1")}
    b = {"phase": "Running", "conditions": set_condition([], "A", True, "R", "m", 1, "t2")}
    assert same_status(a, b)
    c = {"phase": "Pending", "conditions": b["conditions"]}
    assert not same_status(a, c)
