"""Backlog drain: after a surge, size for the arrivals plus clearing the queue in time.

While new replicas start, the queue keeps growing at the arrival rate the serving
capacity cannot take. Sized for the arrivals alone, the replicas would drain that
backlog only at their small spare rate, and every request queued behind it would
miss the latency target long after capacity arrived. So panic sizes for the arrivals
plus the backlog expected when the replicas asked for now are ready, cleared within
the latency target; once the queue is gone that surplus goes (see `decide`).
"""

from __future__ import annotations

from dataclasses import dataclass

from egpu.engines.autoscaling.model import MetricKind, MetricSample, ScalingPolicy


def projected_backlog(
    queued: float, arrival_rps: float, fast_capacity_rps: float, time_to_ready_s: float
) -> float:
    """The queue when capacity asked for now is ready: what waits now, plus what
    arrives beyond the capacity that serves meanwhile (ready and promoted warm)."""
    growth = max(0.0, arrival_rps - fast_capacity_rps) * max(0.0, time_to_ready_s)
    return max(0.0, queued) + growth


def drain_demand(arrival_rps: float, backlog: float, drain_s: float) -> float:
    """The request rate that serves the arrivals and clears `backlog` within `drain_s`."""
    return max(0.0, arrival_rps) + max(0.0, backlog) / drain_s


@dataclass(frozen=True)
class BacklogPlan:
    arrival_rps: float
    queued: float
    projected: float
    drain_s: float

    @property
    def demand(self) -> float:
        return drain_demand(self.arrival_rps, self.projected, self.drain_s)


def backlog_plan(
    policy: ScalingPolicy, newest: MetricSample, ready: int, warm: int, replica_rps: float
) -> BacklogPlan | None:
    """The drain sizing for the newest sample; None without a backlog to drain.

    Only LatencySLO reads arrivals and the queue. `replica_rps` is what one replica
    completes per second; ready and warm replicas count as serving within moments.
    """
    if policy.metric is not MetricKind.LATENCY_SLO or policy.latency_target_s is None:
        return None
    if newest.arrival_rate is None:
        return None
    arrival = max(0.0, newest.arrival_rate)
    queued = max(0.0, newest.queued or 0.0)
    fast = (ready + warm) * max(0.0, replica_rps)
    projected = projected_backlog(queued, arrival, fast, policy.time_to_ready_s)
    if projected <= 0.0:
        return None
    return BacklogPlan(arrival, queued, projected, policy.latency_target_s)
