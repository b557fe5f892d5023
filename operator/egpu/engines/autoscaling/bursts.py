"""Burst memory: a service that saw a crowd keeps capacity for the next one.

Each panic is a crowd; its steady size (the replicas its arrivals needed at the
peak, the backlog left out) is remembered. While remembered, serving plus warm
replicas stay at the highest remembered size, the warm pool making up the rest (up
to the user's ceiling). One crowd is remembered for the base window; crowds that
recur are remembered for twice the longest gap between them, so capacity stays while
they keep coming, and goes once they have stopped for that long.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from egpu.engines.autoscaling.model import Burst

MAX_BURSTS = 8
# Headroom over the crowd's arrival rate: the backlog that builds in the moments
# before warm replicas serve (a scrape, a decision, a promotion) drains at this spare
# rate. A fifth more than the arrivals need, as a user who sized a pool by hand would.
BURST_HEADROOM = 0.2


def burst_demand(arrival_demand: float) -> float:
    """The demand a crowd of `arrival_demand` is remembered at."""
    return max(0.0, arrival_demand) * (1.0 + BURST_HEADROOM)


def crowd_replicas(needed_exact: float, with_headroom: int, ready: int, exact_signal: bool) -> int:
    """The size to remember a crowd at, from one sample of its panic.

    `needed_exact` is what its demand needs; `with_headroom` that with BURST_HEADROOM.
    An exact signal (LatencySLO's arrival rate) is taken as it is. Other metrics count
    what waits at busy replicas too (concurrency is arrivals x latency), so while the
    ready replicas fall short the sample only shows the crowd is at least `ready`.
    """
    if exact_signal or needed_exact <= ready:
        return with_headroom
    return ready


def worth_remembering(replicas: int, min_replicas: int) -> bool:
    """A 'crowd' the minimum already carries (a cold start under base load) is none."""
    return replicas > max(1, min_replicas)


def record_burst(
    bursts: tuple[Burst, ...], started_at: float, now: float, replicas: int
) -> tuple[Burst, ...]:
    """Note the panic that began at `started_at` needing `replicas` now."""
    if bursts and bursts[-1].started_at == started_at:
        last = bursts[-1]
        return (*bursts[:-1], Burst(started_at, max(last.peak_replicas, replicas), now))
    return (*bursts, Burst(started_at, replicas, now))[-MAX_BURSTS:]


def recurrence_s(bursts: tuple[Burst, ...]) -> float | None:
    """The longest gap between the starts of consecutive crowds (None below two)."""
    starts = sorted(b.started_at for b in bursts)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    return max(gaps) if gaps else None


def memory_window_s(bursts: tuple[Burst, ...], base_s: float) -> float:
    """How long after it was last seen a crowd is remembered."""
    gap = recurrence_s(bursts)
    return base_s if gap is None else max(base_s, 2.0 * gap)


def remembered(bursts: tuple[Burst, ...], now: float, base_s: float) -> tuple[Burst, ...]:
    """The crowds remembered at `now`: all of them (the newest MAX_BURSTS) until the
    newest is a memory window old, then none. Kept together, so the recurrence they
    show keeps the window long while crowds keep coming."""
    if not bursts:
        return ()
    newest = max(b.last_seen_at for b in bursts)
    return bursts if now < newest + memory_window_s(bursts, base_s) else ()


@dataclass(frozen=True)
class LearnedCapacity:
    replicas: int
    bursts: int
    window_s: float
    until: float  # when the newest crowd is forgotten, if none comes


def learned_capacity(
    bursts: tuple[Burst, ...], now: float, base_s: float
) -> LearnedCapacity | None:
    kept = remembered(bursts, now, base_s)
    if not kept:
        return None
    window = memory_window_s(kept, base_s)
    peak = max(b.peak_replicas for b in kept)
    return LearnedCapacity(peak, len(kept), window, max(b.last_seen_at for b in kept) + window)


def learned_pool(learned_replicas: int, serving: int, size: int, ceiling: int) -> int:
    """Warm replicas that top serving up to the learned size: at least `size`, at most
    `ceiling` (the caller caps serving + warm at maxReplicas)."""
    return max(size, min(ceiling, learned_replicas - serving))
