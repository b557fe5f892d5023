"""Damping: tolerance band, scale-up rate and cooldown, scale-down stabilisation and rate."""

from __future__ import annotations

import math

from egpu.engines.autoscaling.model import Recommendation


def within_tolerance(exact_replicas: float, current_replicas: int, tolerance: float) -> bool:
    """True when the wanted/current ratio is within 1 +- tolerance (no change worth making)."""
    if current_replicas <= 0:
        return False
    return abs(exact_replicas / current_replicas - 1.0) <= tolerance


def scale_up_limit(current_replicas: int, ready_replicas: int, max_rate: float) -> int:
    """Most replicas one decision may ask for: ready x rate, as Knative does (zero ready
    counts as one), and never less than what is already asked for."""
    return max(current_replicas, math.ceil(max(1, ready_replicas) * max_rate))


def scale_down_limit(current_replicas: int, max_rate: float) -> int:
    """Fewest replicas one decision may ask for: current / rate."""
    return math.floor(current_replicas / max_rate)


def in_cooldown(last_scale_up_at: float | None, now: float, cooldown_s: float) -> bool:
    return last_scale_up_at is not None and now - last_scale_up_at < cooldown_s


def remember(
    history: tuple[Recommendation, ...], replicas: int, now: float, window_s: float
) -> tuple[Recommendation, ...]:
    """Add a recommendation and drop what can no longer be the window's maximum.

    Entries that fell out of the window go, and so do older entries not above the new
    one: the new one outlives them, so they can never be the maximum again. The
    history thus stays short enough to keep in the object's status.
    """
    kept = [r for r in history if now - r.timestamp < window_s and r.replicas > replicas]
    kept.append(Recommendation(now, replicas))
    return tuple(kept)


def stabilized(history: tuple[Recommendation, ...], now: float, window_s: float) -> int | None:
    """Highest recommendation within the stabilisation window (None when empty)."""
    recent = [r.replicas for r in history if now - r.timestamp < window_s or r.timestamp == now]
    return max(recent) if recent else None
