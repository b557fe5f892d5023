"""A per-GPU risk score from precursors: signs that come before GPU faults, while the
GPU still works. Pure; the agent keeps the history and publishes GPUs at risk.

Precursors (each adds to the score, capped at 1):
- correctable (single-bit) ECC errors growing within the window;
- correctable row remappings growing within the window (spare rows being used up);
- thermal excursions: polls within `thermal_margin_c` of the temperature limit, or
  with hardware thermal/power-brake throttling;
- NVLink CRC/replay errors growing within the window;
- telemetry gaps: polls that came much later than the poll period;
- repeated XIDs of one class within the window (even ones the policy ignores).

The weights are a first guess, not fitted to data: the score ranks GPUs, it does not
claim a probability.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from egpu.engines.health.samples import (
    THROTTLE_HW_POWER_BRAKE,
    THROTTLE_HW_THERMAL,
    GpuSample,
)


@dataclass(frozen=True, slots=True)
class RiskPolicy:
    window_s: float = 3600.0
    threshold: float = 0.5
    sbe_per_window: int = 100  # this many new correctable ECC errors: full weight
    remaps_per_window: int = 2
    nvlink_errors_per_window: int = 200
    thermal_margin_c: int = 5
    max_temperature_c: int = 90
    thermal_polls: int = 3
    gap_factor: float = 3.0  # a sample later than this many spacings is a gap
    gaps: int = 2
    repeated_xids: int = 3
    sample_every_s: float = 60.0  # the spacing of the samples scored (one kept per)


@dataclass(frozen=True, slots=True)
class Risk:
    score: float
    reasons: tuple[str, ...]

    def at_risk(self, policy: RiskPolicy) -> bool:
        return self.score >= policy.threshold


def _growth(first: int | None, last: int | None) -> int:
    if first is None or last is None or last < first:
        return 0
    return last - first


def risk_of(history: Sequence[GpuSample], policy: RiskPolicy, now: float) -> Risk:
    """The risk of one GPU from its readings (oldest first) within the window."""
    recent = [s for s in history if now - s.timestamp <= policy.window_s and s.error is None]
    if len(recent) < 2:
        return Risk(0.0, ())
    first, last = recent[0], recent[-1]
    score = 0.0
    reasons: list[str] = []

    def add(weight: float, fraction: float, reason: str) -> None:
        nonlocal score
        if fraction > 0:
            score += weight * min(1.0, fraction)
            reasons.append(reason)

    sbe = _growth(first.ecc_volatile.corrected, last.ecc_volatile.corrected)
    add(0.5, sbe / policy.sbe_per_window, f"{sbe} correctable ECC errors")
    remaps = _growth(first.remapped_correctable, last.remapped_correctable)
    add(0.4, remaps / policy.remaps_per_window, f"{remaps} rows remapped")
    hot = sum(
        1
        for s in recent
        if (
            s.temperature_c is not None
            and s.temperature_c >= policy.max_temperature_c - policy.thermal_margin_c
        )
        or s.throttle_reasons & (THROTTLE_HW_THERMAL | THROTTLE_HW_POWER_BRAKE)
    )
    if hot >= policy.thermal_polls:
        add(0.3, hot / (2 * policy.thermal_polls), f"{hot} thermal excursions")
    links = _growth(first.nvlink_crc, last.nvlink_crc) + _growth(
        first.nvlink_replay, last.nvlink_replay
    )
    add(0.2, links / policy.nvlink_errors_per_window, f"{links} NVLink CRC/replay errors")
    gaps = sum(
        1
        for a, b in itertools.pairwise(recent)
        if b.timestamp - a.timestamp > policy.gap_factor * policy.sample_every_s
    )
    if gaps >= policy.gaps:
        add(0.2, gaps / (2 * policy.gaps), f"{gaps} telemetry gaps")
    xids = Counter(e.xid for s in recent for e in s.xids)
    for xid, n in sorted(xids.items()):
        if n >= policy.repeated_xids:
            add(0.3, n / (2 * policy.repeated_xids), f"XID {xid} {n} times")
    return Risk(round(min(1.0, score), 3), tuple(reasons))
