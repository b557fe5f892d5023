"""Tidal memory: the profile learns a cycle, predicts the next, forgets, and is not
trusted when the observation departs from it; and the whole loop on a two-day tide."""

from __future__ import annotations

import dataclasses
import math

import pytest

from egpu.engines.autoscaling import ScalingPolicy, decide
from egpu.engines.autoscaling.model import (
    Burst,
    MetricSample,
    MetricWindow,
    ReasonCode,
    ScalerMemory,
    ScalerState,
)
from egpu.engines.autoscaling.simulate import ServiceModel, SimConfig, run
from egpu.engines.autoscaling.tide import (
    TidePolicy,
    TideProfile,
    empty_profile,
    expected_between,
    observe,
    read_tide,
)
from egpu.sim.bounds import oracle_replica_seconds
from egpu.sim.traces import tidal_day
from policies import slo_policy

pytestmark = pytest.mark.unit

TIDE = TidePolicy(period_s=100.0, buckets=10, learning_rate=0.5, tolerance=0.25)
MODEL = ServiceModel(service_time_s=1.0, slots_per_replica=4, cold_start_s=10.0, warm_start_s=0.0)


def learned(levels: list[float], cycles: int, tide: TidePolicy = TIDE) -> TideProfile:
    """`cycles` cycles of one demand level per bucket, observed every second."""
    profile = empty_profile(tide)
    for t in range(int(cycles * tide.period_s)):
        profile = observe(profile, tide, float(t), levels[tide.bucket_of(t)])
    return profile


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="period_s"):
        TidePolicy(period_s=0.0)
    with pytest.raises(ValueError, match="learning_rate"):
        TidePolicy(period_s=60.0, learning_rate=0.0)
    with pytest.raises(ValueError, match="buckets"):
        TidePolicy(period_s=60.0, buckets=0)


def test_nothing_is_expected_before_a_whole_cycle_was_seen() -> None:
    profile = learned([float(i) for i in range(10)], cycles=0)
    for t in range(50):
        profile = observe(profile, TIDE, float(t), 5.0)
    # The current cycle teaches only the cycles after it.
    assert expected_between(profile, TIDE, 10.0, 20.0) is None


def test_a_cycle_teaches_the_next_its_peak_per_bucket() -> None:
    profile = learned([float(i) for i in range(10)], cycles=1)
    assert expected_between(profile, TIDE, 100.0, 100.0) == (0.0, 0.0)
    assert expected_between(profile, TIDE, 130.0, 155.0) == (3.0, 5.0)
    # A span that runs into the next cycle reads that cycle's early buckets.
    assert expected_between(profile, TIDE, 195.0, 205.0) == (0.0, 9.0)


def test_the_peak_of_a_bucket_not_its_mean_is_learned() -> None:
    profile = empty_profile(TIDE)
    for t, demand in ((0.0, 1.0), (3.0, 7.0), (6.0, 2.0)):
        profile = observe(profile, TIDE, t, demand)
    profile = observe(profile, TIDE, 100.0, 0.0)  # the next cycle
    assert expected_between(profile, TIDE, 101.0, 101.0) == (7.0, 7.0)


def test_newer_cycles_weigh_more_and_an_old_tide_fades() -> None:
    profile = learned([8.0] * 10, cycles=1)
    # Cycles at 0 since: 8 -> 4 -> 2 -> 1: each halves the old level's weight.
    for cycle in range(1, 4):
        for t in range(100):
            profile = observe(profile, TIDE, cycle * 100.0 + t, 0.0)
        next_cycle = (cycle + 1) * 100.0
        assert expected_between(profile, TIDE, next_cycle, next_cycle) == (
            pytest.approx(8.0 / 2**cycle),
            pytest.approx(8.0 / 2**cycle),
        )


def test_a_bucket_unseen_for_longer_than_remembered_is_forgotten() -> None:
    tide = dataclasses.replace(TIDE, forget_after_cycles=2)
    profile = learned([5.0] * 10, cycles=1, tide=tide)
    assert expected_between(profile, tide, 250.0, 250.0) == (5.0, 5.0)
    assert expected_between(profile, tide, 350.0, 350.0) is None
    # Seen again after that: the stale level is not folded in.
    profile = observe(profile, tide, 450.0, 1.0)
    profile = observe(profile, tide, 500.0, 0.0)
    assert expected_between(profile, tide, 550.0, 550.0) == (1.0, 1.0)


def test_bad_or_late_observations_change_nothing() -> None:
    profile = learned([2.0] * 10, cycles=2)
    assert observe(profile, TIDE, 205.0, math.nan) == profile
    later = observe(profile, TIDE, 205.0, 3.0)
    assert observe(later, TIDE, 105.0, 50.0) == later  # a cycle already left


def test_the_reading_looks_ahead_and_judges_the_observation() -> None:
    levels = [2.0, 2.0, 2.0, 10.0, 40.0, 40.0, 10.0, 2.0, 2.0, 2.0]
    profile = learned(levels, cycles=1)
    reading = read_tide(profile, TIDE, 125.0, 12.0, 2.1, 6.0, slack=4.0)
    assert reading is not None and reading.agrees
    assert reading.ahead == 10.0  # the rise is ahead: 125 + 12 reaches the next bucket
    # A spike far above what the profile holds now: a surprise, not the tide.
    spiked = read_tide(profile, TIDE, 125.0, 12.0, 30.0, 6.0, slack=4.0)
    assert spiked is not None and not spiked.agrees
    # A calm far below the learned peak: the tide did not come, do not trust it.
    calm = read_tide(profile, TIDE, 145.0, 12.0, 3.0, 6.0, slack=4.0)
    assert calm is not None and not calm.agrees
    assert "departs" in calm.describe()


def test_the_first_moments_of_a_cycle_are_judged_on_that_cycle_alone() -> None:
    profile = learned([2.0] * 9 + [40.0], cycles=1)
    # At 102 s the last 6 s reach back into the first cycle, whose end taught nothing.
    reading = read_tide(profile, TIDE, 102.0, 10.0, 2.0, 6.0, slack=4.0)
    assert reading is not None and reading.agrees and reading.low == 2.0


# --- the decision --------------------------------------------------------------------


def tide_policy(**overrides: object) -> ScalingPolicy:
    return slo_policy(**{"tide": TIDE, **overrides})


def steady(rate: float, now: float, ready: int) -> MetricWindow:
    samples = [MetricSample(now - 29 + i, 0.0, ready, rate, 0.0) for i in range(30)]
    return MetricWindow(tuple(samples), MODEL.stats())


def test_the_service_scales_ahead_of_a_learned_rise() -> None:
    levels = [2.0, 2.0, 2.0, 40.0, 40.0, 40.0, 2.0, 2.0, 2.0, 2.0]
    profile = learned(levels, cycles=1)
    now = 125.0  # the rise comes at 130; a replica asked for now is ready at 135
    state = ScalerState(2, 2, 1)
    d = decide(tide_policy(), steady(2.0, now, 2), state, now, tide=profile)
    assert d.reason.code is ReasonCode.TIDE
    assert d.serving_replicas >= 11  # 40 req/s, p99 under 2 s
    assert "ahead of the learned rise" in d.reason.message
    # Without the profile the same window is a calm night.
    calm = decide(tide_policy(), steady(2.0, now, 2), state, now)
    assert calm.serving_replicas <= 2


def test_the_ebb_releases_without_the_stabilisation_window() -> None:
    levels = [2.0, 2.0, 2.0, 40.0, 40.0, 40.0, 2.0, 2.0, 2.0, 2.0]
    profile = learned(levels, cycles=1)
    for t in range(100, 165):  # today's peak, as learned
        profile = observe(profile, TIDE, float(t), levels[TIDE.bucket_of(t)])
    now = 165.0
    memory = ScalerMemory(recommendations=())
    window = MetricWindow(
        tuple(MetricSample(now - 5 + i, 0.0, 12, 2.0, 0.0) for i in range(6)), MODEL.stats()
    )
    d = decide(tide_policy(), window, ScalerState(12, 12, 1, memory), now, tide=profile)
    assert d.reason.code is ReasonCode.TIDE
    assert d.serving_replicas == 6  # halved: the scale-down rate, no 60 s hold
    assert "releasing with the ebb" in d.reason.message


def test_a_surprise_hands_back_to_the_reactive_rules() -> None:
    profile = learned([2.0] * 10, cycles=1)
    now = 150.0
    window = steady(20.0, now, 2)  # ten times what the profile holds
    d = decide(tide_policy(), window, ScalerState(2, 2, 1), now, tide=profile)
    assert d.reason.code is not ReasonCode.TIDE
    reactive = decide(tide_policy(tide=None), window, ScalerState(2, 2, 1), now)
    assert d.serving_replicas == reactive.serving_replicas


def test_a_crowd_the_tide_expects_teaches_no_warm_pool() -> None:
    levels = [2.0, 2.0, 2.0, 40.0, 40.0, 40.0, 2.0, 2.0, 2.0, 2.0]
    profile = learned(levels, cycles=1)
    burst = Burst(started_at=30.0, peak_replicas=13, last_seen_at=55.0)  # yesterday's rise
    memory = ScalerMemory(bursts=(burst,))
    now = 110.0
    policy = tide_policy(warm_pool_max=40, burst_memory_s=120.0)
    d = decide(policy, steady(2.0, now, 2), ScalerState(2, 2, 1, memory), now, tide=profile)
    assert d.warm_replicas == 1 and d.learned_warm == 0
    assert "expected by the tide profile" in d.reason.message
    # An unexpected one (at night, where the profile holds 2 req/s) still does.
    night = Burst(started_at=85.0, peak_replicas=13, last_seen_at=90.0)
    memory = ScalerMemory(bursts=(night,))
    d = decide(policy, steady(2.0, now, 2), ScalerState(2, 2, 1, memory), now, tide=profile)
    assert d.learned_warm > 0


# --- the whole loop: a two-day tide, judged on day two --------------------------------


def day_two(policy: ScalingPolicy) -> tuple[float, float]:
    """(SLO %, pods held / the oracle's) on day two of a 600 s tidal day."""
    trace = tidal_day(night=2, peak=48, day_s=600.0, days=2)
    tick = 0.25
    loads = [trace.mean_rate(i * tick, (i + 1) * tick) for i in range(int(1200 / tick))]
    result = run(policy, loads, MODEL, SimConfig(tick_s=tick, decision_interval_s=0.5))
    second = [t for t in result.ticks if t.time >= 600.0]
    offered = sum(t.offered_rps for t in second)
    met = sum(t.offered_rps for t in second if t.latency_s <= 2.0)
    held = sum((t.serving + t.warm) * tick for t in second)
    return 100.0 * met / offered, held / oracle_replica_seconds(trace, MODEL, 600.0, 1200.0)


def test_day_two_of_a_tide_costs_less_with_a_memory_and_keeps_the_slo() -> None:
    tide = TidePolicy(period_s=600.0)
    policy = tide_policy(tide=tide, warm_pool_max=40, burst_memory_s=120.0)
    slo, ratio = day_two(policy)
    reactive_slo, reactive_ratio = day_two(dataclasses.replace(policy, tide=None))
    assert slo >= 99.0
    assert ratio < 0.8 * reactive_ratio, (ratio, reactive_ratio)
    assert reactive_slo >= 99.0
