"""M/M/c (Erlang C) sizing for a latency-percentile SLO.

Each replica works on `slots` requests at once (slots = throughput x service time,
Little's law), so n replicas are an M/M/c queue with c = n x slots servers of rate
mu = 1 / service_time. A request's latency is taken as its waiting time plus the
mean service time; the SLO holds when

    P(wait > target - service_time) = C(c, a) * exp(-(c*mu - lambda) * budget) <= 1 - p

with a = lambda / mu and C the Erlang C probability of waiting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from egpu.engines.autoscaling.model import ServiceStats


def erlang_b_step(previous: float, servers: int, offered_load: float) -> float:
    """Erlang B for `servers` from Erlang B for servers - 1 (the stable recursion)."""
    return offered_load * previous / (servers + offered_load * previous)


def erlang_c(servers: int, offered_load: float) -> float:
    """Probability that an arrival waits in M/M/c; 1.0 when the queue is unstable."""
    if offered_load <= 0.0:
        return 0.0
    if servers <= offered_load:
        return 1.0
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = erlang_b_step(blocking, k, offered_load)
    return _c_from_b(blocking, servers, offered_load)


def _c_from_b(blocking: float, servers: int, offered_load: float) -> float:
    rho = offered_load / servers
    return blocking / (1.0 - rho * (1.0 - blocking))


def wait_exceedance(servers: int, arrival_rate: float, service_rate: float, t: float) -> float:
    """P(wait > t) for M/M/c."""
    if arrival_rate <= 0.0:
        return 0.0
    drain = servers * service_rate - arrival_rate
    if drain <= 0.0:
        return 1.0
    return erlang_c(servers, arrival_rate / service_rate) * math.exp(-drain * max(0.0, t))


def wait_percentile(servers: int, arrival_rate: float, service_rate: float, p: float) -> float:
    """The p-quantile of the waiting time in M/M/c (math.inf when unstable)."""
    if arrival_rate <= 0.0:
        return 0.0
    drain = servers * service_rate - arrival_rate
    if drain <= 0.0:
        return math.inf
    waits = erlang_c(servers, arrival_rate / service_rate)
    if waits <= 1.0 - p:
        return 0.0
    return math.log(waits / (1.0 - p)) / drain


@dataclass(frozen=True)
class SloSizing:
    """Result of sizing for the SLO. `reachable` is False when even no queueing at all
    would miss the target (service time alone exceeds it); the sizing then keeps the
    share of requests that wait at all under 1 - percentile."""

    replicas: int
    slots_per_replica: int
    wait_budget_s: float
    reachable: bool


def slots_and_rate(service: ServiceStats) -> tuple[int, float] | None:
    """(servers per replica, per-server service rate), or None without measurements."""
    time_s, throughput = service.service_time_s, service.replica_throughput_rps
    if time_s is not None and throughput is not None:
        return max(1, round(throughput * time_s)), 1.0 / time_s
    if time_s is not None:
        return 1, 1.0 / time_s
    if throughput is not None:
        return 1, throughput
    return None


def replicas_for_latency_slo(
    arrival_rate: float,
    service: ServiceStats,
    latency_target_s: float,
    percentile: float,
    limit: int,
) -> SloSizing | None:
    """Fewest replicas (at most `limit`) meeting the SLO; None without service stats.

    Returns `limit` when `limit` replicas are still not enough.
    """
    shape = slots_and_rate(service)
    if shape is None:
        return None
    slots, mu = shape
    service_time = 1.0 / mu
    budget = latency_target_s - service_time
    reachable = budget > 0.0
    allowed_miss = 1.0 - percentile
    if arrival_rate <= 0.0:
        return SloSizing(0, slots, budget, reachable)
    offered = arrival_rate / mu
    # Erlang B is carried server by server, so the search costs O(servers) in all.
    blocking = 1.0
    servers_done = 0
    for replicas in range(1, limit + 1):
        servers = replicas * slots
        for k in range(servers_done + 1, servers + 1):
            blocking = erlang_b_step(blocking, k, offered)
        servers_done = servers
        if servers <= offered:
            continue
        waits = _c_from_b(blocking, servers, offered)
        drain = servers * mu - arrival_rate
        miss = waits * math.exp(-drain * budget) if reachable else waits
        if miss <= allowed_miss:
            return SloSizing(replicas, slots, budget, reachable)
    return SloSizing(limit, slots, budget, reachable)


def miss_share(
    replicas: int,
    arrival_rate: float,
    queued: float,
    service: ServiceStats,
    latency_target_s: float,
    horizon_s: float,
) -> float | None:
    """The share of the requests arriving over the next `horizon_s` expected to miss
    the latency target with `replicas` ready; None without measurements.

    All of them when nothing is ready, when the service time alone exceeds the
    target, or when the backlog ahead already takes longer than the wait budget to
    drain. Overloaded, there is no steady state: the backlog grows, and the requests
    that arrive once it outgrows the wait budget miss. Otherwise the steady-state
    M/M/c share that waits longer than the budget.
    """
    shape = slots_and_rate(service)
    if shape is None:
        return None
    if arrival_rate <= 0.0:
        return 0.0
    slots, mu = shape
    capacity = replicas * slots * mu
    budget = latency_target_s - 1.0 / mu
    if capacity <= 0.0 or budget <= 0.0:
        return 1.0
    backlog = max(0.0, queued)
    room = budget * capacity - backlog  # more queued than this waits over the budget
    if room < 0.0:
        return 1.0
    growth = arrival_rate - capacity
    if growth >= 0.0:
        if horizon_s <= 0.0:
            return 0.0
        return max(0.0, 1.0 - room / (growth * horizon_s)) if growth > 0.0 else 0.0
    return min(1.0, wait_exceedance(replicas * slots, arrival_rate, mu, budget))
