"""The precursor fault trace and the counting of the risk score's alarms against it."""

from __future__ import annotations

import pytest

from egpu.engines.health.risk import RiskPolicy
from egpu.sim.precursors import (
    DAY_S,
    FAULTS_PER_GPU_DAY,
    Episode,
    Fault,
    FaultClass,
    Kind,
    PrecursorModel,
    generate,
)
from egpu.sim.risk_eval import alarms_of, count, quiet_scores_zero

pytestmark = pytest.mark.unit
H = 3600.0


def test_the_trace_is_seeded_and_reproducible() -> None:
    assert generate(300, 10, seed=4) == generate(300, 10, seed=4)
    assert generate(300, 10, seed=4) != generate(300, 10, seed=5)


def test_the_fault_rate_is_llama_3s() -> None:
    assert pytest.approx(419 * 0.587 / (16384 * 54)) == FAULTS_PER_GPU_DAY
    quiet = PrecursorModel(
        ce_gpu_month=0, hot_per_gpu_day=0, app_xid_per_gpu_day=0, gap_per_gpu_day=0
    )
    trace = generate(16384, 54, seed=2, model=quiet)
    expected = FAULTS_PER_GPU_DAY * trace.gpu_days  # ~246: Poisson sd ~16
    assert abs(len(trace.faults) - expected) < 4 * expected**0.5


def test_memory_precursor_share_follows_bayes_on_the_published_factor() -> None:
    m = PrecursorModel(ce_gpu_month=0.03, ce_factor=54)
    assert m.memory_precursor_share == pytest.approx(1.62 / (1.62 + 0.97))


def test_a_quiet_window_scores_zero_through_the_engine() -> None:
    assert quiet_scores_zero(RiskPolicy())


def test_a_correctable_ecc_storm_alarms_once_and_early_enough() -> None:
    storm = [Episode(0, Kind.SBE, 10 * H, 20 * H, 5000)]  # 500 an hour
    alarms, scored = alarms_of(storm, 0, RiskPolicy(), 30 * DAY_S)
    assert len(alarms) == 1 and 10 * H < alarms[0] < 11 * H
    assert scored > 0
    few = [Episode(0, Kind.SBE, 10 * H, 20 * H, 10)]
    assert alarms_of(few, 0, RiskPolicy(), 30 * DAY_S)[0] == []


def test_counting_true_and_false_alarms_and_lead_time() -> None:
    faults = [Fault(0, 100 * H, FaultClass.HBM3, True), Fault(1, 50 * H, FaultClass.SDC, False)]
    alarms = {0: [90 * H, 95 * H], 2: [10 * H], 1: [60 * H]}  # GPU 1's came after its fault
    out = count(alarms, faults, horizon_s=24 * H, gpu_days=1000)
    assert (out.alarms, out.true_alarms, out.false_alarms) == (4, 2, 2)
    assert (out.faults, out.foreseen) == (2, 1)
    assert out.leads_s == (10 * H,)  # from the first alarm in the horizon
    assert out.precision == 0.5 and out.recall == 0.5
    assert out.false_per_1000_gpu_days == 2
    late = count({0: [10 * H]}, faults[:1], horizon_s=24 * H, gpu_days=1)
    assert late.true_alarms == 0 and late.foreseen == 0
