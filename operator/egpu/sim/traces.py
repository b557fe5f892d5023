"""Offered-load traces for the traffic simulator: flash crowd, tidal day, ramp, and the
surprises: recurring crowds, a spike in the trough, a noisy plateau, a sawtooth.

A trace is piecewise linear in (seconds since start, requests per second) and holds
its last value after the last point. `jumps` name the moments a load step starts
and the rate it reaches, so a benchmark can time "load jump -> enough capacity".
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Jump:
    at_s: float
    to_rps: float


@dataclass(frozen=True)
class Trace:
    name: str
    points: tuple[tuple[float, float], ...]
    jumps: tuple[Jump, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a trace needs at least one point")
        times = [t for t, _ in self.points]
        if times != sorted(times):
            raise ValueError("trace points must be in time order")
        if any(rps < 0 for _, rps in self.points):
            raise ValueError("offered load must be >= 0")

    @property
    def duration_s(self) -> float:
        return self.points[-1][0]

    def covers(self, t: float) -> bool:
        """Whether trace time `t` lies inside the trace (a one-point trace never ends)."""
        return self.duration_s == 0 or t < self.duration_s

    def rate(self, t: float) -> float:
        times = [p[0] for p in self.points]
        i = bisect.bisect_right(times, t)
        if i == 0:
            return self.points[0][1]
        if i == len(self.points):
            return self.points[-1][1]
        (t0, r0), (t1, r1) = self.points[i - 1], self.points[i]
        if t1 == t0:
            return r1
        return r0 + (r1 - r0) * (t - t0) / (t1 - t0)

    def mean_rate(self, t0: float, t1: float, steps: int = 8) -> float:
        """Average over [t0, t1): what arrives in one simulator tick."""
        if t1 <= t0:
            return self.rate(t0)
        width = (t1 - t0) / steps
        return sum(self.rate(t0 + (i + 0.5) * width) for i in range(steps)) / steps


def flash_crowd(
    base: float,
    factor: float = 20.0,
    at_s: float = 30.0,
    rise_s: float = 1.0,
    hold_s: float = 60.0,
    tail_s: float = 60.0,
) -> Trace:
    """`base`, then `factor` x base within `rise_s` (x20 within one second), held, then back."""
    peak = base * factor
    end_rise = at_s + rise_s
    end_hold = end_rise + hold_s
    points = (
        (0.0, base),
        (at_s, base),
        (end_rise, peak),
        (end_hold, peak),
        (end_hold + rise_s, base),
        (end_hold + rise_s + tail_s, base),
    )
    return Trace("flash", points, (Jump(at_s, peak),))


def tidal_day(
    night: float, peak: float, day_s: float = 600.0, samples: int = 96, days: int = 1
) -> Trace:
    """A day compressed into `day_s` seconds: a night trough, a morning rise, a midday
    plateau and an evening peak, from two smooth humps over a floor."""

    def shape(x: float) -> float:
        morning = math.exp(-(((x - 0.45) / 0.12) ** 2))
        evening = math.exp(-(((x - 0.82) / 0.07) ** 2))
        return min(1.0, 0.75 * morning + 1.0 * evening)

    points = []
    for d in range(days):
        for i in range(samples):
            x = i / samples
            points.append((d * day_s + x * day_s, night + (peak - night) * shape(x)))
    points.append((days * day_s, night + (peak - night) * shape(0.0)))
    return Trace("tidal", tuple(points))


def ramp(
    base: float, peak: float, at_s: float = 30.0, ramp_s: float = 120.0, hold_s: float = 60.0
) -> Trace:
    """A steady climb from `base` to `peak` over `ramp_s`, then held.

    Its one "jump" is the moment the load reaches the peak: capacity ready by then
    kept up (lag 0), anything later is how far the autoscaler fell behind.
    """
    points = (
        (0.0, base),
        (at_s, base),
        (at_s + ramp_s, peak),
        (at_s + ramp_s + hold_s, peak),
    )
    return Trace("ramp", points, (Jump(at_s + ramp_s, peak),))


def steps(levels: Sequence[tuple[float, float]], name: str = "steps") -> Trace:
    """Step changes: (from this second, this rate) pairs; every rise is a jump."""
    points: list[tuple[float, float]] = []
    jumps: list[Jump] = []
    previous: float | None = None
    for at_s, rps in levels:
        if previous is not None:
            points.append((at_s, previous))
            if rps > previous:
                jumps.append(Jump(at_s, rps))
        points.append((at_s, rps))
        previous = rps
    return Trace(name, tuple(points), tuple(jumps))


def recurring_crowds(
    base: float,
    factor: float = 20.0,
    at_s: float = 30.0,
    hold_s: float = 45.0,
    gap_s: float = 90.0,
    crowds: int = 2,
    tail_s: float = 60.0,
    rise_s: float = 1.0,
) -> Trace:
    """`crowds` flash crowds (x`factor` within `rise_s`, held `hold_s`), `gap_s` from
    the end of one to the start of the next; every crowd is a jump."""
    peak = base * factor
    points: list[tuple[float, float]] = [(0.0, base)]
    jumps: list[Jump] = []
    start = at_s
    for _ in range(crowds):
        points += [
            (start, base),
            (start + rise_s, peak),
            (start + rise_s + hold_s, peak),
            (start + 2 * rise_s + hold_s, base),
        ]
        jumps.append(Jump(start, peak))
        start += 2 * rise_s + hold_s + gap_s
    points.append((points[-1][0] + tail_s, base))
    return Trace("crowds", tuple(points), tuple(jumps))


def crowd_starts(trace: Trace) -> list[float]:
    return [j.at_s for j in trace.jumps]


def spike_in_trough(
    night: float,
    peak: float,
    day_s: float = 600.0,
    spike_at: float = 0.12,
    spike_factor: float = 2.0,
    spike_s: float = 30.0,
    samples: int = 96,
) -> Trace:
    """A tidal day with an unforecast spike to `spike_factor` x the day's peak, in the
    night trough (at `spike_at` of the day), within one second, held `spike_s`."""
    day = tidal_day(night, peak, day_s, samples)
    start = spike_at * day_s
    top = spike_factor * peak
    before = [p for p in day.points if p[0] < start]
    after = [p for p in day.points if p[0] > start + spike_s + 2.0]
    points = (
        *before,
        (start, day.rate(start)),
        (start + 1.0, top),
        (start + 1.0 + spike_s, top),
        (start + 2.0 + spike_s, day.rate(start + 2.0 + spike_s)),
        *after,
    )
    return Trace("spike", points, (Jump(start, top),))


def noisy_plateau(
    base: float,
    level: float,
    at_s: float = 30.0,
    hold_s: float = 240.0,
    noise: float = 0.2,
    every_s: float = 2.0,
    seed: int = 7,
) -> Trace:
    """`base`, then a step to `level` held `hold_s` with +-`noise` relative jitter every
    `every_s` (a fixed pseudo-random sequence: the same trace every run)."""
    rng = random.Random(seed)
    points: list[tuple[float, float]] = [(0.0, base), (at_s, base)]
    t = at_s + 1.0
    while t < at_s + 1.0 + hold_s:
        value = level * (1.0 + rng.uniform(-noise, noise))
        points += [(t, value), (min(t + every_s, at_s + 1.0 + hold_s), value)]
        t += every_s
    points.append((t + 1.0, base))
    return Trace("plateau", tuple(points), (Jump(at_s, level * (1.0 - noise)),))


def sawtooth(low: float, high: float, period_s: float = 60.0, teeth: int = 4) -> Trace:
    """Climbs from `low` to `high` over each period, then drops back within a second."""
    points: list[tuple[float, float]] = []
    for i in range(teeth):
        start = i * period_s
        points += [(start, low), (start + period_s - 1.0, high)]
    points.append((teeth * period_s, low))
    return Trace("sawtooth", tuple(points))


def trace_from_spec(spec: Mapping[str, Any]) -> Trace:
    """A trace from JSON: {"kind": "flash"|"tidal"|"ramp"|"steps"|"points", ...params}."""
    params = {k: v for k, v in spec.items() if k != "kind"}
    kind = spec.get("kind")
    if kind == "flash":
        return flash_crowd(**params)
    if kind == "tidal":
        return tidal_day(**params)
    if kind == "ramp":
        return ramp(**params)
    if kind == "steps":
        return steps(
            [(float(t), float(r)) for t, r in params["levels"]], params.get("name", "steps")
        )
    if kind == "points":
        jumps = tuple(Jump(float(t), float(r)) for t, r in params.get("jumps", []))
        points = tuple((float(t), float(r)) for t, r in params["points"])
        return Trace(params.get("name", "points"), points, jumps)
    raise ValueError(f"unknown trace kind {kind!r}")
