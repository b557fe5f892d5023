"""Reading a container's usage samples: recent peaks, the stabilisation-window peak,
and CPU throttling since the last resize."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from egpu.engines.resize.model import ResourceKind, UsageSample


@dataclass(frozen=True, slots=True)
class UsageSummary:
    """Peaks are None-free for the recent span; the window peaks are None when the
    samples do not yet span the whole stabilisation window (too little history to
    shrink on)."""

    recent_cpu_peak: float
    recent_memory_peak: float
    window_cpu_peak: float | None
    window_memory_peak: float | None
    cpu_throttled_fraction: float | None

    def recent_peak(self, kind: ResourceKind) -> float:
        return self.recent_cpu_peak if kind is ResourceKind.CPU else self.recent_memory_peak

    def window_peak(self, kind: ResourceKind) -> float | None:
        return self.window_cpu_peak if kind is ResourceKind.CPU else self.window_memory_peak


def summarise_usage(
    samples: Sequence[UsageSample],
    now: float,
    *,
    lookback_s: float,
    window_s: float,
    last_resize_at: float | None,
) -> UsageSummary | None:
    """None when no sample is recent enough to act on."""
    recent = [s for s in samples if s.at >= now - lookback_s]
    if not recent:
        return None
    recent_cpu = max(s.cpu_millicores for s in recent)
    recent_memory = max(s.memory_bytes for s in recent)

    window_cpu: float | None = None
    window_memory: float | None = None
    if now - min(s.at for s in samples) >= window_s:
        in_window = [s for s in samples if s.at >= now - window_s]
        window_cpu = max([recent_cpu, *(s.cpu_millicores for s in in_window)])
        window_memory = max([recent_memory, *(s.memory_bytes for s in in_window)])

    # Throttling measured before the last resize describes the old cpu limit; counting
    # it would grow a container twice for one burst.
    throttled = [
        s.cpu_throttled_fraction
        for s in recent
        if s.cpu_throttled_fraction is not None
        and (last_resize_at is None or s.at > last_resize_at)
    ]
    return UsageSummary(
        recent_cpu_peak=recent_cpu,
        recent_memory_peak=recent_memory,
        window_cpu_peak=window_cpu,
        window_memory_peak=window_memory,
        cpu_throttled_fraction=sum(throttled) / len(throttled) if throttled else None,
    )
