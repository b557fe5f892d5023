"""The risk score from precursors, one precursor at a time, and its report."""

from __future__ import annotations

from dataclasses import replace

import pytest

from egpu.agent.node import NodeAgent
from egpu.agent.simulate import SimulatedGpus, parse_fault, synthetic_frame
from egpu.engines.health.report import build_report, parse_report, report_text
from egpu.engines.health.risk import Risk, RiskPolicy, risk_of
from egpu.engines.health.rules import GpuHealth
from egpu.engines.health.samples import EccCounts, GpuSample, XidEvent

pytestmark = pytest.mark.unit
POLICY = RiskPolicy(sample_every_s=60, window_s=3600)


def series(n: int = 10, **change: object) -> list[GpuSample]:
    """n samples a minute apart; `change` maps a field to a function of the step."""
    out = []
    for k in range(n):
        fields = {name: fn(k) for name, fn in change.items()}  # type: ignore[operator]
        out.append(replace(GpuSample(0, timestamp=60.0 * k, temperature_c=40), **fields))
    return out


NOW = 60.0 * 9


def test_a_quiet_gpu_has_no_risk() -> None:
    assert risk_of(series(), POLICY, NOW) == Risk(0.0, ())
    assert risk_of(series(1), POLICY, NOW) == Risk(0.0, ())


def test_rising_correctable_ecc() -> None:
    risk = risk_of(series(ecc_volatile=lambda k: EccCounts(corrected=15 * k)), POLICY, NOW)
    assert risk.score == 0.5 and risk.reasons == ("135 correctable ECC errors",)
    assert risk.at_risk(POLICY)
    small = risk_of(series(ecc_volatile=lambda k: EccCounts(corrected=k)), POLICY, NOW)
    assert 0 < small.score < POLICY.threshold


def test_rows_being_remapped() -> None:
    risk = risk_of(series(remapped_correctable=lambda k: k // 4), POLICY, NOW)
    assert risk.score == 0.4 and risk.reasons == ("2 rows remapped",)


def test_thermal_excursions_and_hardware_throttling() -> None:
    hot = risk_of(series(temperature_c=lambda k: 86 if k % 2 else 60), POLICY, NOW)
    assert hot.reasons == ("5 thermal excursions",) and hot.score == 0.25
    few = risk_of(series(temperature_c=lambda k: 86 if k < 2 else 60), POLICY, NOW)
    assert few.score == 0
    braking = risk_of(series(throttle_reasons=lambda k: 0x80), POLICY, NOW)
    assert braking.score == 0.3


def test_nvlink_errors() -> None:
    risk = risk_of(series(nvlink_crc=lambda k: 30 * k, nvlink_replay=lambda k: 0), POLICY, NOW)
    assert risk.reasons == ("270 NVLink CRC/replay errors",) and risk.score == 0.2


def test_telemetry_gaps() -> None:
    samples = series()
    gappy = [samples[0], *[replace(s, timestamp=s.timestamp * 4) for s in samples[1:4]]]
    risk = risk_of(gappy, POLICY, 4 * NOW)
    assert risk.reasons == ("3 telemetry gaps",)


def test_repeated_xids_of_one_class_even_ignored_ones() -> None:
    risk = risk_of(series(xids=lambda k: (XidEvent(31, 60.0 * k),) if k < 4 else ()), POLICY, NOW)
    assert risk.reasons == ("XID 31 4 times",)


def test_precursors_add_up_to_at_most_one() -> None:
    risk = risk_of(
        series(
            ecc_volatile=lambda k: EccCounts(corrected=100 * k),
            remapped_correctable=lambda k: k,
            temperature_c=lambda k: 89,
        ),
        POLICY,
        NOW,
    )
    assert risk.score == 1.0 and len(risk.reasons) == 3


def test_old_samples_leave_the_window() -> None:
    samples = series(ecc_volatile=lambda k: EccCounts(corrected=50 * k))
    assert risk_of(samples, POLICY, NOW + 3600).score == 0


def test_at_risk_gpus_are_published_and_read_back_but_not_for_unhealthy_gpus() -> None:
    health = [GpuHealth(0), GpuHealth(1, healthy=False, reasons=("Xid: XID 79",))]
    risks = {0: Risk(0.7, ("135 correctable ECC errors",)), 1: Risk(0.9, ("x",))}
    report = build_report(5.0, health, risks)
    assert set(report.at_risk) == {0}
    again = parse_report(report_text(report))
    assert again is not None and again.at_risk == {0: Risk(0.7, ("135 correctable ECC errors",))}
    with pytest.raises(ValueError, match="atRisk 0 needs a score"):
        parse_report('{"checkedAt": 1, "gpuCount": 2, "atRisk": {"0": {}}}')


def test_the_agent_flags_a_gpu_whose_correctable_errors_climb() -> None:
    frame = synthetic_frame(4, [[0, 1], [2, 3]], [0, 0, 1, 1])
    faults = [parse_fault(f"{60 * k}:n1:2:sbe=20") for k in range(1, 10)]
    gpus = SimulatedGpus("n1", [frame], faults, start=0.0)
    agent = NodeAgent("n1", gpus.read)
    for t in range(0, 600, 10):
        report, _ = agent.judge(gpus.read(float(t)), float(t))
    assert set(report.at_risk) == {2} and report.unhealthy == {}
    assert report.at_risk[2].reasons[0].endswith("correctable ECC errors")
