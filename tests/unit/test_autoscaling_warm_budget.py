"""The warm pool's GPU-hour budget: the ledger counts what the pods beyond the floor
held, the decision cuts the pool learned from crowds to what the rest pays for (never
the floor), says so, and the spend survives a restart through the status."""

from __future__ import annotations

import datetime

import pytest

from egpu.api.inference import GPUInferenceServiceSpec, ScalerStatus, WarmPoolBudget
from egpu.engines.autoscaling import ScalingPolicy, decide
from egpu.engines.autoscaling.model import (
    Burst,
    MetricSample,
    MetricWindow,
    ScalerMemory,
    ScalerState,
)
from egpu.engines.autoscaling.simulate import ServiceModel, SimConfig, run
from egpu.engines.autoscaling.slices import WINDOW_SLICES
from egpu.engines.autoscaling.warm_budget import (
    WarmBudgetPolicy,
    WarmLedger,
    WarmSlice,
    account_warm,
    spent_gpu_seconds,
    warm_budget_cut,
)
from egpu.engines.inference.policy import memory_from_status, memory_to_status, scaling_policy
from policies import slo_policy as bench_slo_policy

pytestmark = pytest.mark.unit

NOON = datetime.datetime(2026, 3, 2, 12, 0, tzinfo=datetime.UTC).timestamp()
HOUR = 3600.0
BUDGET = WarmBudgetPolicy(gpu_hours=1.0, window_s=HOUR)
MODEL = ServiceModel(service_time_s=1.0, slots_per_replica=4, cold_start_s=10.0, warm_start_s=0.5)
STATS = MODEL.stats()
# One crowd of 17 replicas, last seen 150 s ago: remembered until NOON + 450.
CROWD = Burst(NOON - 200, 17, NOON - 150)


# --- the ledger ----------------------------------------------------------------------


def test_the_first_decision_counts_nothing_and_starts_the_clock() -> None:
    ledger = account_warm(WarmLedger(), BUDGET, NOON, 5, 2, 60.0)
    assert ledger == WarmLedger((), NOON)


def test_pods_beyond_the_floor_times_gpus_times_seconds_are_counted() -> None:
    ledger = account_warm(WarmLedger(), BUDGET, NOON, 3, 2, 60.0)
    ledger = account_warm(ledger, BUDGET, NOON + 10, 3, 2, 60.0)  # 3 x 2 x 10
    ledger = account_warm(ledger, BUDGET, NOON + 12, 1, 2, 60.0)  # 1 x 2 x 2
    assert spent_gpu_seconds(ledger, BUDGET, NOON + 12) == pytest.approx(64.0)
    assert ledger.accounted_until == NOON + 12


def test_a_pool_at_or_under_its_floor_spends_nothing() -> None:
    ledger = account_warm(WarmLedger(), BUDGET, NOON, 0, 2, 60.0)
    ledger = account_warm(ledger, BUDGET, NOON + 10, 0, 2, 60.0)
    ledger = account_warm(ledger, BUDGET, NOON + 20, -2, 2, 60.0)
    assert ledger.slices == () and ledger.accounted_until == NOON + 20


def test_a_long_gap_counts_only_its_last_moments() -> None:
    ledger = account_warm(WarmLedger((), NOON), BUDGET, NOON + 900, 4, 1, 60.0)
    assert spent_gpu_seconds(ledger, BUDGET, NOON + 900) == pytest.approx(240.0)


def test_a_late_or_repeated_decision_counts_nothing() -> None:
    ledger = account_warm(WarmLedger((), NOON + 10), BUDGET, NOON + 5, 4, 1, 60.0)
    assert ledger == WarmLedger((), NOON + 10)


def test_what_left_the_window_is_forgotten_and_slices_stay_bounded() -> None:
    ledger = WarmLedger((), NOON)
    for minute in range(1, 3 * 60):  # three hours, a decision a minute
        ledger = account_warm(ledger, BUDGET, NOON + 60 * minute, 1, 1, 60.0)
    now = NOON + 60 * (3 * 60 - 1)
    assert len(ledger.slices) <= WINDOW_SLICES + 1
    # One pod all along: about one window's worth, within one slice.
    assert spent_gpu_seconds(ledger, BUDGET, now) == pytest.approx(HOUR, abs=BUDGET.slice_s + 60.0)


def test_the_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="gpu_hours"):
        WarmBudgetPolicy(gpu_hours=0.0, window_s=HOUR)
    with pytest.raises(ValueError, match="window_s"):
        WarmBudgetPolicy(gpu_hours=1.0, window_s=float("nan"))
    with pytest.raises(ValueError, match="warm_budget needs warm_pool_max"):
        slo_policy(warm_pool_max=None, warm_budget=BUDGET)
    with pytest.raises(ValueError, match="gpus_per_pod"):
        slo_policy(gpus_per_pod=0)


# --- what the rest pays for ----------------------------------------------------------


def test_the_rest_pays_for_whole_pods_until_the_crowds_are_forgotten() -> None:
    spent = WarmLedger((WarmSlice(NOON - 100, 1800.0),), NOON)
    # 1800 GPU-s left; 2 GPUs a pod for 450 s is 900 each: 2 of 14.
    cut = warm_budget_cut(BUDGET, spent, 14, 2, NOON + 450, NOON)
    assert (cut.kept, cut.hold_s, cut.left_gpu_seconds) == (2, 450.0, 1800.0)


def test_a_memory_longer_than_the_window_is_paid_for_one_window() -> None:
    cut = warm_budget_cut(BUDGET, WarmLedger(), 14, 1, NOON + 10 * HOUR, NOON)
    assert (cut.kept, cut.hold_s) == (1, HOUR)


def test_a_spent_budget_pays_for_none() -> None:
    spent = WarmLedger((WarmSlice(NOON - 100, 4000.0),), NOON)
    assert warm_budget_cut(BUDGET, spent, 14, 1, NOON + 450, NOON).kept == 0


# --- the decision --------------------------------------------------------------------


def slo_policy(**overrides: object) -> ScalingPolicy:
    return bench_slo_policy(**{"warm_pool_max": 30, "burst_memory_s": 600.0, **overrides})


def calm(now: float = NOON) -> MetricWindow:
    samples = tuple(MetricSample(now - 60 + i, 0.0, 2, 3.0, 0.0) for i in range(61))
    return MetricWindow(samples, STATS)


def after_crowd(warm: int, spent_gpu_s: float = 0.0, floor: int = 1) -> ScalerState:
    spend = WarmLedger((WarmSlice(NOON - 100, spent_gpu_s),), NOON) if spent_gpu_s else WarmLedger()
    return ScalerState(2, 2, warm, ScalerMemory(bursts=(CROWD,), warm_spend=spend))


def test_without_a_budget_the_learned_pool_is_kept_and_nothing_counted() -> None:
    d = decide(slo_policy(), calm(), after_crowd(15), NOON)
    assert (d.serving_replicas, d.warm_replicas, d.learned_warm) == (2, 15, 14)
    assert d.memory.warm_spend == WarmLedger()
    assert "GPU-hour" not in d.reason.message


def test_plenty_left_cuts_nothing_and_says_so() -> None:
    pol = slo_policy(warm_budget=WarmBudgetPolicy(gpu_hours=100.0, window_s=24 * HOUR))
    d = decide(pol, calm(), after_crowd(15), NOON)
    assert d.warm_replicas == 15
    assert "GPU-hour budget 100 of 100 left for 24h pays for the 14 learned" in d.reason.message


def test_a_short_budget_cuts_the_learned_pool_and_says_why() -> None:
    pol = slo_policy(warm_budget=BUDGET, gpus_per_pod=2)
    d = decide(pol, calm(), after_crowd(15), NOON)
    # 3600 GPU-s left, 2 GPUs a pod for the 450 s the crowd is remembered: 4 of 14.
    assert (d.warm_replicas, d.learned_warm) == (5, 4)
    assert (
        "warm pool cut to 5, 4 of 14 learned: GPU-hour budget 1 of 1 left for 1h, enough "
        "for 4 until the crowds are forgotten in 450s"
    ) in d.reason.message


def test_a_spent_budget_leaves_the_floor_and_never_cuts_it() -> None:
    pol = slo_policy(warm_budget=BUDGET, warm_pool_size=3)
    d = decide(pol, calm(), after_crowd(15, spent_gpu_s=HOUR), NOON)
    assert (d.warm_replicas, d.learned_warm) == (3, 0)
    assert "warm pool cut to 3 (warmPool.size), none of 12 learned" in d.reason.message
    assert "GPU-hour budget 0 of 1 left" in d.reason.message


def test_each_decision_counts_what_the_pool_held_beyond_its_floor() -> None:
    pol = slo_policy(warm_budget=BUDGET, gpus_per_pod=2)
    first = decide(pol, calm(), after_crowd(5), NOON)
    later = NOON + 10
    state = ScalerState(2, 2, 5, first.memory)
    second = decide(pol, calm(later), state, later)
    # 4 pods beyond the floor of 1, 2 GPUs each, for 10 s.
    assert spent_gpu_seconds(second.memory.warm_spend, BUDGET, later) == pytest.approx(80.0)


def test_the_spend_survives_a_restart_through_the_status() -> None:
    pol = slo_policy(warm_budget=BUDGET, gpus_per_pod=2)
    memory = ScalerMemory(
        bursts=(CROWD,),
        warm_spend=WarmLedger((WarmSlice(NOON - 1200, 600.0), WarmSlice(NOON - 300, 1200.5)), NOON),
    )
    written = memory_to_status(memory, 10.0).model_dump_json(by_alias=True)
    restored = memory_from_status(ScalerStatus.model_validate_json(written))
    assert restored.warm_spend == memory.warm_spend
    kept = decide(pol, calm(), ScalerState(2, 2, 15, memory), NOON)
    after = decide(pol, calm(), ScalerState(2, 2, 15, restored), NOON)
    assert after.warm_replicas == kept.warm_replicas == 2  # 1799.5 left: 1 pod of 900
    assert after.reason.message == kept.reason.message


def test_a_budgeted_pool_holds_no_more_than_its_budget_over_a_run() -> None:
    # Recurring crowds: x20 for 45 s every 135 s; the learned pool between them.
    loads = ([3.0] * 60 + [60.0] * 90 + [3.0] * 180) * 4
    config = SimConfig(tick_s=0.5, decision_interval_s=0.5)
    budget = WarmBudgetPolicy(gpu_hours=0.3, window_s=HOUR)
    free = run(slo_policy(warm_pool_max=40), loads, MODEL, config, initial_serving=2)
    held = run(
        slo_policy(warm_pool_max=40, warm_budget=budget), loads, MODEL, config, initial_serving=2
    )

    def beyond_floor(result: object) -> float:
        ticks = result.ticks  # type: ignore[attr-defined]
        return sum(max(0, t.warm - 1) * config.tick_s for t in ticks) / HOUR

    assert beyond_floor(free) > 2 * budget.gpu_hours  # unbudgeted: over twice the budget
    assert beyond_floor(held) <= budget.gpu_hours
    # Paced for the burst memory, it still keeps some of what the crowds taught.
    assert max(t.warm for t in held.ticks) > 1


# --- the API -------------------------------------------------------------------------


def spec(warm_pool: dict[str, object]) -> GPUInferenceServiceSpec:
    return GPUInferenceServiceSpec.model_validate(
        {
            "gpusPerPod": 2,
            "maxReplicas": 40,
            "scaling": {
                "metric": "Concurrency",
                "target": "4",
                "source": {"podMetrics": {"port": 8080}},
            },
            "warmPool": warm_pool,
            "template": {"spec": {"containers": [{"name": "server", "image": "x"}]}},
        }
    )


def test_the_spec_reaches_the_engine_with_the_pods_gpus() -> None:
    pol = scaling_policy(spec({"size": 1, "maxSize": 20, "budget": {"gpuHours": 8}}))
    assert pol.gpus_per_pod == 2
    assert pol.warm_budget == WarmBudgetPolicy(gpu_hours=8.0, window_s=24 * HOUR)
    unset = scaling_policy(spec({"size": 1, "maxSize": 20}))
    assert unset.warm_budget is None


def test_the_api_refuses_a_budget_of_nothing() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        WarmPoolBudget.model_validate({"gpuHours": 0})
    assert WarmPoolBudget.model_validate({"gpuHours": 2.5, "window": "168h"}).window == "168h"
