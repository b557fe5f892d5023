"""Fencing decisions and the circuit breaker."""

from __future__ import annotations

import pytest

from egpu.engines.repair.fencing import BreakerPolicy, BreakerState, NodeHealth, plan_fences

pytestmark = pytest.mark.unit
POLICY = BreakerPolicy(window_s=300, max_fraction=0.5, min_nodes=1, reset_after_s=600)
NOW = 10_000.0


def nodes(count: int, bad: dict[str, set[int]] | None = None, **extra: object) -> list[NodeHealth]:
    bad = bad or {}
    return [
        NodeHealth(f"n{i}", 8, frozenset(bad.get(f"n{i}", set())), **extra)  # type: ignore[arg-type]
        for i in range(count)
    ]


def test_reported_unhealthy_gpus_are_fenced() -> None:
    plan = plan_fences(nodes(8, {"n3": {2, 5}}), BreakerState(), POLICY, NOW)
    assert [(c.node, set(c.added), set(c.removed)) for c in plan.changes] == [("n3", {2, 5}, set())]
    assert plan.fenced == {"n3": {2, 5}} and plan.refused == {}
    assert plan.breaker.fenced_at == (("n3", NOW),)


def test_healthy_again_is_unfenced_and_others_marks_are_left_alone() -> None:
    node = NodeHealth(
        "n0", 8, frozenset({1}), fenced_by_us=frozenset({1, 4}), marked_by_others=frozenset({6})
    )
    plan = plan_fences([node], BreakerState(), POLICY, NOW)
    (change,) = plan.changes
    assert change.fenced == {1} and change.removed == {4} and change.added == set()


def test_gpus_others_marked_are_not_ours_to_fence_or_unfence() -> None:
    node = NodeHealth("n0", 8, frozenset({6}), marked_by_others=frozenset({6}))
    assert plan_fences([node], BreakerState(), POLICY, NOW).changes == ()


def test_without_a_report_fences_stay_and_nothing_new_is_fenced() -> None:
    node = NodeHealth("n0", 8, None, fenced_by_us=frozenset({3}))
    plan = plan_fences([node], BreakerState(), POLICY, NOW)
    assert plan.changes == () and plan.fenced == {"n0": {3}}


def test_indices_beyond_the_node_are_ignored() -> None:
    node = NodeHealth("n0", 4, frozenset({2, 9}))
    assert plan_fences([node], BreakerState(), POLICY, NOW).fenced == {"n0": {2}}


def test_the_breaker_stops_fencing_more_than_half_the_nodes() -> None:
    bad = {f"n{i}": {0} for i in range(8)}
    plan = plan_fences(nodes(10, bad), BreakerState(), POLICY, NOW)
    assert sorted(plan.fenced) == ["n0", "n1", "n2", "n3", "n4"]  # 5 of 10 nodes
    assert sorted(plan.refused) == ["n5", "n6", "n7"]
    assert plan.tripped_now and plan.breaker.tripped_at == NOW


def test_an_open_breaker_refuses_new_nodes_but_keeps_and_extends_existing_fences() -> None:
    state = BreakerState((("n0", NOW - 10),), tripped_at=NOW - 10)
    more = [
        NodeHealth("n0", 8, frozenset({0, 1}), fenced_by_us=frozenset({0})),
        NodeHealth("n1", 8, frozenset({0})),
        *nodes(6)[2:],
    ]
    plan = plan_fences(more, state, POLICY, NOW)
    assert plan.fenced == {"n0": {0, 1}}  # a node fenced already may get more GPUs fenced
    assert plan.refused == {"n1": {0}} and not plan.tripped_now


def test_the_breaker_closes_after_its_reset_time_and_the_window_forgets() -> None:
    state = BreakerState((("n0", NOW - 700),), tripped_at=NOW - 600)
    plan = plan_fences(nodes(4, {"n1": {0}}), state, POLICY, NOW)
    assert plan.fenced == {"n1": {0}} and plan.breaker.tripped_at is None
    assert plan.breaker.fenced_at == (("n1", NOW),)


def test_fences_spread_over_time_never_trip_the_breaker() -> None:
    state, fenced = BreakerState(), {}
    for k in range(6):  # one more node every 301 s
        bad = {f"n{i}": {0} for i in range(k + 1)}
        cluster = [
            NodeHealth(
                f"n{i}",
                8,
                frozenset(bad.get(f"n{i}", set())),
                fenced_by_us=fenced.get(f"n{i}", frozenset()),
            )
            for i in range(8)
        ]
        plan = plan_fences(cluster, state, POLICY, NOW + 301 * k)
        state, fenced = plan.breaker, dict(plan.fenced)
        assert plan.refused == {}
    assert len(fenced) == 6


def test_a_small_cluster_may_always_fence_min_nodes() -> None:
    policy = BreakerPolicy(min_nodes=2)
    plan = plan_fences(nodes(2, {"n0": {1}, "n1": {1}}), BreakerState(), policy, NOW)
    assert sorted(plan.fenced) == ["n0", "n1"]


def test_cordoned_nodes_do_not_count_against_the_breaker() -> None:
    cordoned = nodes(6, {f"n{i}": {0} for i in range(6)}, cordoned=True)
    plan = plan_fences(cordoned + nodes(2), BreakerState(), POLICY, NOW)
    assert len(plan.fenced) == 6 and plan.refused == {} and plan.breaker.fenced_at == ()


def test_bad_breaker_policies_are_refused() -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(max_fraction=0)
    with pytest.raises(ValueError):
        BreakerPolicy(window_s=0)


def test_an_at_risk_gpu_is_fenced_only_to_move_work_off_and_stays_fenced_while_at_risk() -> None:
    risky = NodeHealth("n0", 8, frozenset(), at_risk=frozenset({3}))
    assert plan_fences([risky], BreakerState(), POLICY, NOW).fenced == {}
    moving = NodeHealth("n0", 8, frozenset(), at_risk=frozenset({3}), move_off=frozenset({3}))
    assert plan_fences([moving], BreakerState(), POLICY, NOW).fenced == {"n0": {3}}
    kept = NodeHealth("n0", 8, frozenset(), fenced_by_us=frozenset({3}), at_risk=frozenset({3}))
    assert plan_fences([kept], BreakerState(), POLICY, NOW).fenced == {"n0": {3}}
    calm = NodeHealth("n0", 8, frozenset(), fenced_by_us=frozenset({3}))
    assert plan_fences([calm], BreakerState(), POLICY, NOW).fenced == {}


def test_a_lost_node_counts_against_the_breaker_and_needs_no_fence() -> None:
    lost = [NodeHealth(f"n{i}", 8, None, lost=i < 2) for i in range(8)]
    plan = plan_fences(lost, BreakerState(), POLICY, NOW)
    assert plan.lost == {"n0", "n1"} and plan.changes == ()
    assert {n for n, _ in plan.breaker.fenced_at} == {"n0", "n1"}
    # still lost in the next pass: counted once, still let through
    again = plan_fences(lost, plan.breaker, POLICY, NOW + 1)
    assert again.lost == {"n0", "n1"} and len(again.breaker.fenced_at) == 2


def test_a_mass_node_loss_opens_the_breaker_and_repairs_at_most_the_limit() -> None:
    lost = [NodeHealth(f"n{i}", 8, None, lost=i < 6) for i in range(8)]
    plan = plan_fences(lost, BreakerState(), POLICY, NOW)
    assert len(plan.lost) == 4 and plan.tripped_now  # half of 8 nodes
    assert set(plan.refused) == {"n4", "n5"} and plan.refused["n4"] == frozenset(range(8))
    assert plan.breaker.open(POLICY, NOW)


def test_a_lost_node_cordoned_already_does_not_count() -> None:
    lost = [NodeHealth(f"n{i}", 8, None, lost=True, cordoned=True) for i in range(8)]
    plan = plan_fences(lost, BreakerState(), POLICY, NOW)
    assert len(plan.lost) == 8 and plan.breaker.fenced_at == () and not plan.refused
