"""Node loss and hang detection: the pure judgements."""

from __future__ import annotations

import pytest

from egpu.engines.repair.liveness import (
    Progress,
    Readiness,
    clocks_to_record,
    hung_members,
    lost_nodes,
    stalled_for,
    track_progress,
)

pytestmark = pytest.mark.unit
NOW = 10_000.0


def test_a_node_not_ready_past_its_grace_is_lost_whatever_says_so() -> None:
    nodes = {
        "ready": Readiness("True", NOW - 999),
        "false-long": Readiness("False", NOW - 31),
        "unknown-long": Readiness("Unknown", NOW - 30),
        "false-short": Readiness("False", NOW - 29),
        "registering": Readiness(None, None),
    }
    assert lost_nodes(nodes, {}, NOW, 30) == {"false-long", "unknown-long"}


def test_without_a_transition_time_the_clock_starts_when_first_seen() -> None:
    nodes = {"n0": Readiness("Unknown", None)}
    assert lost_nodes(nodes, {}, NOW, 30) == frozenset()  # first seen now
    assert lost_nodes(nodes, {"n0": NOW - 10}, NOW, 30) == frozenset()
    assert lost_nodes(nodes, {"n0": NOW - 40}, NOW, 30) == {"n0"}


def test_progress_clocks_restart_on_a_new_value_and_forget_stopped_members() -> None:
    seen = {
        "a": Progress("step-1", NOW - 50),
        "b": Progress("step-7", NOW - 50),
        "gone": Progress(None, 1),
    }
    after = track_progress(seen, {"a": "step-1", "b": "step-8", "new": None}, NOW)
    assert after == {
        "a": Progress("step-1", NOW - 50),  # unchanged: its clock runs on
        "b": Progress("step-8", NOW),  # progress: the clock restarts
        "new": Progress(None, NOW),  # first seen: watched from now
    }


def test_a_member_without_progress_for_its_timeout_is_hung() -> None:
    clocks = {
        "a": Progress("s1", NOW - 60),
        "b": Progress("s9", NOW - 59),
        "c": Progress(None, NOW - 61),
    }
    assert hung_members(clocks, 60, NOW) == {"a", "c"}
    assert hung_members(clocks, 120, NOW) == frozenset()
    assert stalled_for(clocks, ["a", "b", "x"], NOW) == 60


def test_a_recorded_clock_is_carried_on_only_while_its_value_holds() -> None:
    recorded = {"a": Progress("7", 100.0), "b": Progress("7", 100.0), "c": Progress("7", 500.0)}
    clocks = track_progress({}, {"a": "7", "b": "8", "c": "7"}, 200.0, recorded)
    assert clocks["a"] == Progress("7", 100.0)  # same value: the old leader's clock
    assert clocks["b"] == Progress("8", 200.0)  # moved on since: a fresh clock
    assert clocks["c"] == Progress("7", 200.0)  # never later than now
    # what this leader saw wins over a record
    seen = {"a": Progress("7", 150.0)}
    assert track_progress(seen, {"a": "7"}, 200.0, recorded)["a"].since == 150


def test_only_clocks_still_for_half_the_timeout_and_not_recorded_yet_are_written() -> None:
    clocks = {"a": Progress("1", 0.0), "b": Progress("1", 80.0), "c": Progress("1", 0.0)}
    out = clocks_to_record(clocks, {"c": Progress("1", 0.0)}, timeout_s=60.0, now=100.0)
    assert out == {"a": Progress("1", 0.0)}
