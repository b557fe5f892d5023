"""One node's agent: read, judge, publish.

The judging is the pure health engine; this module keeps what the engine needs between
polls (the previous reading, the GPUs' hysteresis state), restores that state from the
Node's own annotation at start, and writes the Node when something changed (and at
every heartbeat, so a stalled agent shows)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client import Counter, Gauge

from egpu.domain.labels import (
    GPU_HEALTH_ANNOTATION,
    GPU_HEALTH_CONDITION,
    GPU_RESOURCE,
    INTERCONNECT_ANNOTATION,
)
from egpu.engines.health.report import HealthReport, build_report, parse_report, report_text
from egpu.engines.health.risk import Risk, RiskPolicy, risk_of
from egpu.engines.health.rules import (
    Finding,
    GpuHealth,
    HealthPolicy,
    Severity,
    advance,
    findings,
    stalled,
)
from egpu.engines.health.samples import (
    GpuSample,
    NodeReading,
    XidEvent,
    interconnect_annotation,
    parse_reading,
)
from egpu.kube.client import STRATEGIC_PATCH, ApiError, KubeClient, TransportError, path_for

log = logging.getLogger("egpu.agent")

GPU_HEALTHY = Gauge("egpu_gpu_healthy", "1 when the GPU is healthy", ["node", "gpu", "uuid"])
GPU_FAULTS = Counter("egpu_gpu_faults_total", "Faults found, by check", ["node", "gpu", "check"])
GPU_WARNINGS = Counter(
    "egpu_gpu_warnings_total", "Warnings (precursors) found, by check", ["node", "gpu", "check"]
)
GPU_RISK = Gauge("egpu_gpu_risk_score", "Risk score from precursors (0..1)", ["node", "gpu"])
GPU_TEMPERATURE = Gauge("egpu_gpu_temperature_celsius", "GPU temperature", ["node", "gpu"])
GPU_POWER = Gauge("egpu_gpu_power_watts", "GPU power draw", ["node", "gpu"])
GPU_ECC = Gauge(
    "egpu_gpu_ecc_errors", "ECC error counters as NVML reports them", ["node", "gpu", "kind"]
)
AGENT_LAST_READING = Gauge(
    "egpu_agent_last_reading_timestamp_seconds", "When NVML last answered", ["node"]
)
AGENT_PUBLISH_FAILURES = Counter(
    "egpu_agent_publish_failures_total", "Node writes that failed", ["node"]
)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition_of(report: HealthReport, now: float) -> dict[str, Any]:
    """The Node condition: GPUHealthy True, or False naming the bad GPUs and why."""
    if not report.unhealthy:
        status, reason, message = "True", "AllGPUsHealthy", f"{report.gpu_count} GPUs healthy"
    else:
        status, reason = "False", "GPUFault"
        message = "; ".join(
            f"GPU {i}: {', '.join(h.reasons[:2]) or 'recovering'}"
            for i, h in sorted(report.unhealthy.items())
        )[:1024]
    return {
        "type": GPU_HEALTH_CONDITION,
        "status": status,
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": _iso(now),
    }


@dataclass
class NodeAgent:
    node: str
    read: Callable[[float], dict[str, Any]]
    policy: HealthPolicy = field(default_factory=HealthPolicy)
    publish_interconnect: bool = True
    heartbeat_s: float = 60.0
    read_timeout_s: float = 10.0
    read_in_thread: bool = True  # NVML can block; a simulated read cannot
    states: dict[int, GpuHealth] = field(default_factory=dict)
    gpu_count: int | None = None
    previous: NodeReading | None = None
    last_reading_at: float | None = None
    last_published: tuple[str, str] | None = None
    last_publish_at: float = 0.0
    interconnect: str | None = None
    transitioned_at: float | None = None
    risk_policy: RiskPolicy = field(default_factory=RiskPolicy)
    # Simulated nodes: the GPU count comes from the Node. (Real ones: from NVML and the
    # last report; allocatable can differ from the physical GPUs with MIG or sharing.)
    count_from_node: bool = False
    history: dict[int, deque[GpuSample]] = field(default_factory=dict)
    risks: dict[int, Risk] = field(default_factory=dict)
    _xids: dict[int, list[XidEvent]] = field(default_factory=dict)

    def restore(self, node: dict[str, Any]) -> None:
        """Carry on from what this node's agent published before (a restart)."""
        annotations = (node.get("metadata") or {}).get("annotations") or {}
        if self.count_from_node:  # simulated: the node's GPUs are the ones simulated
            allocatable = (node.get("status") or {}).get("allocatable") or {}
            count = str(allocatable.get(GPU_RESOURCE) or "0")
            if count.isdigit() and int(count):
                self.gpu_count = int(count)  # to answer for, even if NVML never does
        try:
            report = parse_report(annotations.get(GPU_HEALTH_ANNOTATION))
        except ValueError as exc:
            log.warning("node %s: ignoring its gpu-health annotation: %s", self.node, exc)
            return
        if report is not None:
            self.states = report.states()
            self.gpu_count = report.gpu_count
            self.last_reading_at = report.checked_at

    def judge(self, raw: dict[str, Any] | None, now: float) -> tuple[HealthReport, list[Finding]]:
        """One round of checks on a reading (None: NVML did not answer in time)."""
        reading: NodeReading | None = None
        found: list[Finding]
        if raw is not None:
            try:
                reading = parse_reading(raw)
            except ValueError as exc:
                log.error("node %s: unreadable NVML reading: %s", self.node, exc)
        if reading is not None and reading.nvml_error is None:
            self.gpu_count = max(self.gpu_count or 0, len(reading.samples))
            self.last_reading_at = now
        count = self.gpu_count or 0
        if reading is None:
            found = stalled(count, self.last_reading_at, self.policy, now)
        else:
            found = findings(reading, self.previous, self.policy, now, count)
            if reading.nvml_error is None:
                self.previous = reading
                if reading.gpus and len(reading.gpus) == count:
                    self.interconnect = json.dumps(
                        interconnect_annotation(reading.gpus), separators=(",", ":")
                    )
                self._gauges(reading)
        self.states = {h.index: h for h in advance(self.states, found, self.policy, now, count)}
        if reading is not None and reading.nvml_error is None:
            for sample in reading.samples:
                self._remember(sample, now)
        risks = {i: r for i, r in self.risks.items() if r.at_risk(self.risk_policy) and i < count}
        for f in found:
            counter = GPU_FAULTS if f.severity is Severity.FAULT else GPU_WARNINGS
            counter.labels(self.node, str(f.gpu), f.check.value).inc()
        uuids = {g.index: g.uuid for g in (self.previous.gpus if self.previous else ())}
        for i, h in self.states.items():
            GPU_HEALTHY.labels(self.node, str(i), uuids.get(i, "")).set(1 if h.healthy else 0)
        return build_report(now, self.states.values(), risks), found

    def _remember(self, sample: GpuSample, now: float) -> None:
        """Keep one sample per `RiskPolicy.sample_every_s` per GPU for the risk score (XIDs in
        between carried into the next one kept), and score the GPU when one is kept."""
        i = sample.index
        kept = self.history.setdefault(i, deque())
        xids = self._xids.setdefault(i, [])
        xids.extend(sample.xids)
        if kept and sample.timestamp - kept[-1].timestamp < self.risk_policy.sample_every_s:
            return
        kept.append(replace(sample, xids=tuple(xids)))
        xids.clear()
        while kept and now - kept[0].timestamp > self.risk_policy.window_s:
            kept.popleft()
        risk = risk_of(kept, self.risk_policy, now)
        self.risks[i] = risk
        GPU_RISK.labels(self.node, str(i)).set(risk.score)

    def _gauges(self, reading: NodeReading) -> None:
        AGENT_LAST_READING.labels(self.node).set(reading.timestamp)
        for s in reading.samples:
            gpu = str(s.index)
            if s.temperature_c is not None:
                GPU_TEMPERATURE.labels(self.node, gpu).set(s.temperature_c)
            if s.power_mw is not None:
                GPU_POWER.labels(self.node, gpu).set(s.power_mw / 1000)
            for kind, value in (
                ("volatile_sbe", s.ecc_volatile.corrected),
                ("volatile_dbe", s.ecc_volatile.uncorrected),
                ("aggregate_sbe", s.ecc_aggregate.corrected),
                ("aggregate_dbe", s.ecc_aggregate.uncorrected),
            ):
                if value is not None:
                    GPU_ECC.labels(self.node, gpu, kind).set(value)

    async def poll(self, now: float) -> HealthReport:
        try:
            if self.read_in_thread:
                raw = await asyncio.wait_for(asyncio.to_thread(self.read, now), self.read_timeout_s)
            else:
                raw = self.read(now)
        except TimeoutError:
            log.warning("node %s: NVML did not answer within %ss", self.node, self.read_timeout_s)
            raw = None
        report, _ = self.judge(raw, now)
        return report

    def due(self, report: HealthReport, now: float) -> bool:
        content = (_content(report), self.interconnect or "")
        return content != self.last_published or now - self.last_publish_at >= self.heartbeat_s

    async def publish(self, client: KubeClient, report: HealthReport, now: float) -> None:
        annotations = {GPU_HEALTH_ANNOTATION: report_text(report)}
        if self.publish_interconnect and self.interconnect is not None:
            annotations[INTERCONNECT_ANNOTATION] = self.interconnect
        condition = condition_of(report, now)
        content = (_content(report), self.interconnect or "")
        if self.last_published is None or content[0] != self.last_published[0]:
            condition["lastTransitionTime"] = _iso(now)
        try:
            await client.patch(
                path_for("v1", "nodes", None, self.node), {"metadata": {"annotations": annotations}}
            )
            await client.patch(
                path_for("v1", "nodes", None, self.node, "status"),
                {"status": {"conditions": [condition]}},
                content_type=STRATEGIC_PATCH,
            )
        except (ApiError, TransportError) as exc:
            AGENT_PUBLISH_FAILURES.labels(self.node).inc()
            log.warning("node %s: publishing health failed: %s", self.node, exc)
            return
        self.last_published, self.last_publish_at = content, now


def _content(report: HealthReport) -> str:
    """What changes a report's meaning (not its time)."""
    return json.dumps(
        {str(i): list(h.reasons) for i, h in sorted(report.unhealthy.items())}
        | {"count": report.gpu_count, "atRisk": sorted(report.at_risk)},
        sort_keys=True,
    )
