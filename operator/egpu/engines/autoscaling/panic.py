"""Panic mode: react to a burst on the short window, never scale down while in it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PanicStatus:
    active: bool
    since: float | None
    last_triggered_at: float | None


def panic_ratio(panic_window_replicas: float, ready_replicas: int) -> float:
    """Replicas the panic-window demand needs per replica ready now.

    Zero ready counts as one, so a burst that lands on a service still starting up
    (or scaled to zero) can trigger panic instead of dividing by zero.
    """
    return panic_window_replicas / max(1, ready_replicas)


def next_panic_status(
    triggered: bool,
    now: float,
    since: float | None,
    last_triggered_at: float | None,
    stable_window_s: float,
) -> PanicStatus:
    """Enter on the trigger; leave only after a whole stable window without one."""
    if triggered:
        return PanicStatus(True, since if since is not None else now, now)
    calm_for = None if last_triggered_at is None else now - last_triggered_at
    if since is not None and calm_for is not None and calm_for < stable_window_s:
        return PanicStatus(True, since, last_triggered_at)
    return PanicStatus(False, None, None)


def panic_replicas(panic_recommendation: int, current_replicas: int) -> int:
    """In panic the count only goes up."""
    return max(panic_recommendation, current_replicas)
