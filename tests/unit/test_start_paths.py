"""Start paths: measured apart, and the path the next new pods get planned for."""

from __future__ import annotations

import pytest

from egpu.engines.autoscaling.model import (
    Decision,
    Demand,
    Floors,
    Mode,
    Reason,
    ReasonCode,
    ScalerMemory,
)
from egpu.engines.inference.start_paths import (
    CACHED,
    COLD,
    SAMPLES_PER_PATH,
    WARM,
    decide_on_path,
    measured_paths,
    p90,
    path_of,
    plan_start,
    recorded,
)

pytestmark = pytest.mark.unit


def test_the_binders_mark_names_the_path_and_no_mark_is_cold() -> None:
    assert path_of("Cached") == CACHED
    assert path_of("Cold") == COLD
    assert path_of(None) == COLD
    assert path_of("cached") == COLD  # only the binder's own word counts


def test_each_path_keeps_its_recent_measurements() -> None:
    times: dict = {}
    for i in range(SAMPLES_PER_PATH + 4):
        times = recorded(times, COLD, float(i))
    times = recorded(times, CACHED, 3.0)
    assert len(times[COLD]) == SAMPLES_PER_PATH
    assert times[COLD][0] == 4.0  # the oldest went
    assert times[CACHED] == (3.0,)
    assert p90([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]) == 10.0
    assert p90([]) is None
    assert measured_paths({WARM: (0.2,), COLD: (40.0, 42.0)}) == [
        (WARM, 0.2, 1),
        (COLD, 42.0, 2),
    ]


def test_without_artefacts_there_is_one_path() -> None:
    plan = plan_start({COLD: (30.0,)}, names_artefacts=False, cached_room=50, new_pods=3)
    assert (plan.path, plan.time_to_ready_s, plan.cached_room) == (COLD, 30.0, None)


def test_the_cached_path_while_its_nodes_have_room_for_all_new_pods() -> None:
    times = {CACHED: (9.0, 10.0), COLD: (40.0,)}
    assert plan_start(times, True, cached_room=4, new_pods=4).path == CACHED
    assert plan_start(times, True, cached_room=4, new_pods=4).time_to_ready_s == 10.0
    short = plan_start(times, True, cached_room=3, new_pods=4)
    assert (short.path, short.time_to_ready_s) == (COLD, 40.0)
    none = plan_start(times, True, cached_room=0, new_pods=1)
    assert none.path == COLD
    unknown = plan_start(times, True, cached_room=None, new_pods=1)
    assert unknown.path == COLD


def test_a_path_not_measured_yet_borrows_the_others_time() -> None:
    assert plan_start({COLD: (40.0,)}, True, 10, 1).time_to_ready_s == 40.0
    assert plan_start({CACHED: (9.0,)}, True, 0, 1).time_to_ready_s == 9.0
    assert plan_start({}, True, 10, 1).time_to_ready_s is None
    assert "not measured yet" in plan_start({}, True, 10, 1).describe()


def _decision(replicas: int) -> Decision:
    return Decision(
        serving_replicas=replicas,
        warm_replicas=0,
        mode=Mode.STABLE,
        reason=Reason(ReasonCode.SCALE_UP, "up"),
        promotions=0,
        demotions=0,
        capacity_limited=False,
        capped_at_max=False,
        recommended_replicas=replicas,
        demand=Demand(0.0, 0.0, 0.0, 0.0),
        floors=Floors(1, 0, 0),
        memory=ScalerMemory(),
    )


def test_a_scale_up_beyond_the_cached_room_is_planned_with_the_cold_time() -> None:
    asked: list[float | None] = []

    def decide_with(time_to_ready_s: float | None) -> Decision:
        asked.append(time_to_ready_s)
        # a longer lead asks for more headroom, as the engine's projection does
        return _decision(2 + int((time_to_ready_s or 0.0) / 5))

    times = {CACHED: (10.0,), COLD: (40.0,)}
    plan, decision = decide_on_path(decide_with, times, True, cached_room=8, live_pods=2)
    assert plan.path == CACHED and asked == [10.0]  # 2 new pods fit the cached room
    assert decision.serving_replicas == 4

    asked.clear()
    plan, decision = decide_on_path(decide_with, times, True, cached_room=1, live_pods=2)
    assert plan.path == COLD and asked == [10.0, 40.0]  # the second new pod starts cold
    assert decision.serving_replicas == 10
    assert "room for 1" in plan.describe() and "Cold" in plan.describe()
