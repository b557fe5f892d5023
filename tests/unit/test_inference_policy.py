"""The CRD's spec and status in the autoscaling engine's terms."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from egpu.api.inference import GPUInferenceServiceSpec, ScalerStatus, TideStatus
from egpu.engines.autoscaling import (
    Burst,
    MetricKind,
    Recommendation,
    ScalerMemory,
    ScheduleEntry,
)
from egpu.engines.autoscaling.budget import BudgetLedger, BudgetSlice
from egpu.engines.autoscaling.schedule import schedule_floor
from egpu.engines.autoscaling.tide import TidePolicy, TideProfile, empty_profile, observe
from egpu.engines.inference.policy import (
    DEFAULT_TIME_TO_READY_S,
    cron_entries,
    memory_changed_materially,
    memory_from_status,
    memory_to_status,
    parse_duration,
    scaling_policy,
    tide_from_status,
    tide_to_status,
)

pytestmark = pytest.mark.unit

TEMPLATE = {"spec": {"containers": [{"name": "server", "image": "registry.local/sim:1"}]}}


def spec(**overrides: Any) -> GPUInferenceServiceSpec:
    body: dict[str, Any] = {
        "template": TEMPLATE,
        "maxReplicas": 20,
        "scaling": {
            "metric": "Concurrency",
            "target": 8,
            "source": {"podMetrics": {"port": 8080}},
        },
    }
    body.update(overrides)
    return GPUInferenceServiceSpec.model_validate(body)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("500ms", 0.5), ("1.5s", 1.5)],
)
def test_durations_read_as_go_writes_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "m5", "5 m", "5d"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_defaults_map_onto_the_engine() -> None:
    policy = scaling_policy(spec())
    assert policy.metric is MetricKind.CONCURRENCY
    assert policy.target == 8.0
    assert (policy.min_replicas, policy.max_replicas) == (1, 20)
    assert (policy.stable_window_s, policy.panic_window_s) == (60.0, 6.0)
    assert policy.scale_down_stabilization_s == 300.0
    assert policy.time_to_ready_s == DEFAULT_TIME_TO_READY_S


def test_unset_scale_to_zero_after_means_one_stable_window() -> None:
    s = spec(minReplicas=0, behavior={"stableWindow": "45s"})
    assert scaling_policy(s).scale_to_zero_idle_s == 45.0
    s = spec(minReplicas=0, behavior={"stableWindow": "45s", "scaleToZeroAfter": "2m"})
    assert scaling_policy(s).scale_to_zero_idle_s == 120.0


def test_latency_slo_percentile_becomes_a_fraction_and_service_time_a_throughput() -> None:
    s = spec(
        scaling={
            "metric": "LatencySLO",
            "latencySLO": {
                "percentile": 99.9,
                "target": "2s",
                "serviceTime": "500ms",
                "concurrencyPerReplica": 4,
            },
            "source": {"prometheus": {"url": "http://p:9090", "query": "sum(x)"}},
        }
    )
    policy = scaling_policy(s)
    assert policy.latency_target_s == 2.0
    assert policy.latency_percentile == pytest.approx(0.999)
    assert policy.target == pytest.approx(8.0)  # 4 slots / 0.5 s


def test_measured_time_to_ready_is_the_lead_time() -> None:
    assert scaling_policy(spec(), time_to_ready_s=12.5).time_to_ready_s == 12.5


def test_hhmm_windows_and_crons_raise_the_floor_only_while_open() -> None:
    s = spec(
        schedule=[
            {"name": "day", "start": "08:00", "end": "20:00", "minReplicas": 3},
            {"name": "batch", "cron": "30 22 * * 1-5", "duration": "1h", "minReplicas": 7},
        ]
    )
    entries = scaling_policy(s).schedule
    # Monday 2 March 2026.
    monday = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)

    def at(hour: int, minute: int = 0, day: int = 0) -> float:
        return (monday + dt.timedelta(days=day, hours=hour, minutes=minute)).timestamp()

    assert schedule_floor(entries, at(12), "UTC") == 3
    assert schedule_floor(entries, at(21), "UTC") == 0
    assert schedule_floor(entries, at(22, 45), "UTC") == 7
    assert schedule_floor(entries, at(23, 31), "UTC") == 0
    assert schedule_floor(entries, at(22, 45, day=5), "UTC") == 0  # Saturday


def test_cron_fields_convert_to_daily_ranges() -> None:
    assert cron_entries("0 8 * * *", 3600, 2) == [ScheduleEntry(8 * 3600, 9 * 3600, 2)]
    # Sunday is 0 and 7 in cron, 6 in the engine (Monday = 0); ranges wrap past midnight.
    (entry,) = cron_entries("15 23 * * 0", 7200, 1)
    assert (entry.start_s, entry.end_s, entry.weekdays) == (23 * 3600 + 900, 3600 + 900, {6})
    assert len(cron_entries("0 */6 * * MON-FRI", 600, 1)) == 4
    whole = cron_entries("@daily", 86400 * 2, 1)[0]
    assert whole.start_s == whole.end_s == 0  # the whole day


@pytest.mark.parametrize(
    "cron", ["0 8 1 * *", "0 8 * 6 *", "*/5 8 * * *", "@monthly", "0 25 * * *", "0 8 * * 9"]
)
def test_crons_that_are_not_daily_or_weekly_are_refused(cron: str) -> None:
    with pytest.raises(ValueError, match="cron"):
        cron_entries(cron, 60, 1)


def test_an_unsupported_cron_makes_the_spec_invalid_not_silent() -> None:
    s = spec(schedule=[{"name": "m", "cron": "0 0 1 * *", "duration": "1h", "minReplicas": 2}])
    with pytest.raises(ValueError, match="day-of-month"):
        scaling_policy(s)


def test_memory_survives_a_round_trip_through_the_status() -> None:
    memory = ScalerMemory(
        last_scale_up_at=1_700_000_000.5,
        last_scale_down_at=None,
        panic_since=1_700_000_010.0,
        panic_last_triggered_at=1_700_000_011.25,
        last_demand_at=1_700_000_012.0,
        recommendations=(Recommendation(1_700_000_001.0, 9), Recommendation(1_700_000_002.0, 4)),
        panic_peak_replicas=12,
        bursts=(Burst(1_700_000_010.0, 19, 1_700_000_055.5),),
        budget=BudgetLedger(
            (BudgetSlice(1_699_999_700.0, 1200.5, 3.25), BudgetSlice(1_700_000_000.0, 80.0, 0.0)),
            1_700_000_012.0,
        ),
    )
    status = memory_to_status(memory, 17.0)
    wire = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    back = memory_from_status(ScalerStatus.model_validate(wire))
    assert back == memory
    assert wire["timeToReadySeconds"] == 17.0
    assert memory_from_status(None) == ScalerMemory()


def test_only_material_memory_changes_ask_for_a_status_write() -> None:
    old = ScalerMemory(recommendations=(Recommendation(1.0, 4),))
    restamped = ScalerMemory(recommendations=(Recommendation(3.0, 4),), last_demand_at=3.0)
    assert not memory_changed_materially(old, restamped)
    assert memory_changed_materially(old, ScalerMemory(recommendations=(Recommendation(3.0, 5),)))
    assert memory_changed_materially(old, ScalerMemory(panic_since=2.0))
    assert memory_changed_materially(old, ScalerMemory(last_scale_up_at=2.0))


def test_a_new_crowd_or_a_higher_peak_asks_for_a_write_its_last_seen_time_alone_not() -> None:
    old = ScalerMemory(bursts=(Burst(1.0, 10, 2.0),))
    assert not memory_changed_materially(old, ScalerMemory(bursts=(Burst(1.0, 10, 9.0),)))
    assert memory_changed_materially(old, ScalerMemory(bursts=(Burst(1.0, 12, 9.0),)))
    assert memory_changed_materially(
        old, ScalerMemory(bursts=(Burst(1.0, 10, 2.0), Burst(50.0, 3, 50.0)))
    )
    assert memory_changed_materially(old, ScalerMemory(bursts=old.bursts, panic_peak_replicas=4))


def test_the_learning_warm_pool_maps_to_the_policy() -> None:
    plain = scaling_policy(spec(warmPool={"size": 2}))
    assert (plain.warm_pool_size, plain.warm_pool_max, plain.burst_memory_s) == (2, None, 600.0)
    learning = scaling_policy(spec(warmPool={"size": 1, "maxSize": 16, "burstMemory": "30m"}))
    assert (learning.warm_pool_max, learning.burst_memory_s) == (16, 1800.0)


def test_a_declared_tide_maps_to_the_policy_and_none_learns_nothing() -> None:
    assert scaling_policy(spec()).tide is None
    tide = scaling_policy(spec(tide={"period": "10m", "buckets": 60, "tolerance": 0.5})).tide
    assert tide is not None
    assert (tide.period_s, tide.buckets, tide.tolerance, tide.learning_rate) == (
        600.0,
        60,
        0.5,
        0.5,
    )
    with pytest.raises(ValueError, match=r"learning_?[rR]ate"):
        spec(tide={"period": "24h", "learningRate": 0})


def test_an_error_budget_maps_to_the_policy_and_none_spends_nothing() -> None:
    slo = {
        "metric": "LatencySLO",
        "latencySLO": {"percentile": 99, "target": "2s", "serviceTime": "1s"},
        "source": {"podMetrics": {"port": 8080}},
    }
    assert scaling_policy(spec(scaling=slo)).error_budget is None
    slo["latencySLO"]["errorBudget"] = {}  # type: ignore[index]
    budget = scaling_policy(spec(scaling=slo)).error_budget
    assert budget is not None
    assert (budget.window_s, budget.loosest_percentile) == (3600.0, 0.90)
    slo["latencySLO"]["errorBudget"] = {"window": "10m", "loosestPercentile": 95}  # type: ignore[index]
    budget = scaling_policy(spec(scaling=slo)).error_budget
    assert budget is not None and (budget.window_s, budget.loosest_percentile) == (600.0, 0.95)


TIDE = TidePolicy(period_s=100.0, buckets=10)


def two_cycles() -> TideProfile:
    """Two cycles and a bit of a third; bucket 9 seen in the first cycle only."""
    profile = empty_profile(TIDE)
    for t in range(250):
        if t % 100 >= 90 and t >= 100:
            continue
        profile = observe(profile, TIDE, 1_000_000.0 + t, 2.5 + (t % 100) / 4)
    return profile


def test_the_tide_profile_survives_a_round_trip_through_the_status() -> None:
    profile = two_cycles()
    status = tide_to_status(profile, TIDE)
    assert status is not None
    wire = status.model_dump(mode="json", by_alias=True)
    back = tide_from_status(TideStatus.model_validate(wire), TIDE)
    assert back == profile  # the values are exact at 4 significant digits here
    assert len(wire["profile"]) < 40 * TIDE.buckets  # compact


def test_the_stored_tide_is_rounded_not_lost() -> None:
    profile = observe(empty_profile(TIDE), TIDE, 5.0, 1.0 / 3.0)
    status = tide_to_status(profile, TIDE)
    assert status is not None
    back = tide_from_status(status, TIDE)
    assert back is not None and back.buckets[0] is not None
    assert back.buckets[0].peak == pytest.approx(1.0 / 3.0, rel=1e-3)


def test_a_stored_tide_of_another_cycle_or_unreadable_is_not_restored() -> None:
    status = tide_to_status(two_cycles(), TIDE)
    assert status is not None
    assert tide_from_status(status, TidePolicy(period_s=200.0, buckets=10)) is None
    assert tide_from_status(status, TidePolicy(period_s=100.0, buckets=20)) is None
    assert tide_from_status(None, TIDE) is None
    for bad in ("x:1:2:3" + ",," * 9 + "", ",".join(["0:1::1"] * 9), ",".join(["0:-1::1"] * 10)):
        broken = status.model_copy(update={"profile": bad})
        assert tide_from_status(broken, TIDE) is None, bad
    assert tide_to_status(empty_profile(TIDE), TIDE) is None  # nothing learned: nothing kept
