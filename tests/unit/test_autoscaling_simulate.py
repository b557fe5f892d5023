"""The fluid simulation, and whole-loop behaviour: a flash crowd, a warm pool, a full cluster."""

from __future__ import annotations

import dataclasses
import math

import pytest

from egpu.engines.autoscaling import MetricKind, ScalingPolicy
from egpu.engines.autoscaling.simulate import (
    ServiceModel,
    SimConfig,
    SimState,
    apply_decision,
    first_tick_with_capacity,
    run,
    step,
    step_load,
)

pytestmark = pytest.mark.unit

MODEL = ServiceModel(service_time_s=1.0, slots_per_replica=10, cold_start_s=30.0, warm_start_s=2.0)
CONFIG = SimConfig(tick_s=1.0, decision_interval_s=2.0)
FLASH_AT = 120  # ticks of 1 s
BASE, PEAK = 10.0, 200.0  # x20 within one tick


def flash_policy(metric: MetricKind, **overrides: object) -> ScalingPolicy:
    base: dict[str, object] = {
        "metric": metric,
        "target": 7.0,  # concurrency per replica (70 % of 10 slots) / fallback req/s
        "latency_target_s": 1.5,
        "max_replicas": 100,
        "time_to_ready_s": MODEL.cold_start_s,
    }
    base.update(overrides)
    return ScalingPolicy(**base)  # type: ignore[arg-type]


def test_step_queues_what_ready_replicas_cannot_serve() -> None:
    sim = SimState(time=0.0, serving=(0.0, 0.0))  # 2 ready x 10 req/s
    after, tick = step(sim, 30.0, 1.0, MODEL)
    assert (tick.served_rps, tick.queue, tick.ready) == (20.0, 10.0, 2)
    assert tick.latency_s == pytest.approx(1.0 + 10.0 / 20.0)
    assert tick.in_flight == pytest.approx(20.0 + 10.0)
    assert after.time == 1.0
    drained, tick2 = step(after, 0.0, 1.0, MODEL)
    assert (tick2.served_rps, drained.queue) == (10.0, 0.0)


def test_nothing_ready_means_unbounded_latency() -> None:
    _, tick = step(SimState(time=0.0, serving=(30.0,)), 5.0, 1.0, MODEL)
    assert (tick.ready, tick.latency_s) == (0, math.inf)


@pytest.mark.parametrize("metric", [MetricKind.CONCURRENCY, MetricKind.LATENCY_SLO])
def test_flash_crowd_gets_capacity_within_panic_window_plus_time_to_ready(
    metric: MetricKind,
) -> None:
    policy = flash_policy(metric)
    result = run(policy, step_load(BASE, PEAK, FLASH_AT, 300), MODEL, CONFIG, initial_serving=2)
    reached = first_tick_with_capacity(result.ticks, PEAK, MODEL, after=float(FLASH_AT))
    assert reached is not None
    # One decision interval and one tick of sampling granularity on top of the bound.
    bound = policy.panic_window_s + MODEL.cold_start_s + CONFIG.decision_interval_s + 1.0
    assert reached - FLASH_AT <= bound
    assert any(d.mode.value == "panic" for _, d in result.decisions)
    assert result.ticks[-1].queue == pytest.approx(0.0, abs=1e-6)


def test_without_panic_the_same_flash_crowd_misses_that_bound() -> None:
    """An HPA-style setup (no burst mode, 2x per step, 15 s cooldown) is slower: the bound
    above is a property of the panic rule, not of the simulation."""
    policy = flash_policy(
        MetricKind.CONCURRENCY,
        panic_threshold=1000.0,
        scale_up_max_rate=2.0,
        scale_up_cooldown_s=15.0,
    )
    result = run(policy, step_load(BASE, PEAK, FLASH_AT, 300), MODEL, CONFIG, initial_serving=2)
    reached = first_tick_with_capacity(result.ticks, PEAK, MODEL, after=float(FLASH_AT))
    bound = policy.panic_window_s + MODEL.cold_start_s + CONFIG.decision_interval_s + 1.0
    assert reached is None or reached - FLASH_AT > bound


def test_a_warm_pool_absorbs_the_flash_crowd_in_seconds() -> None:
    policy = flash_policy(MetricKind.LATENCY_SLO, warm_pool_size=25)
    result = run(policy, step_load(BASE, PEAK, FLASH_AT, 200), MODEL, CONFIG, initial_serving=2)
    reached = first_tick_with_capacity(result.ticks, PEAK, MODEL, after=float(FLASH_AT))
    assert reached is not None
    assert reached - FLASH_AT <= policy.panic_window_s + MODEL.warm_start_s + 3.0
    assert sum(d.promotions for _, d in result.decisions) >= 18
    # The pool is refilled afterwards, within maxReplicas.
    assert result.ticks[-1].warm == 25


def test_a_full_cluster_caps_serving_and_reports_it() -> None:
    policy = flash_policy(MetricKind.LATENCY_SLO)
    config = SimConfig(tick_s=1.0, decision_interval_s=2.0, max_pods=10)
    result = run(policy, step_load(BASE, PEAK, FLASH_AT, 200), MODEL, config, initial_serving=2)
    assert max(t.serving for t in result.ticks) == 10
    limited = [d for _, d in result.decisions if d.capacity_limited]
    assert limited and "cluster can place only" in limited[-1].reason.message


def test_apply_decision_promotes_warm_first_and_cold_starts_the_rest() -> None:
    policy = flash_policy(MetricKind.CONCURRENCY, warm_pool_size=2)
    result = run(policy, [0.0], MODEL, CONFIG, initial_serving=1)
    _, decision = result.decisions[-1]
    sim = SimState(time=100.0, serving=(0.0,), warm=(50.0, 60.0))
    wanted = dataclasses.replace(decision, serving_replicas=4, warm_replicas=2, promotions=2)
    after = apply_decision(sim, wanted, MODEL)
    assert after.serving == (0.0, 102.0, 102.0, 130.0)  # two warm (2 s), one cold (30 s)
    assert after.warm == (130.0, 130.0)  # refilled with cold pods


def test_replica_seconds_and_slo_attainment() -> None:
    policy = flash_policy(MetricKind.LATENCY_SLO)
    result = run(policy, [10.0] * 100, MODEL, CONFIG, initial_serving=2)
    assert result.slo_attainment(1.5) == 1.0
    assert result.replica_seconds(1.0) == pytest.approx(200.0)


def test_new_pods_start_cached_while_the_cached_nodes_have_room_then_cold() -> None:
    policy = flash_policy(MetricKind.CONCURRENCY)
    result = run(policy, [0.0], MODEL, CONFIG, initial_serving=1)
    _, decision = result.decisions[-1]
    model = dataclasses.replace(MODEL, cached_start_s=5.0)
    heard: list[tuple[bool, float]] = []
    sim = SimState(time=100.0, serving=(0.0,))
    wanted = dataclasses.replace(decision, serving_replicas=4, warm_replicas=1, promotions=0)
    after = apply_decision(sim, wanted, model, 3, lambda c, s: heard.append((c, s)))
    assert after.serving == (0.0, 105.0, 105.0, 130.0)  # room for 3 pods: 2 more start Cached
    assert after.warm == (130.0,)
    assert heard == [(True, 5.0), (True, 5.0), (False, 30.0), (False, 30.0)]


def test_a_crowd_the_cached_nodes_can_hold_gets_capacity_a_cached_start_later() -> None:
    policy = flash_policy(MetricKind.LATENCY_SLO)
    cached = dataclasses.replace(MODEL, cached_start_s=5.0)
    load = step_load(BASE, PEAK, FLASH_AT, 300)
    roomy = run(policy, load, cached, dataclasses.replace(CONFIG, cached_pods=60))
    cramped = run(policy, load, cached, dataclasses.replace(CONFIG, cached_pods=2))
    fast = first_tick_with_capacity(roomy.ticks, PEAK, cached, after=float(FLASH_AT))
    slow = first_tick_with_capacity(cramped.ticks, PEAK, cached, after=float(FLASH_AT))
    assert fast is not None and slow is not None
    bound = policy.panic_window_s + CONFIG.decision_interval_s + 1.0
    assert fast - FLASH_AT <= bound + 5.0  # the cached path's start, not the cold one's
    assert slow - FLASH_AT > bound + 5.0  # the pods beyond the cached room start cold
