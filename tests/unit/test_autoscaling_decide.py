"""`decide` end to end, one rule at a time."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence

import pytest

from egpu.engines.autoscaling import (
    DailyLoadHistory,
    Decision,
    MetricKind,
    MetricSample,
    MetricWindow,
    Mode,
    ReasonCode,
    Recommendation,
    ScalerMemory,
    ScalerState,
    ScalingPolicy,
    ScheduleEntry,
    ServiceStats,
    decide,
)

pytestmark = pytest.mark.unit

# Monday 2 March 2026, 12:00 UTC.
NOON = datetime.datetime(2026, 3, 2, 12, 0, tzinfo=datetime.UTC).timestamp()


def policy(**overrides: object) -> ScalingPolicy:
    base: dict[str, object] = {
        "metric": MetricKind.CONCURRENCY,
        "target": 10.0,
        "max_replicas": 50,
        "time_to_ready_s": 30.0,
    }
    base.update(overrides)
    return ScalingPolicy(**base)  # type: ignore[arg-type]


def window(
    values: Sequence[float],
    now: float = NOON,
    *,
    arrival_rate: float | None = None,
    queued: float | None = None,
) -> MetricWindow:
    """One sample per second, the last one at `now`."""
    start = now - len(values) + 1
    return MetricWindow(
        tuple(MetricSample(start + i, v, 1, arrival_rate, queued) for i, v in enumerate(values))
    )


def flat(
    value: float, *, arrival_rate: float | None = None, queued: float | None = None
) -> MetricWindow:
    return window([value] * 60, arrival_rate=arrival_rate, queued=queued)


def state(current: int, ready: int | None = None, warm: int = 0, **memory: object) -> ScalerState:
    return ScalerState(
        current,
        current if ready is None else ready,
        warm,
        ScalerMemory(**memory),  # type: ignore[arg-type]
    )


def run(
    pol: ScalingPolicy, win: MetricWindow, st: ScalerState, now: float = NOON, **kw: object
) -> Decision:
    return decide(pol, win, st, now, **kw)  # type: ignore[arg-type]


# --- stable sizing -------------------------------------------------------------------


def test_steady_load_sizes_to_the_target() -> None:
    d = run(policy(), flat(95.0), state(6))
    assert (d.serving_replicas, d.mode, d.reason.code) == (10, Mode.STABLE, ReasonCode.SCALE_UP)
    assert "concurrency 95 over 60s needs 10 replicas" in d.reason.message
    assert d.memory.last_scale_up_at == NOON
    held = run(policy(), flat(100.0), state(10))
    assert (held.serving_replicas, held.reason.code) == (10, ReasonCode.HOLD)


def test_no_metrics_holds_and_never_shrinks() -> None:
    d = run(policy(min_replicas=0), MetricWindow(), state(3, last_demand_at=NOON - 3600))
    assert (d.serving_replicas, d.reason.code) == (3, ReasonCode.NO_METRICS)


# --- panic ---------------------------------------------------------------------------


def test_panic_entry_sizes_on_the_panic_window() -> None:
    burst = window([20.0] * 54 + [60.0] * 6)  # panic window: 60 -> 6 replicas vs 2 ready
    d = run(policy(), burst, state(2))
    assert (d.mode, d.serving_replicas, d.reason.code) == (Mode.PANIC, 6, ReasonCode.PANIC)
    assert d.reason.message.startswith("panic: observed concurrency 60 is 3.0x the capacity")
    assert (d.memory.panic_since, d.memory.panic_last_triggered_at) == (NOON, NOON)


def test_below_the_threshold_is_no_panic() -> None:
    burst = window([20.0] * 54 + [35.0] * 6)  # 3.5 replicas vs 2 ready: 1.75x < 2x
    d = run(policy(), burst, state(2))
    assert d.mode is Mode.STABLE and d.memory.panic_since is None


def test_panic_bypasses_cooldown_but_not_the_rate_limit() -> None:
    burst = window([20.0] * 54 + [100.0] * 6)
    cooling = state(2, last_scale_up_at=NOON - 1)
    d = run(policy(scale_up_cooldown_s=600.0, scale_up_max_rate=2.0), burst, cooling)
    assert (d.mode, d.serving_replicas) == (Mode.PANIC, 4)
    assert "rate-limited from 10" in d.reason.message


def test_panic_never_scales_down_while_it_lasts() -> None:
    calm = flat(30.0)  # 3 replicas' worth, 8 running
    d = run(policy(), calm, state(8, panic_since=NOON - 100, panic_last_triggered_at=NOON - 30))
    assert (d.mode, d.serving_replicas, d.reason.code) == (Mode.PANIC, 8, ReasonCode.PANIC)
    assert "no scale-down until 60s below 2x" in d.reason.message
    assert d.memory.panic_since == NOON - 100


def test_panic_exits_after_a_stable_window_then_stabilisation_holds() -> None:
    history = (Recommendation(NOON - 30, 8),)
    after = state(
        8,
        panic_since=NOON - 100,
        panic_last_triggered_at=NOON - 60,
        recommendations=history,
    )
    d = run(policy(), flat(30.0), after)
    assert d.mode is Mode.STABLE
    assert (d.memory.panic_since, d.memory.panic_last_triggered_at) == (None, None)
    assert (d.serving_replicas, d.reason.code) == (8, ReasonCode.STABILIZING)


# --- tolerance, rates, cooldown, stabilisation ---------------------------------------


def test_tolerance_band_holds_small_deviations() -> None:
    # 10.5 replicas wanted with 10 running: up is within 10 %. 8.5 wanted: down within 20 %.
    for value, tolerance in ((105.0, 0.1), (85.0, 0.2)):
        d = run(policy(tolerance=tolerance), flat(value), state(10))
        assert (d.serving_replicas, d.reason.code) == (10, ReasonCode.TOLERANCE)
        assert d.memory.recommendations[-1] == Recommendation(NOON, 10)
    below = run(policy(tolerance=0.1, scale_down_max_rate=100.0), flat(85.0), state(10))
    assert (below.serving_replicas, below.reason.code) == (9, ReasonCode.SCALE_DOWN)
    outside = run(policy(), flat(115.0), state(10))
    assert (outside.serving_replicas, outside.reason.code) == (12, ReasonCode.SCALE_UP)
    strict = run(policy(tolerance=0.0), flat(105.0), state(10))
    assert strict.serving_replicas == 11


def test_scale_up_rate_limit() -> None:
    pol = policy(scale_up_max_rate=2.0, panic_threshold=100.0)
    d = run(pol, flat(100.0), state(2))
    assert (d.serving_replicas, d.reason.code) == (4, ReasonCode.RATE_LIMITED)
    assert d.recommended_replicas == 4
    # The rate applies to ready replicas: with 3 of 6 ready, 3 x 2 = 6 is the most.
    starting = run(pol, flat(100.0), state(6, ready=3))
    assert (starting.serving_replicas, starting.reason.code) == (6, ReasonCode.RATE_LIMITED)
    more_ready = run(pol, flat(100.0), state(6, ready=4))
    assert more_ready.serving_replicas == 8


def test_scale_up_cooldown() -> None:
    pol = policy(scale_up_cooldown_s=60.0)
    blocked = run(pol, flat(30.0), state(2, last_scale_up_at=NOON - 10))
    assert (blocked.serving_replicas, blocked.reason.code) == (2, ReasonCode.COOLDOWN)
    free = run(pol, flat(30.0), state(2, last_scale_up_at=NOON - 60))
    assert (free.serving_replicas, free.reason.code) == (3, ReasonCode.SCALE_UP)


def test_scale_down_waits_for_the_stabilisation_window() -> None:
    pol = policy(scale_down_max_rate=100.0)
    held = run(pol, flat(20.0), state(6, recommendations=(Recommendation(NOON - 200, 6),)))
    assert (held.serving_replicas, held.reason.code) == (6, ReasonCode.STABILIZING)
    partly = run(pol, flat(20.0), state(6, recommendations=(Recommendation(NOON - 100, 4),)))
    assert (partly.serving_replicas, partly.reason.code) == (4, ReasonCode.STABILIZING)
    expired = run(pol, flat(20.0), state(6, recommendations=(Recommendation(NOON - 300, 6),)))
    assert (expired.serving_replicas, expired.reason.code) == (2, ReasonCode.SCALE_DOWN)
    assert expired.memory.last_scale_down_at == NOON


def test_scale_down_rate_limit() -> None:
    d = run(policy(scale_down_max_rate=2.0), flat(20.0), state(10))
    assert (d.serving_replicas, d.reason.code) == (5, ReasonCode.RATE_LIMITED)


def test_stabilisation_across_a_sequence_of_decisions() -> None:
    """Load drops from 80 to 20 at t=0: the count stays at 8 for the 300 s window."""
    pol = policy(scale_down_max_rate=100.0, scale_down_stabilization_s=300.0)
    st = state(8)
    t = NOON
    st = dataclasses.replace(st, memory=run(pol, flat(80.0), st, now=t).memory)
    served = []
    for step in range(1, 40):
        now = t + 10 * step
        d = run(pol, window([20.0] * 60, now=now), st, now=now)
        served.append((now - t, d.serving_replicas))
        st = dataclasses.replace(st, current_replicas=d.serving_replicas, memory=d.memory)
    assert all(n == 8 for dt, n in served if dt < 300)
    assert all(n == 2 for dt, n in served if dt >= 300)


# --- LatencySLO ----------------------------------------------------------------------


def slo_window(arrival: float, service: ServiceStats | None, queued: float = 0.0) -> MetricWindow:
    base = flat(0.0, arrival_rate=arrival, queued=queued)
    return dataclasses.replace(base, service=service)


def test_latency_slo_uses_the_erlang_c_count() -> None:
    # lambda 8, service 0.5 s, p95 <= 1 s: 6 replicas by hand (see test_autoscaling_queueing).
    pol = policy(metric=MetricKind.LATENCY_SLO, target=2.0, latency_target_s=1.0)
    d = run(pol, slo_window(8.0, ServiceStats(service_time_s=0.5)), state(4))
    assert (d.serving_replicas, d.mode) == (6, Mode.STABLE)
    # Without a service-time measurement: the plain ratio 8 / 2.
    fallback = run(pol, slo_window(8.0, None), state(4))
    assert fallback.serving_replicas == 4


def test_latency_slo_sizes_for_draining_the_backlog() -> None:
    pol = policy(metric=MetricKind.LATENCY_SLO, target=2.0, latency_target_s=1.0)
    # 240 queued, drained over time-to-ready (30 s): +8 req/s on top of the 8 arriving.
    d = run(pol, slo_window(8.0, ServiceStats(service_time_s=0.5), queued=240.0), state(8))
    steady = run(pol, slo_window(16.0, ServiceStats(service_time_s=0.5)), state(8))
    assert d.serving_replicas == steady.serving_replicas > 6


# --- headroom ------------------------------------------------------------------------


def test_growing_load_is_sized_for_when_new_replicas_are_ready() -> None:
    ramp = window([100.0 + 2.0 * i for i in range(60)])  # +2/s, average 159, now 218
    d = run(policy(), ramp, state(16))
    # 159 + 2/s x (30 s to ready + 30 s half window) = 279 -> 28 replicas, not 16.
    assert d.mode is Mode.STABLE
    assert d.serving_replicas == 28
    assert d.demand.growth_per_s == pytest.approx(2.0)
    assert "growing 2/s" in d.reason.message
    falling = run(policy(), window([218.0 - 2.0 * i for i in range(60)]), state(16))
    assert falling.demand.projected == pytest.approx(falling.demand.stable)


# --- floors --------------------------------------------------------------------------


def test_schedule_floor_across_midnight() -> None:
    pol = policy(schedule=(ScheduleEntry.from_hhmm("22:00", "02:00", 7),))
    one_am = NOON + 13 * 3600  # Tuesday 01:00
    d = run(pol, window([10.0] * 60, now=one_am), state(1), now=one_am)
    assert (d.serving_replicas, d.reason.code, d.floors.schedule) == (
        7,
        ReasonCode.SCHEDULE_FLOOR,
        7,
    )
    three_am = one_am + 2 * 3600
    later = run(pol, window([10.0] * 60, now=three_am), state(1), now=three_am)
    assert (later.floors.schedule, later.serving_replicas) == (0, 1)


def test_forecast_raises_the_floor_time_to_ready_before_the_peak() -> None:
    per_day = 288  # 5-minute buckets
    row = tuple(300.0 if i == 240 else 10.0 for i in range(per_day))  # 20:00 peak of 300
    history = DailyLoadHistory(300, (row, row, row))
    pol = policy(time_to_ready_s=300.0)
    ahead = NOON + 7 * 3600 + 56 * 60  # 19:56: the peak is within time-to-ready
    d = run(pol, window([10.0] * 60, now=ahead), state(1), now=ahead, history=history)
    assert (d.serving_replicas, d.reason.code, d.floors.forecast) == (
        30,
        ReasonCode.FORECAST_FLOOR,
        30,
    )
    early = ahead - 6 * 60  # 19:50: the peak is still too far away
    quiet = run(pol, window([10.0] * 60, now=early), state(1), now=early, history=history)
    assert (quiet.floors.forecast, quiet.serving_replicas) == (1, 1)


def test_min_replicas_floor() -> None:
    d = run(policy(min_replicas=3), flat(0.0), state(3))
    assert (d.serving_replicas, d.reason.code) == (3, ReasonCode.MIN_REPLICAS)


# --- scale to zero and wake ----------------------------------------------------------


def test_scale_to_zero_only_after_the_idle_period() -> None:
    pol = policy(min_replicas=0, scale_to_zero_idle_s=300.0)
    waiting = run(pol, flat(0.0), state(1, last_demand_at=NOON - 100))
    assert (waiting.serving_replicas, waiting.reason.code) == (1, ReasonCode.IDLE_WAIT)
    assert "zero in 200s" in waiting.reason.message
    idle = run(pol, flat(0.0), state(2, last_demand_at=NOON - 300))
    assert (idle.serving_replicas, idle.reason.code) == (0, ReasonCode.SCALE_TO_ZERO)
    stays = run(pol, flat(0.0), state(0, last_demand_at=NOON - 900))
    assert (stays.serving_replicas, stays.reason.code) == (0, ReasonCode.HOLD)


def test_a_fresh_start_starts_the_idle_clock() -> None:
    pol = policy(min_replicas=0, scale_to_zero_idle_s=300.0)
    d = run(pol, flat(0.0), state(1))
    assert (d.serving_replicas, d.memory.last_demand_at) == (1, NOON)


def test_floors_prevent_scale_to_zero() -> None:
    never = run(policy(min_replicas=1), flat(0.0), state(2, last_demand_at=NOON - 9999))
    assert never.serving_replicas == 1
    scheduled = policy(min_replicas=0, schedule=(ScheduleEntry.from_hhmm("11:00", "13:00", 2),))
    kept = run(scheduled, flat(0.0), state(2, last_demand_at=NOON - 9999))
    assert kept.serving_replicas == 2


def test_wake_from_zero_on_the_first_queued_request_despite_cooldown() -> None:
    pol = policy(min_replicas=0, scale_up_cooldown_s=600.0)
    samples = [0.0] * 59 + [0.0]
    win = window(samples)
    poked = dataclasses.replace(
        win, samples=(*win.samples[:-1], MetricSample(NOON, 0.0, 0, queued=1.0))
    )
    d = run(pol, poked, state(0, last_scale_up_at=NOON - 1, last_demand_at=NOON - 900))
    assert (d.serving_replicas, d.reason.code) == (1, ReasonCode.WAKE)
    assert d.memory.last_demand_at == NOON


def test_wake_on_arrivals_for_a_metric_that_reads_zero_without_replicas() -> None:
    pol = policy(metric=MetricKind.GPU_UTILIZATION, target=0.7, min_replicas=0)
    d = run(pol, flat(0.0, arrival_rate=0.5), state(0))
    assert (d.serving_replicas, d.reason.code) == (1, ReasonCode.WAKE)


def test_a_burst_from_zero_goes_straight_to_the_panic_size() -> None:
    d = run(policy(min_replicas=0), window([0.0] * 55 + [100.0] * 5), state(0))
    # The panic window's mean is 500/6 (8.3 replicas); the newest sample says 100.
    assert (d.mode, d.serving_replicas) == (Mode.PANIC, 10)


def test_a_step_enters_panic_on_its_first_sample_even_when_read_often() -> None:
    # Read every 0.5 s, a 6 s window holds 12 samples: its mean after one sample of a
    # x20 step is under 2x; each small scale-up would then keep it there.
    start = NOON - 29.5
    samples = tuple(MetricSample(start + i * 0.5, 60.0 if i == 59 else 3.0, 1) for i in range(60))
    # The mean, 7.75, is 1.55x the 5 ready replicas: below the threshold on its own.
    d = run(policy(target=1.0, max_replicas=100), MetricWindow(samples), state(5))
    assert (d.mode, d.serving_replicas) == (Mode.PANIC, 60)


def test_panic_sizes_a_step_on_its_newest_sample_not_the_lagging_mean() -> None:
    # One sample after a x20 step the panic window's mean has seen a sixth of it.
    step = window([3.0] * 59 + [60.0])
    d = run(policy(target=1.0, max_replicas=100), step, state(3))
    assert (d.mode, d.serving_replicas) == (Mode.PANIC, 60)
    assert d.reason.message.startswith("panic: observed concurrency 60 is 20.0x the capacity")
    assert "(the newest sample; the 6s panic window's mean is 12.5)" in d.reason.message
    # Falling inside panic: the mean is higher, so it sizes (and holds) on that.
    falling = window([3.0] * 54 + [60.0] * 5 + [10.0])
    held = run(policy(target=1.0, max_replicas=100), falling, state(60, ready=3))
    assert held.serving_replicas == 60 and "newest" not in held.reason.message


# --- warm pool -----------------------------------------------------------------------


def test_scale_up_promotes_the_warm_pool_then_refills_it() -> None:
    d = run(policy(warm_pool_size=2), flat(60.0), state(4, warm=2))
    assert (d.serving_replicas, d.promotions, d.warm_replicas) == (6, 2, 2)
    assert "promoting 2 warm replicas" in d.reason.message


def test_warm_pool_stays_placed_at_zero() -> None:
    pol = policy(min_replicas=0, warm_pool_size=2)
    d = run(pol, flat(0.0), state(1, warm=2, last_demand_at=NOON - 3600))
    assert (d.serving_replicas, d.warm_replicas, d.demotions) == (0, 2, 0)


def test_scale_down_demotes_into_a_short_pool() -> None:
    d = run(policy(warm_pool_size=2), flat(20.0), state(4, warm=0))
    assert (d.serving_replicas, d.demotions, d.warm_replicas) == (2, 2, 2)


# --- caps ----------------------------------------------------------------------------


def test_never_above_max_replicas() -> None:
    d = run(policy(max_replicas=8), flat(200.0), state(8))
    assert (d.serving_replicas, d.capped_at_max, d.recommended_replicas) == (8, True, 20)
    assert "capped at maxReplicas 8 (wanted 20)" in d.reason.message
    pooled = run(policy(max_replicas=8, warm_pool_size=3), flat(70.0), state(7, warm=3))
    assert (pooled.serving_replicas, pooled.warm_replicas) == (7, 1)
    assert not pooled.capped_at_max


def test_capacity_limited_when_the_cluster_cannot_place_more() -> None:
    d = run(policy(), flat(100.0), state(6), free_pod_slots=2)
    assert (d.serving_replicas, d.recommended_replicas, d.capacity_limited) == (8, 10, True)
    assert "cluster can place only 2 more pods: serving 8 of 10 wanted" in d.reason.message
    assert d.memory.last_scale_up_at == NOON
    none_free = run(policy(), flat(100.0), state(6), free_pod_slots=0)
    assert (none_free.serving_replicas, none_free.capacity_limited) == (6, True)
    assert none_free.memory.last_scale_up_at is None
    unknown = run(policy(), flat(100.0), state(6), free_pod_slots=None)
    assert (unknown.serving_replicas, unknown.capacity_limited) == (10, False)


def test_warm_promotions_need_no_capacity() -> None:
    d = run(policy(warm_pool_size=2), flat(80.0), state(6, warm=2), free_pod_slots=0)
    assert (d.serving_replicas, d.promotions, d.warm_replicas, d.capacity_limited) == (
        8,
        2,
        0,
        True,
    )
    assert "warm pool short by 2" in d.reason.message


def test_at_zero_only_fresh_demand_wakes() -> None:
    # Demand 20-60 s ago is still in the stable window (3 replicas' worth), but nothing
    # in the panic window: demand that has gone is no reason to start a replica.
    pol = policy(min_replicas=0, scale_to_zero_idle_s=300.0)
    old_only = window([30.0] * 40 + [0.0] * 20)
    d = run(pol, old_only, state(0, last_demand_at=NOON - 20))
    assert (d.serving_replicas, d.reason.code) == (0, ReasonCode.HOLD)
