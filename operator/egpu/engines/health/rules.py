"""The health rules: one reading (and the one before it) in, findings out; and the
hysteresis that turns findings into per-GPU health.

A GPU turns unhealthy on its first fault. It is healthy again only when its checks
have passed `passes_needed` times in a row *and* its last fault is at least
`quiet_period_s` old. The pass count is not persisted, so an agent that restarts
counts its passes afresh: a restart never makes a GPU healthy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from egpu.engines.health.samples import (
    THROTTLE_HW_POWER_BRAKE,
    THROTTLE_HW_SLOWDOWN,
    THROTTLE_HW_THERMAL,
    THROTTLE_NAMES,
    GpuSample,
    NodeReading,
)

# Application errors (illegal memory access, MMU fault from user code, a killed
# context, preemption, a watchdog reset the application caused): the GPU is fine.
DEFAULT_IGNORED_XIDS = frozenset({13, 31, 43, 45, 68, 109})
GPU_LOST_ERRORS = frozenset({"GPU_IS_LOST", "NVML_ERROR_GPU_IS_LOST", "GPU_LOST"})


class Severity(StrEnum):
    FAULT = "Fault"  # the GPU is unhealthy
    WARNING = "Warning"  # reported, a precursor; the GPU stays usable


class Check(StrEnum):
    NVML_UNREACHABLE = "NVMLUnreachable"
    FALLEN_OFF_BUS = "FallenOffBus"
    NVML_ERROR = "NVMLError"
    GPU_MISSING = "GPUMissing"
    XID = "Xid"
    ECC_UNCORRECTABLE = "EccUncorrectable"
    ECC_CORRECTABLE = "EccCorrectable"
    RETIREMENT_PENDING = "RetirementPending"
    RETIRED_PAGES = "RetiredPages"
    ROW_REMAP_PENDING = "RowRemapPending"
    ROW_REMAP_FAILURE = "RowRemapFailure"
    TEMPERATURE = "Temperature"
    THROTTLE = "Throttle"
    NVLINK_ERRORS = "NVLinkErrors"
    NVLINK_DOWN = "NVLinkDown"
    TELEMETRY_STALLED = "TelemetryStalled"


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """What counts as a fault. Defaults follow NVIDIA's XID catalogue and the device
    plugin's ignore list; every one is configurable (`egpu agent --help`)."""

    ignored_xids: frozenset[int] = DEFAULT_IGNORED_XIDS
    max_temperature_c: int = 90
    # Correctable (single-bit) ECC errors in one poll that make a fault; 0: never.
    sbe_fault_delta: int = 0
    # Retired pages (DBE) at or beyond which the GPU is due for replacement; 0: never.
    retired_dbe_limit: int = 0
    # NVLink CRC + replay errors in one poll that make a fault (fewer: a warning).
    nvlink_error_delta: int = 1000
    throttle_is_fault: bool = False
    stall_after_s: float = 60.0
    quiet_period_s: float = 300.0
    passes_needed: int = 3

    def __post_init__(self) -> None:
        if self.passes_needed < 1:
            raise ValueError("passes_needed must be at least 1")
        for what in ("stall_after_s", "quiet_period_s"):
            if getattr(self, what) < 0:
                raise ValueError(f"{what} must not be negative")


@dataclass(frozen=True, slots=True)
class Finding:
    gpu: int
    check: Check
    severity: Severity
    message: str


@dataclass(frozen=True, slots=True)
class GpuHealth:
    """One GPU's health as the agent publishes it."""

    index: int
    healthy: bool = True
    reasons: tuple[str, ...] = ()  # why it is (or last was made) unhealthy
    since: float | None = None  # when it entered this state
    last_fault: float | None = None
    passes: int = 0  # passing checks since the last fault (not persisted)
    warnings: tuple[str, ...] = field(default=())


def _delta(now: int | None, before: int | None) -> int:
    """Growth of a counter between two polls; 0 when unknown or reset (driver reload)."""
    if now is None or before is None or now < before:
        return 0
    return now - before


def _gpu_findings(
    s: GpuSample, prev: GpuSample | None, policy: HealthPolicy, now: float
) -> list[Finding]:
    out: list[Finding] = []

    def fault(check: Check, message: str) -> None:
        out.append(Finding(s.index, check, Severity.FAULT, message))

    def warn(check: Check, message: str) -> None:
        out.append(Finding(s.index, check, Severity.WARNING, message))

    if s.error is not None:
        if s.error.upper() in GPU_LOST_ERRORS:
            fault(Check.FALLEN_OFF_BUS, f"GPU {s.index} has fallen off the bus ({s.error})")
        else:
            fault(Check.NVML_ERROR, f"GPU {s.index} cannot be read: {s.error}")
        return out
    age = now - s.timestamp
    if age > policy.stall_after_s:
        fault(Check.TELEMETRY_STALLED, f"GPU {s.index}: no new reading for {age:.0f}s")
    for event in s.xids:
        if event.xid in policy.ignored_xids:
            warn(Check.XID, f"XID {event.xid} (an application error, not a GPU fault)")
        else:
            fault(Check.XID, f"XID {event.xid}")
    before = prev if prev is not None else None
    dbe = _delta(s.ecc_volatile.uncorrected, before.ecc_volatile.uncorrected if before else None)
    dbe_agg = _delta(
        s.ecc_aggregate.uncorrected, before.ecc_aggregate.uncorrected if before else None
    )
    if dbe or dbe_agg:
        fault(Check.ECC_UNCORRECTABLE, f"{max(dbe, dbe_agg)} new uncorrectable ECC errors")
    sbe = _delta(s.ecc_volatile.corrected, before.ecc_volatile.corrected if before else None)
    if sbe:
        if policy.sbe_fault_delta and sbe >= policy.sbe_fault_delta:
            fault(Check.ECC_CORRECTABLE, f"{sbe} new correctable ECC errors in one poll")
        else:
            warn(Check.ECC_CORRECTABLE, f"{sbe} new correctable ECC errors")
    if s.retirement_pending:
        fault(Check.RETIREMENT_PENDING, "a page retirement is pending (needs a GPU reset)")
    if policy.retired_dbe_limit and (s.retired_dbe or 0) >= policy.retired_dbe_limit:
        fault(Check.RETIRED_PAGES, f"{s.retired_dbe} pages retired for double-bit errors")
    if s.remap_failure:
        fault(Check.ROW_REMAP_FAILURE, "a row remapping failed (the GPU needs replacing)")
    if s.remap_pending:
        fault(Check.ROW_REMAP_PENDING, "a row remapping is pending (needs a GPU reset)")
    if s.temperature_c is not None and s.temperature_c >= policy.max_temperature_c:
        fault(
            Check.TEMPERATURE,
            f"temperature {s.temperature_c} C at or above {policy.max_temperature_c} C",
        )
    hw = s.throttle_reasons & (THROTTLE_HW_SLOWDOWN | THROTTLE_HW_THERMAL | THROTTLE_HW_POWER_BRAKE)
    if hw:
        names = ", ".join(n for bit, n in sorted(THROTTLE_NAMES.items()) if hw & bit)
        (fault if policy.throttle_is_fault else warn)(Check.THROTTLE, f"throttled: {names}")
    recovery = _delta(s.nvlink_recovery, before.nvlink_recovery if before else None)
    errors = _delta(s.nvlink_crc, before.nvlink_crc if before else None) + _delta(
        s.nvlink_replay, before.nvlink_replay if before else None
    )
    if recovery:
        fault(Check.NVLINK_ERRORS, f"{recovery} NVLink recovery errors")
    elif errors >= policy.nvlink_error_delta:
        fault(Check.NVLINK_ERRORS, f"{errors} NVLink CRC/replay errors in one poll")
    elif errors:
        warn(Check.NVLINK_ERRORS, f"{errors} NVLink CRC/replay errors")
    if (
        before is not None
        and before.nvlinks_active is not None
        and s.nvlinks_active is not None
        and s.nvlinks_active < before.nvlinks_active
    ):
        fault(
            Check.NVLINK_DOWN,
            f"{before.nvlinks_active - s.nvlinks_active} NVLinks went down "
            f"({s.nvlinks_active} active)",
        )
    return out


def findings(
    reading: NodeReading,
    previous: NodeReading | None,
    policy: HealthPolicy,
    now: float,
    gpu_count: int,
) -> list[Finding]:
    """Every rule on one reading. `gpu_count` is how many GPUs the node has (its
    inventory); a GPU missing from the reading is a fault, as is NVML not answering."""
    if reading.nvml_error is not None:
        return [
            Finding(i, Check.NVML_UNREACHABLE, Severity.FAULT, f"NVML: {reading.nvml_error}")
            for i in range(gpu_count)
        ]
    before = {s.index: s for s in previous.samples} if previous is not None else {}
    out: list[Finding] = []
    present = {s.index for s in reading.samples}
    for i in range(gpu_count):
        if i not in present:
            out.append(
                Finding(i, Check.GPU_MISSING, Severity.FAULT, f"GPU {i} is missing from NVML")
            )
    for sample in reading.samples:
        out.extend(_gpu_findings(sample, before.get(sample.index), policy, now))
    return out


def stalled(
    gpu_count: int, last_reading_at: float | None, policy: HealthPolicy, now: float
) -> list[Finding]:
    """No reading at all for longer than `stall_after_s` (NVML calls hang): every GPU."""
    if last_reading_at is not None and now - last_reading_at <= policy.stall_after_s:
        return []
    age = "ever" if last_reading_at is None else f"{now - last_reading_at:.0f}s"
    return [
        Finding(i, Check.TELEMETRY_STALLED, Severity.FAULT, f"no reading from NVML for {age}")
        for i in range(gpu_count)
    ]


def advance(
    previous: Mapping[int, GpuHealth],
    found: Sequence[Finding],
    policy: HealthPolicy,
    now: float,
    gpu_count: int,
) -> tuple[GpuHealth, ...]:
    """Hysteresis: the GPUs' health after one round of checks."""
    faults: dict[int, list[str]] = {}
    warnings: dict[int, list[str]] = {}
    for f in found:
        (faults if f.severity is Severity.FAULT else warnings).setdefault(f.gpu, []).append(
            f"{f.check.value}: {f.message}"
        )
    out = []
    for i in range(gpu_count):
        old = previous.get(i, GpuHealth(i))
        warn = tuple(warnings.get(i, ()))
        if i in faults:
            out.append(
                GpuHealth(
                    i,
                    healthy=False,
                    reasons=tuple(faults[i]),
                    since=old.since if not old.healthy and old.since is not None else now,
                    last_fault=now,
                    passes=0,
                    warnings=warn,
                )
            )
            continue
        if old.healthy:
            out.append(replace(old, warnings=warn, passes=old.passes + 1))
            continue
        passes = old.passes + 1
        quiet = old.last_fault is None or now - old.last_fault >= policy.quiet_period_s
        if passes >= policy.passes_needed and quiet:
            out.append(GpuHealth(i, healthy=True, since=now, passes=passes, warnings=warn))
        else:
            out.append(replace(old, passes=passes, warnings=warn))
    return tuple(out)
