"""The `egpu.io/gpu-health` node annotation: the agent's per-GPU health, also its
memory across restarts (an unhealthy GPU stays unhealthy when the agent restarts).

    {"checkedAt": 1764700000.0, "gpuCount": 8,
     "unhealthy": {"3": {"reasons": ["Xid: XID 79"], "since": 1764699990.0,
                         "lastFault": 1764699990.0}},
     "atRisk": {"5": {"score": 0.62, "reasons": ["340 correctable ECC errors"]}}}

Only unhealthy GPUs are listed; every other GPU of `gpuCount` is healthy. `atRisk`
lists healthy GPUs whose precursors score at or above the risk threshold.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from egpu.engines.health.risk import Risk
from egpu.engines.health.rules import GpuHealth


@dataclass(frozen=True, slots=True)
class HealthReport:
    checked_at: float
    gpu_count: int
    unhealthy: dict[int, GpuHealth] = field(default_factory=dict)
    at_risk: dict[int, Risk] = field(default_factory=dict)

    @property
    def unhealthy_gpus(self) -> frozenset[int]:
        return frozenset(self.unhealthy)

    def states(self) -> dict[int, GpuHealth]:
        """Every GPU's state as the hysteresis carries it on (passes start at 0)."""
        return {i: self.unhealthy.get(i, GpuHealth(i, healthy=True)) for i in range(self.gpu_count)}


def build_report(
    checked_at: float, health: Iterable[GpuHealth], at_risk: dict[int, Risk] | None = None
) -> HealthReport:
    states = list(health)
    unhealthy = {h.index: h for h in states if not h.healthy}
    return HealthReport(
        checked_at=checked_at,
        gpu_count=len(states),
        unhealthy=unhealthy,
        at_risk={i: r for i, r in (at_risk or {}).items() if i not in unhealthy},
    )


def report_text(report: HealthReport) -> str:
    return json.dumps(
        {
            "checkedAt": round(report.checked_at, 3),
            "gpuCount": report.gpu_count,
            "unhealthy": {
                str(i): {
                    "reasons": list(h.reasons)[:8],
                    "since": h.since,
                    "lastFault": h.last_fault,
                }
                for i, h in sorted(report.unhealthy.items())
            },
            **(
                {
                    "atRisk": {
                        str(i): {"score": r.score, "reasons": list(r.reasons)[:8]}
                        for i, r in sorted(report.at_risk.items())
                    }
                }
                if report.at_risk
                else {}
            ),
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def _number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"gpu-health annotation: {what} must be a number, got {value!r}")
    return float(value)


def parse_report(text: str | None) -> HealthReport | None:
    """Parse the annotation; None when absent. Raises ValueError when malformed."""
    if text is None or not text.strip():
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"gpu-health annotation is not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ValueError("gpu-health annotation must be a JSON object")
    checked = _number(data.get("checkedAt"), "checkedAt")
    count = data.get("gpuCount")
    if checked is None or isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError("gpu-health annotation needs checkedAt and a gpuCount >= 0")
    raw = data.get("unhealthy") or {}
    if not isinstance(raw, dict):
        raise ValueError("gpu-health annotation: unhealthy must be an object")
    unhealthy: dict[int, GpuHealth] = {}
    for key, entry in raw.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit()) or int(key) >= count:
            raise ValueError(f"gpu-health annotation: {key!r} is not a GPU index below {count}")
        if not isinstance(entry, dict):
            raise ValueError(f"gpu-health annotation: GPU {key} must be an object")
        reasons = entry.get("reasons") or []
        if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
            raise ValueError(f"gpu-health annotation: GPU {key} reasons must be strings")
        index = int(key)
        unhealthy[index] = GpuHealth(
            index,
            healthy=False,
            reasons=tuple(reasons),
            since=_number(entry.get("since"), f"GPU {key} since"),
            last_fault=_number(entry.get("lastFault"), f"GPU {key} lastFault"),
        )
    risky = data.get("atRisk") or {}
    if not isinstance(risky, dict):
        raise ValueError("gpu-health annotation: atRisk must be an object")
    at_risk: dict[int, Risk] = {}
    for key, entry in risky.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit()) or int(key) >= count:
            raise ValueError(f"gpu-health annotation: {key!r} is not a GPU index below {count}")
        score = _number(entry.get("score") if isinstance(entry, dict) else None, "score")
        reasons = entry.get("reasons") or [] if isinstance(entry, dict) else []
        if score is None or not isinstance(reasons, list):
            raise ValueError(f"gpu-health annotation: atRisk {key} needs a score")
        at_risk[int(key)] = Risk(score, tuple(str(r) for r in reasons))
    return HealthReport(checked_at=checked, gpu_count=count, unhealthy=unhealthy, at_risk=at_risk)
