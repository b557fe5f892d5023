"""Demand (policy units) -> serving replicas."""

from __future__ import annotations

import math
from dataclasses import dataclass

from egpu.engines.autoscaling.model import MetricKind, ScalingPolicy, ServiceStats
from egpu.engines.autoscaling.queueing import replicas_for_latency_slo, slots_and_rate

# Ratios within this of an integer are that integer: 3 x 1/3 must not round up to 2.
_EPSILON = 1e-9

METRIC_NOUN: dict[MetricKind, str] = {
    MetricKind.CONCURRENCY: "concurrency",
    MetricKind.QUEUE_LENGTH: "queue length",
    MetricKind.TOKENS_PER_SECOND: "tokens/s",
    MetricKind.GPU_UTILIZATION: "GPU utilisation",
    MetricKind.LATENCY_SLO: "request rate (arrivals + backlog, req/s)",
}


def fmt(value: float) -> str:
    """A number as the decisions' reasons write it."""
    return f"{value:.4g}"


def ceil_replicas(exact: float) -> int:
    return max(0, math.ceil(exact - _EPSILON))


@dataclass(frozen=True)
class Sizer:
    """Sizes replicas for a demand with one policy and one set of service measurements.

    Ratio kinds need demand / target replicas (fractional, so the tolerance band can
    see how far off the current count is). LatencySLO uses the Erlang C model when a
    service time or throughput is measured, and falls back to arrival / target.
    """

    policy: ScalingPolicy
    service: ServiceStats | None

    @property
    def search_limit(self) -> int:
        # Far enough above max_replicas that "how much over max" is still reported.
        return max(4 * self.policy.max_replicas, 64)

    @property
    def uses_queueing_model(self) -> bool:
        return (
            self.policy.metric is MetricKind.LATENCY_SLO
            and self.service is not None
            and slots_and_rate(self.service) is not None
        )

    def exact(self, demand: float) -> float:
        demand = max(0.0, demand)
        policy = self.policy
        if self.uses_queueing_model:
            assert self.service is not None and policy.latency_target_s is not None
            sized = replicas_for_latency_slo(
                demand,
                self.service,
                policy.latency_target_s,
                policy.latency_percentile,
                self.search_limit,
            )
            if sized is not None:
                return float(sized.replicas)
        return demand / policy.target

    def replicas(self, demand: float) -> int:
        return ceil_replicas(self.exact(demand))
