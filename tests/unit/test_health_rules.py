"""Every health rule, and the hysteresis that makes a GPU healthy again."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from egpu.agent.simulate import synthetic_frame
from egpu.engines.health.report import build_report, parse_report, report_text
from egpu.engines.health.rules import (
    Check,
    Finding,
    GpuHealth,
    HealthPolicy,
    Severity,
    advance,
    findings,
    stalled,
)
from egpu.engines.health.samples import parse_reading

pytestmark = pytest.mark.unit
NOW = 1000.0
POLICY = HealthPolicy(quiet_period_s=60, passes_needed=3, stall_after_s=30)


def healthy(ts: float = NOW) -> dict[str, Any]:
    frame = synthetic_frame(4, [[0, 1], [2, 3]], [0, 0, 1, 1])
    frame["timestamp"] = ts
    for g in frame["gpus"]:
        g["timestamp"] = ts
    return frame


def judge(
    change: Any = None, before: Any = None, policy: HealthPolicy = POLICY, now: float = NOW
) -> list[Finding]:
    prev = healthy(now - 10)
    if before is not None:
        before(prev)
    raw = copy.deepcopy(prev)
    raw["timestamp"] = now
    for g in raw["gpus"]:
        g["timestamp"] = now
    if change is not None:
        change(raw)
    return findings(parse_reading(raw), parse_reading(prev), policy, now, 4)


def faults(found: list[Finding]) -> set[tuple[int, Check]]:
    return {(f.gpu, f.check) for f in found if f.severity is Severity.FAULT}


def warnings(found: list[Finding]) -> set[tuple[int, Check]]:
    return {(f.gpu, f.check) for f in found if f.severity is Severity.WARNING}


def test_a_healthy_node_has_no_findings() -> None:
    assert judge() == []


@pytest.mark.parametrize("xid", [48, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120])
def test_gpu_xids_are_faults(xid: int) -> None:
    found = judge(lambda r: r["gpus"][1]["xids"].append({"xid": xid}))
    assert faults(found) == {(1, Check.XID)}
    assert f"XID {xid}" in found[0].message


@pytest.mark.parametrize("xid", [13, 31, 43, 45, 68, 109])
def test_application_xids_are_not_faults_by_default(xid: int) -> None:
    found = judge(lambda r: r["gpus"][1]["xids"].append({"xid": xid}))
    assert faults(found) == set()
    assert warnings(found) == {(1, Check.XID)}


def test_the_xid_policy_is_configurable() -> None:
    strict = HealthPolicy(ignored_xids=frozenset())
    assert faults(judge(lambda r: r["gpus"][0]["xids"].append({"xid": 13}), policy=strict)) == {
        (0, Check.XID)
    }
    lax = HealthPolicy(ignored_xids=frozenset({79}))
    assert faults(judge(lambda r: r["gpus"][0]["xids"].append({"xid": 79}), policy=lax)) == set()


@pytest.mark.parametrize("part", ["volatile", "aggregate"])
def test_new_uncorrectable_ecc_errors_are_a_fault(part: str) -> None:
    def dbe(r: dict[str, Any]) -> None:
        r["gpus"][2]["ecc"][part]["uncorrected"] += 1

    assert faults(judge(dbe)) == {(2, Check.ECC_UNCORRECTABLE)}


def test_old_uncorrectable_counts_and_counter_resets_are_not_new_faults() -> None:
    def old(r: dict[str, Any]) -> None:
        r["gpus"][2]["ecc"]["aggregate"]["uncorrected"] = 4

    assert judge(before=old) == []  # the same 4 as before
    # volatile counters reset when the driver reloads: a drop is not an error
    assert judge(lambda r: r["gpus"][2]["ecc"]["aggregate"].update(uncorrected=0), old) == []


def test_correctable_ecc_is_a_warning_unless_the_policy_sets_a_limit() -> None:
    def sbe(r: dict[str, Any]) -> None:
        r["gpus"][0]["ecc"]["volatile"]["corrected"] += 50

    assert warnings(judge(sbe)) == {(0, Check.ECC_CORRECTABLE)} and faults(judge(sbe)) == set()
    assert faults(judge(sbe, policy=HealthPolicy(sbe_fault_delta=50))) == {
        (0, Check.ECC_CORRECTABLE)
    }


def test_pending_retirement_and_retired_page_limit() -> None:
    assert faults(judge(lambda r: r["gpus"][3]["retiredPages"].update(pending=True))) == {
        (3, Check.RETIREMENT_PENDING)
    }
    many = HealthPolicy(retired_dbe_limit=64)
    assert faults(judge(lambda r: r["gpus"][3]["retiredPages"].update(dbe=64), policy=many)) == {
        (3, Check.RETIRED_PAGES)
    }
    assert judge(lambda r: r["gpus"][3]["retiredPages"].update(dbe=63), policy=many) == []


def test_row_remap_pending_and_failure() -> None:
    assert faults(judge(lambda r: r["gpus"][1]["remappedRows"].update(pending=True))) == {
        (1, Check.ROW_REMAP_PENDING)
    }
    assert faults(judge(lambda r: r["gpus"][1]["remappedRows"].update(failure=True))) == {
        (1, Check.ROW_REMAP_FAILURE)
    }


def test_temperature_limit() -> None:
    assert faults(judge(lambda r: r["gpus"][0].update(temperature=90))) == {(0, Check.TEMPERATURE)}
    assert judge(lambda r: r["gpus"][0].update(temperature=89)) == []


def test_hardware_throttling_is_a_warning_or_by_policy_a_fault() -> None:
    def hot(r: dict[str, Any]) -> None:
        r["gpus"][2]["throttleReasons"] = 0x40 | 0x1  # HW thermal + GPU idle

    found = judge(hot)
    assert warnings(found) == {(2, Check.THROTTLE)} and "HwThermalSlowdown" in found[0].message
    assert faults(judge(hot, policy=HealthPolicy(throttle_is_fault=True))) == {(2, Check.THROTTLE)}
    assert judge(lambda r: r["gpus"][2].update(throttleReasons=0x4)) == []  # an app clock cap


def test_nvlink_errors() -> None:
    assert faults(judge(lambda r: r["gpus"][0]["nvlinkErrors"].update(recovery=1))) == {
        (0, Check.NVLINK_ERRORS)
    }
    assert warnings(judge(lambda r: r["gpus"][0]["nvlinkErrors"].update(crc=10))) == {
        (0, Check.NVLINK_ERRORS)
    }
    assert faults(judge(lambda r: r["gpus"][0]["nvlinkErrors"].update(crc=600, replay=400))) == {
        (0, Check.NVLINK_ERRORS)
    }


def test_an_nvlink_that_went_down_is_a_fault() -> None:
    def down(r: dict[str, Any]) -> None:
        r["gpus"][3]["nvlinks"][0]["active"] = False

    assert faults(judge(down)) == {(3, Check.NVLINK_DOWN)}


def test_a_gpu_fallen_off_the_bus() -> None:
    def lost(r: dict[str, Any]) -> None:
        r["gpus"][1] = {"index": 1, "error": "GPU_IS_LOST"}

    assert faults(judge(lost)) == {(1, Check.FALLEN_OFF_BUS)}
    assert faults(judge(lambda r: r["gpus"][1].update(error="Unknown Error"))) == {
        (1, Check.NVML_ERROR)
    }


def test_a_gpu_missing_from_nvml_is_a_fault() -> None:
    assert faults(judge(lambda r: r["gpus"].pop())) == {(3, Check.GPU_MISSING)}


def test_nvml_unreachable_faults_every_gpu() -> None:
    raw = {"timestamp": NOW, "nvmlError": "Driver Not Loaded", "gpus": []}
    found = findings(parse_reading(raw), None, POLICY, NOW, 4)
    assert faults(found) == {(i, Check.NVML_UNREACHABLE) for i in range(4)}


def test_a_stale_gpu_reading_is_stalled_telemetry() -> None:
    def stale(r: dict[str, Any]) -> None:
        r["gpus"][2]["timestamp"] = NOW - 31

    assert faults(judge(stale)) == {(2, Check.TELEMETRY_STALLED)}


def test_no_reading_at_all_for_too_long_stalls_every_gpu() -> None:
    assert stalled(2, NOW - 30, POLICY, NOW) == []
    assert {f.check for f in stalled(2, NOW - 31, POLICY, NOW)} == {Check.TELEMETRY_STALLED}
    assert len(stalled(2, None, POLICY, NOW)) == 2


# -- hysteresis ----------------------------------------------------------------------


def fault_on(gpu: int, t: float) -> list[Finding]:
    return [Finding(gpu, Check.XID, Severity.FAULT, "XID 79")]


def run(
    rounds: list[tuple[float, list[Finding]]], start: dict[int, GpuHealth] | None = None
) -> dict[int, GpuHealth]:
    states = start or {}
    for t, found in rounds:
        states = {h.index: h for h in advance(states, found, POLICY, t, 2)}
    return states


def test_one_fault_makes_a_gpu_unhealthy_at_once() -> None:
    states = run([(NOW, fault_on(1, NOW))])
    assert not states[1].healthy and states[0].healthy
    assert states[1].reasons == ("Xid: XID 79",) and states[1].since == NOW


def test_healthy_again_only_after_passes_and_the_quiet_period() -> None:
    rounds = [(NOW, fault_on(1, NOW))] + [(NOW + 10 * k, []) for k in range(1, 6)]
    states = run(rounds)  # 5 passes, but only 50 s of the 60 s quiet period
    assert not states[1].healthy
    states = run([(NOW + 60, [])], states)
    assert states[1].healthy and states[1].since == NOW + 60 and states[1].reasons == ()


def test_quiet_alone_is_not_enough_without_passing_checks() -> None:
    states = run([(NOW, fault_on(1, NOW)), (NOW + 600, []), (NOW + 610, [])])
    assert not states[1].healthy  # two passes of three
    assert run([(NOW + 620, [])], states)[1].healthy


def test_a_fault_during_recovery_starts_the_wait_again() -> None:
    rounds = [(NOW, fault_on(1, NOW)), (NOW + 50, []), (NOW + 55, [])]
    rounds += [(NOW + 58, fault_on(1, NOW + 58)), (NOW + 61, []), (NOW + 100, [])]
    states = run(rounds)
    assert not states[1].healthy and states[1].since == NOW  # unhealthy since the first
    assert states[1].last_fault == NOW + 58
    assert run([(NOW + 118, [])], states)[1].healthy


def test_warnings_never_make_a_gpu_unhealthy() -> None:
    warn = [Finding(0, Check.THROTTLE, Severity.WARNING, "throttled")]
    states = run([(NOW, warn)])
    assert states[0].healthy and states[0].warnings == ("Throttle: throttled",)


def test_an_agent_restart_does_not_make_a_gpu_healthy() -> None:
    states = run([(NOW, fault_on(1, NOW))] + [(NOW + 10 * k, []) for k in range(1, 3)])
    text = report_text(build_report(NOW + 20, states.values()))
    report = parse_report(text)
    assert report is not None and report.unhealthy_gpus == {1}
    restored = report.states()
    assert restored[1].passes == 0  # passes are counted afresh after a restart
    # long past the quiet period, the restarted agent still needs its own passes
    assert not run([(NOW + 900, []), (NOW + 910, [])], restored)[1].healthy
    assert run([(NOW + 900, []), (NOW + 910, []), (NOW + 920, [])], restored)[1].healthy


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope", "not JSON"),
        ("[]", "must be a JSON object"),
        ('{"gpuCount": 2}', "needs checkedAt"),
        ('{"checkedAt": 1, "gpuCount": 2, "unhealthy": {"2": {}}}', "not a GPU index below 2"),
        ('{"checkedAt": 1, "gpuCount": 2, "unhealthy": {"1": {"reasons": [1]}}}', "strings"),
        ('{"checkedAt": 1, "gpuCount": 2, "unhealthy": {"1": {"since": "x"}}}', "a number"),
    ],
)
def test_bad_health_annotations_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_report(text)


def test_an_absent_annotation_is_no_report() -> None:
    assert parse_report(None) is None and parse_report(" ") is None
