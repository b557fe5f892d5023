"""What was possible: a clairvoyant-reactive autoscaler and the oracle, on a trace.

The oracle holds exactly enough replicas every second, ready at once: the GPU-hour
floor. The clairvoyant-reactive bound knows the trace and the queue exactly and acts
every tick without delay, but still waits the cold start for every pod it starts, and
starts none before the load that needs it has arrived: whatever it misses, no
reactive autoscaler could have served. When the ready replicas fall short (or a
queue waits) it asks for every replica allowed at once, promoting its warm pods
first; it never releases a pod the trace needs again before a new one could be
ready. Its SLO figure is the ceiling an SLO figure is read against; its GPU-hours are
reported but are not a target (it buys SLO at any price).

Same fluid model as the traffic simulator (`simulate.step`), same tick.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from egpu.engines.autoscaling.simulate import ServiceModel, SimState, step
from egpu.sim.traces import Trace


def replicas_for(rate_rps: float, model: ServiceModel) -> int:
    return max(1, math.ceil(rate_rps / model.replica_rps - 1e-9))


def oracle_replica_seconds(trace: Trace, model: ServiceModel, t0: float, t1: float) -> float:
    """Exactly enough replicas (at least one) each second of [t0, t1), ready at once."""
    return float(
        sum(
            replicas_for(trace.mean_rate(t, t + 1), model)
            for t in range(math.floor(t0), math.ceil(t1))
        )
    )


@dataclass
class BoundResult:
    offered: float = 0.0
    met: float = 0.0
    replica_seconds: float = 0.0
    seconds: dict[int, list[float]] = field(default_factory=dict)

    @property
    def slo_pct(self) -> float:
        return 100.0 * (self.met / self.offered if self.offered else 1.0)

    def slo_pct_between(self, t0: float, t1: float) -> float:
        rows = [v for s, v in self.seconds.items() if t0 <= s < t1]
        offered = sum(r[0] for r in rows)
        return 100.0 * (sum(r[1] for r in rows) / offered if offered else 1.0)


def clairvoyant_reactive(
    trace: Trace,
    model: ServiceModel,
    latency_target_s: float,
    max_replicas: int,
    *,
    tick_s: float = 0.25,
    warm: int = 1,
    min_replicas: int = 1,
) -> BoundResult:
    result = BoundResult()
    serving: list[float] = [0.0] * min_replicas  # ready-at times
    pool: list[float] = [0.0] * warm
    queue = 0.0
    ticks = math.ceil(trace.duration_s / tick_s)
    for i in range(ticks):
        t = i * tick_s
        rate = trace.mean_rate(t, t + tick_s)
        ready = sum(1 for r in serving if r <= t)
        short = queue > 1e-9 or rate > ready * model.replica_rps + 1e-9
        if short:
            want = max_replicas
        else:
            # Keep what the trace needs again before a replacement could be ready.
            # Keep (never start early) what the trace needs again before a
            # replacement could be ready.
            ahead = int(model.cold_start_s / tick_s)
            horizon = max(trace.rate(t + k * tick_s) for k in range(ahead + 1))
            keep = min(len(serving), replicas_for(horizon, model))
            want = max(min_replicas, replicas_for(rate, model), keep)
        while len(serving) < want:
            serving.append(t if pool and pool.pop(0) <= t else t + model.cold_start_s)
        if len(serving) > want:
            serving.sort()
            del serving[want:]  # the least ready go first
        while len(pool) < warm:
            pool.append(t + model.cold_start_s)
        state = SimState(time=t, serving=tuple(serving), queue=queue)
        after, tick = step(state, rate, tick_s, model)
        queue = after.queue
        arrived = rate * tick_s
        second = result.seconds.setdefault(int(t + 1e-9), [0.0, 0.0])
        second[0] += arrived
        result.offered += arrived
        if tick.latency_s <= latency_target_s:
            second[1] += arrived
            result.met += arrived
        result.replica_seconds += (len(serving) + len(pool)) * tick_s
    return result


def clairvoyant_sized_replica_seconds(
    trace: Trace,
    replicas_for_rate: Callable[[float], int],
    lead_s: float,
    floor_pods: int,
    t0: float,
    t1: float,
) -> float:
    """The fewest pods an autoscaler that knows the trace could hold over [t0, t1)
    while sizing as `replicas_for_rate` does (e.g. the policy's p99 model) and
    waiting `lead_s` for each pod: each second it holds what the next `lead_s`
    seconds need (a pod started later would be late; one let go sooner would have to
    start again), plus `floor_pods` (a warm pool). The GPU-hour floor of a perfect
    forecast, against which the oracle's (no model, no cold start) can be read."""
    total = 0
    for t in range(math.floor(t0), math.ceil(t1)):
        ahead = range(t, t + max(1, math.ceil(lead_s) + 1))
        needed = max(replicas_for_rate(trace.mean_rate(s, s + 1)) for s in ahead)
        total += max(1, needed) + floor_pods
    return float(total)
