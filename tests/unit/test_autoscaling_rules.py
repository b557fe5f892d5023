"""Each autoscaling rule on its own: windows, panic, damping, schedule, forecast, pool, capacity."""

from __future__ import annotations

import datetime

import pytest

from egpu.engines.autoscaling import limits, panic, zero
from egpu.engines.autoscaling.capacity import cap_to_capacity
from egpu.engines.autoscaling.forecast import (
    build_daily_history,
    forecast_demand,
    lookahead_buckets,
)
from egpu.engines.autoscaling.model import (
    DailyLoadHistory,
    ForecastPolicy,
    MetricKind,
    MetricSample,
    Recommendation,
    ScheduleEntry,
)
from egpu.engines.autoscaling.schedule import entry_active, schedule_floor
from egpu.engines.autoscaling.warm_pool import plan_pool
from egpu.engines.autoscaling.windows import (
    demand_of,
    growth_rate,
    has_demand,
    last_demand_time,
    window_average,
)

pytestmark = pytest.mark.unit

UTC = datetime.UTC


def at(day: int, hh: int, mm: int = 0, tz: datetime.tzinfo = UTC) -> float:
    """Epoch seconds on March `day` 2026 (March 2, 2026 is a Monday)."""
    return datetime.datetime(2026, 3, day, hh, mm, tzinfo=tz).timestamp()


def value_of(sample: MetricSample) -> float:
    return sample.value


# --- windows -------------------------------------------------------------------------


def test_window_average_keeps_only_the_window() -> None:
    samples = [MetricSample(float(t), float(t), 1) for t in range(1, 11)]
    # (now - 4, now] with now = 10 holds t = 7..10.
    assert window_average(samples, value_of, 10.0, 4.0) == pytest.approx(8.5)
    assert window_average(samples, value_of, 100.0, 4.0) is None
    assert window_average(samples, value_of, 10.0, 60.0) == pytest.approx(5.5)


def test_growth_rate_is_the_fitted_slope() -> None:
    ramp = [MetricSample(float(t), 3.0 * t + 7.0, 1) for t in range(0, 30)]
    assert growth_rate(ramp, value_of, 29.0, 60.0) == pytest.approx(3.0)
    flat = [MetricSample(float(t), 5.0, 1) for t in range(0, 30)]
    assert growth_rate(flat, value_of, 29.0, 60.0) == pytest.approx(0.0)
    assert growth_rate(flat[:1], value_of, 29.0, 60.0) == 0.0


def test_latency_slo_demand_is_arrivals_plus_backlog_drain() -> None:
    sample = MetricSample(0.0, 999.0, 2, arrival_rate=10.0, queued=60.0)
    assert demand_of(sample, MetricKind.LATENCY_SLO, 30.0) == pytest.approx(12.0)
    assert demand_of(sample, MetricKind.CONCURRENCY, 30.0) == 999.0
    no_rate = MetricSample(0.0, 1.0, 1)
    assert demand_of(no_rate, MetricKind.LATENCY_SLO, 30.0) is None


def test_demand_signals() -> None:
    assert not has_demand(MetricSample(0.0, 0.0, 0, arrival_rate=0.0, queued=0.0))
    assert has_demand(MetricSample(0.0, 0.0, 0, queued=1.0))
    assert has_demand(MetricSample(0.0, 0.0, 0, arrival_rate=0.2))
    assert has_demand(MetricSample(0.0, 1.0, 0))
    samples = [MetricSample(1.0, 2.0, 1), MetricSample(5.0, 0.0, 1), MetricSample(9.0, 3.0, 1)]
    assert last_demand_time(samples, 8.0) == 1.0  # the sample at 9 is in the future
    assert last_demand_time(samples, 9.0) == 9.0


# --- panic ---------------------------------------------------------------------------


def test_panic_ratio_counts_zero_ready_as_one() -> None:
    assert panic.panic_ratio(10.0, 4) == pytest.approx(2.5)
    assert panic.panic_ratio(3.0, 0) == pytest.approx(3.0)


def test_panic_enters_on_trigger_and_keeps_its_start() -> None:
    entered = panic.next_panic_status(True, 100.0, None, None, 60.0)
    assert (entered.active, entered.since, entered.last_triggered_at) == (True, 100.0, 100.0)
    again = panic.next_panic_status(True, 130.0, 100.0, 100.0, 60.0)
    assert (again.since, again.last_triggered_at) == (100.0, 130.0)


def test_panic_exits_only_after_a_calm_stable_window() -> None:
    still = panic.next_panic_status(False, 159.0, 90.0, 100.0, 60.0)
    assert still.active and still.since == 90.0
    done = panic.next_panic_status(False, 160.0, 90.0, 100.0, 60.0)
    assert (done.active, done.since, done.last_triggered_at) == (False, None, None)
    never = panic.next_panic_status(False, 160.0, None, None, 60.0)
    assert not never.active


def test_panic_never_scales_down() -> None:
    assert panic.panic_replicas(3, 8) == 8
    assert panic.panic_replicas(12, 8) == 12


# --- damping -------------------------------------------------------------------------


def test_tolerance_band() -> None:
    assert limits.within_tolerance(10.9, 10, 0.1)
    assert limits.within_tolerance(9.0, 10, 0.1)
    assert not limits.within_tolerance(11.2, 10, 0.1)
    assert not limits.within_tolerance(8.8, 10, 0.1)
    assert not limits.within_tolerance(0.5, 0, 0.1)  # from zero there is no band


def test_rate_limits() -> None:
    assert limits.scale_up_limit(4, 4, 2.0) == 8
    assert limits.scale_up_limit(0, 0, 2.0) == 2  # from zero as from one
    assert limits.scale_up_limit(3, 3, 1.5) == 5
    assert limits.scale_up_limit(9, 2, 2.0) == 9  # relative to ready, never below current
    assert limits.scale_down_limit(10, 2.0) == 5
    assert limits.scale_down_limit(5, 2.0) == 2


def test_cooldown() -> None:
    assert limits.in_cooldown(100.0, 129.0, 30.0)
    assert not limits.in_cooldown(100.0, 130.0, 30.0)
    assert not limits.in_cooldown(None, 130.0, 30.0)


def test_stabilisation_takes_the_highest_recommendation_in_the_window() -> None:
    history: tuple[Recommendation, ...] = ()
    for t, replicas in ((0.0, 9), (100.0, 4), (200.0, 6), (250.0, 3)):
        history = limits.remember(history, replicas, t, 300.0)
    assert limits.stabilized(history, 250.0, 300.0) == 9
    # Once the 9 from t=0 is older than the window, 6 is the highest left.
    history = limits.remember(history, 2, 300.0, 300.0)
    assert limits.stabilized(history, 300.0, 300.0) == 6
    assert limits.stabilized((), 300.0, 300.0) is None


def test_remembered_history_stays_short() -> None:
    history: tuple[Recommendation, ...] = ()
    for t in range(1000):
        history = limits.remember(history, 5, float(t), 300.0)
    assert len(history) == 1  # equal or lower older entries can never be the maximum again
    history = limits.remember(history, 1, 1000.0, 300.0)
    assert [r.replicas for r in history] == [5, 1]


# --- schedule ------------------------------------------------------------------------


def test_schedule_range_within_a_day() -> None:
    entry = ScheduleEntry.from_hhmm("09:00", "17:30", 5)
    assert entry_active(entry, 0, 9 * 3600)
    assert entry_active(entry, 0, 17 * 3600 + 29 * 60)
    assert not entry_active(entry, 0, 17 * 3600 + 30 * 60)  # end is exclusive
    assert not entry_active(entry, 0, 8 * 3600 + 59 * 60)


def test_schedule_wraps_past_midnight_and_belongs_to_its_start_day() -> None:
    friday_night = ScheduleEntry.from_hhmm("22:00", "02:00", 8, weekdays=frozenset({4}))
    assert entry_active(friday_night, 4, 23 * 3600)  # Friday 23:00
    assert entry_active(friday_night, 5, 1 * 3600)  # Saturday 01:00: Friday's range
    assert not entry_active(friday_night, 5, 2 * 3600)  # Saturday 02:00: over
    assert not entry_active(friday_night, 4, 1 * 3600)  # Friday 01:00: Thursday's, not set
    assert not entry_active(friday_night, 5, 23 * 3600)  # Saturday night: not set


def test_schedule_floor_uses_the_policy_timezone_and_the_highest_entry() -> None:
    entries = (
        ScheduleEntry.from_hhmm("19:00", "23:00", 20),
        ScheduleEntry.from_hhmm("22:00", "01:00", 12),
    )
    shanghai = "Asia/Shanghai"  # UTC+8, no daylight saving
    # 14:30 UTC is 22:30 in Shanghai: both ranges are on; the higher floor wins.
    assert schedule_floor(entries, at(2, 14, 30), shanghai) == 20
    # 16:30 UTC is 00:30 the next day in Shanghai: only the wrapped range is on.
    assert schedule_floor(entries, at(2, 16, 30), shanghai) == 12
    assert schedule_floor(entries, at(2, 16, 30), "UTC") == 0
    assert schedule_floor((), at(2, 16, 30), "UTC") == 0


def test_whole_day_entry() -> None:
    entry = ScheduleEntry.from_hhmm("06:00", "06:00", 3)
    assert entry_active(entry, 0, 5 * 3600)
    assert entry_active(entry, 0, 6 * 3600)


def test_schedule_entry_rejects_bad_times() -> None:
    with pytest.raises(ValueError, match="out of range"):
        ScheduleEntry.from_hhmm("24:00", "01:00", 1)
    with pytest.raises(ValueError, match="HH:MM"):
        ScheduleEntry.from_hhmm("noon", "01:00", 1)
    with pytest.raises(ValueError, match="weekdays"):
        ScheduleEntry(0, 10, 1, weekdays=frozenset({7}))


# --- forecast ------------------------------------------------------------------------


def flat_days(
    bucket_s: int, days: int, peak_bucket: int, peak: float, base: float = 10.0
) -> DailyLoadHistory:
    per_day = 86_400 // bucket_s
    row = tuple(peak if i == peak_bucket else base for i in range(per_day))
    return DailyLoadHistory(bucket_s, (row,) * days)


def test_lookahead_buckets_wrap_past_midnight() -> None:
    assert lookahead_buckets(600, 0.0, 300) == [2]
    assert lookahead_buckets(600, 299.0, 300) == [2]
    assert lookahead_buckets(600, 300.0, 300) == [2, 3]
    assert lookahead_buckets(86_100, 600.0, 300) == [287, 0, 1]
    assert len(lookahead_buckets(0, 10 * 86_400, 300)) == 288


def test_forecast_sees_the_peak_time_to_ready_ahead() -> None:
    # Previous days peaked at 200 in the 20:00-20:05 bucket (index 240).
    history = flat_days(300, 3, 240, 200.0)
    policy = ForecastPolicy()
    assert forecast_demand(history, at(5, 19, 50), 300.0, "UTC", policy) == 10.0
    assert forecast_demand(history, at(5, 19, 56), 300.0, "UTC", policy) == 200.0
    assert forecast_demand(history, at(5, 20, 4), 300.0, "UTC", policy) == 200.0
    assert forecast_demand(history, at(5, 20, 6), 300.0, "UTC", policy) == 10.0


def test_forecast_quantile_ignores_one_unusual_day_and_needs_enough_days() -> None:
    per_day = 288
    normal = tuple([50.0] * per_day)
    spike = tuple([500.0] * per_day)
    history = DailyLoadHistory(300, (spike, normal, normal))
    now = at(5, 12)
    assert forecast_demand(history, now, 60.0, "UTC", ForecastPolicy()) == 50.0
    assert forecast_demand(history, now, 60.0, "UTC", ForecastPolicy(quantile=1.0)) == 500.0
    assert forecast_demand(history, now, 60.0, "UTC", ForecastPolicy(margin=1.2)) == 60.0
    one_day = DailyLoadHistory(300, (normal,))
    assert forecast_demand(one_day, now, 60.0, "UTC", ForecastPolicy(min_days=2)) is None
    assert forecast_demand(history, now, 60.0, "UTC", ForecastPolicy(enabled=False)) is None


def test_build_daily_history_bins_peaks_per_local_day() -> None:
    now = at(5, 12)
    points = [
        (at(4, 20, 1), 100.0),  # yesterday 20:01 -> day 0, bucket 240
        (at(4, 20, 3), 150.0),  # same bucket: the peak is kept
        (at(3, 20, 2), 90.0),  # two days ago -> day 1
        (at(5, 8), 999.0),  # today: left to the reactive rules
        (at(1, 20), 999.0),  # older than 3 days
    ]
    history = build_daily_history(points, now, 300, 3, "UTC")
    assert history.days[0][240] == 150.0
    assert history.days[1][240] == 90.0
    assert all(v is None for v in history.days[2])
    assert sum(v is not None for day in history.days for v in day) == 2


def test_daily_history_validates_its_shape() -> None:
    with pytest.raises(ValueError, match="divide"):
        DailyLoadHistory(7, ())
    with pytest.raises(ValueError, match="288"):
        DailyLoadHistory(300, ((1.0,),))


# --- scale to zero -------------------------------------------------------------------


def test_idle_period() -> None:
    assert not zero.idle_long_enough(100.0, 399.0, 300.0)
    assert zero.idle_long_enough(100.0, 400.0, 300.0)
    assert not zero.idle_long_enough(400.0, 400.0, 0.0)  # demand right now is not idle


def test_wake_signal_looks_at_the_recent_window_only() -> None:
    old = MetricSample(10.0, 5.0, 0)
    quiet = MetricSample(99.0, 0.0, 0)
    queued = MetricSample(99.0, 0.0, 0, queued=1.0)
    assert not zero.wake_signal([old, quiet], 100.0, 6.0)
    assert zero.wake_signal([old, queued], 100.0, 6.0)


# --- warm pool and capacity ----------------------------------------------------------


def test_scale_up_promotes_warm_replicas_first_and_refills_the_pool() -> None:
    plan = plan_pool(
        current_serving=4, current_warm=3, desired_serving=6, pool_size=3, max_replicas=20
    )
    assert (plan.serving, plan.warm, plan.promotions, plan.demotions) == (6, 3, 2, 0)
    assert plan.new_serving_pods(4) == 0
    assert plan.new_warm_pods(3) == 2  # the two promoted are replaced


def test_promotions_are_bounded_by_the_pool() -> None:
    plan = plan_pool(
        current_serving=2, current_warm=2, desired_serving=10, pool_size=2, max_replicas=20
    )
    assert plan.promotions == 2
    assert plan.new_serving_pods(2) == 6


def test_scale_down_parks_replicas_in_a_short_pool() -> None:
    plan = plan_pool(
        current_serving=8, current_warm=1, desired_serving=5, pool_size=3, max_replicas=20
    )
    assert (plan.promotions, plan.demotions, plan.warm) == (0, 2, 3)
    assert plan.new_warm_pods(1) == 0


def test_serving_plus_warm_never_exceeds_max() -> None:
    plan = plan_pool(
        current_serving=4, current_warm=3, desired_serving=9, pool_size=3, max_replicas=10
    )
    assert (plan.serving, plan.warm) == (9, 1)
    full = plan_pool(
        current_serving=4, current_warm=3, desired_serving=10, pool_size=3, max_replicas=10
    )
    assert (full.serving, full.warm, full.promotions) == (10, 0, 3)


def test_capacity_serves_first_then_refills_the_pool() -> None:
    plan = plan_pool(
        current_serving=4, current_warm=1, desired_serving=10, pool_size=2, max_replicas=20
    )
    # 1 promotion, 5 new serving pods and 2 new warm pods wanted; only 3 slots free.
    outcome = cap_to_capacity(plan, 4, 1, 3)
    assert (outcome.plan.serving, outcome.plan.warm, outcome.plan.promotions) == (8, 0, 1)
    assert (outcome.serving_short, outcome.warm_short, outcome.limited) == (2, 2, True)


def test_capacity_unknown_or_sufficient_caps_nothing() -> None:
    plan = plan_pool(
        current_serving=4, current_warm=0, desired_serving=10, pool_size=0, max_replicas=20
    )
    assert cap_to_capacity(plan, 4, 0, None).plan == plan
    enough = cap_to_capacity(plan, 4, 0, 6)
    assert enough.plan == plan and not enough.limited
    shrinking = plan_pool(
        current_serving=4, current_warm=0, desired_serving=2, pool_size=0, max_replicas=20
    )
    assert not cap_to_capacity(shrinking, 4, 0, 0).limited
