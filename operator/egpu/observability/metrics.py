"""Prometheus metrics of the operator: one registry, served on /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from egpu import __version__

REGISTRY = CollectorRegistry(auto_describe=True)

BUILD_INFO = Gauge(
    "egpu_operator_build_info", "Version of the running operator.", ["version"], registry=REGISTRY
)
RECONCILE_TOTAL = Counter(
    "egpu_reconcile_total",
    "Reconciliations by kind and outcome.",
    ["kind", "outcome"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "egpu_reconcile_seconds",
    "Time spent in one reconciliation.",
    ["kind"],
    registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
)
INVALID_OBJECTS = Gauge(
    "egpu_invalid_objects",
    "Objects the operator cannot act on (reported in their status), by kind.",
    ["kind"],
    registry=REGISTRY,
)


def serve_metrics(port: int, addr: str) -> None:
    """Serve /metrics from a daemon thread."""
    BUILD_INFO.labels(version=__version__).set(1)
    start_http_server(port, addr=addr, registry=REGISTRY)


PODS_BOUND = Counter("egpu_pods_bound_total", "Pods bound by the egpu binder.", registry=REGISTRY)
BIND_FAILURES = Counter(
    "egpu_bind_failures_total",
    "Gangs whose binding failed and was rolled back, by reason.",
    ["reason"],
    registry=REGISTRY,
)
PLACEMENT_SECONDS = Histogram(
    "egpu_placement_decision_seconds",
    "Time the placement engine took for one gang.",
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)
PENDING_GANGS = Gauge(
    "egpu_pending_gangs", "Gangs waiting for placement after the last cycle.", registry=REGISTRY
)
FREE_GPUS = Gauge(
    "egpu_free_gpus", "Healthy, unreserved GPUs on schedulable nodes.", registry=REGISTRY
)
LEDGER_AUDITS = Counter(
    "egpu_ledger_audits_total",
    "Audits of the ledger against one rebuilt from scratch out of the caches.",
    registry=REGISTRY,
)
LEDGER_AUDIT_MISMATCHES = Gauge(
    "egpu_ledger_audit_mismatches",
    "Nodes on which the ledger differed from a rebuild at the last audit (0: equal); the "
    "ledger is rebuilt when they differ.",
    registry=REGISTRY,
)
LEADER = Gauge(
    "egpu_leader",
    "1 while this replica holds the leader Lease and runs the loops.",
    registry=REGISTRY,
)
FENCED_GPUS = Gauge(
    "egpu_fenced_gpus",
    "GPUs the repair controller keeps out of placement (agents reported them unhealthy).",
    registry=REGISTRY,
)
FENCE_BREAKER_OPEN = Gauge(
    "egpu_fence_breaker_open",
    "1 while the fencing circuit breaker refuses to fence more nodes.",
    registry=REGISTRY,
)
FENCES_REFUSED = Counter(
    "egpu_fences_refused_total",
    "Nodes the circuit breaker kept from being fenced, by pass.",
    registry=REGISTRY,
)
REPAIRS = Counter(
    "egpu_repairs_total",
    "Repair decisions carried out, by action (ReplaceMember, RestartGang, GiveUp, Report).",
    ["action"],
    registry=REGISTRY,
)
