"""The in-place resize decision: per container, per resource, then for the pod.

Order of rules for one resource: pressure (urgent growth) > bounds correction >
growth on usage > stabilised shrink > hold. Limits then follow the request by the
original ratio, Guaranteed pairs stay equal, and a lowered memory limit keeps a margin
above the peak working set. The pod verdict checks QoS and the node's free room.
"""

from __future__ import annotations

from dataclasses import dataclass

from egpu.engines.resize import rules
from egpu.engines.resize.model import (
    GIB,
    ContainerResources,
    ContainerState,
    PodResizeDecision,
    PodResizeInput,
    QoSClass,
    Reason,
    Recommendation,
    ResizeMode,
    ResizePolicy,
    ResourceDecision,
    ResourceKind,
    Verdict,
)
from egpu.engines.resize.qos import pod_qos_class
from egpu.engines.resize.usage import UsageSummary, summarise_usage


def _show(kind: ResourceKind, value: float | None) -> str:
    """Human units for messages: millicores, or GiB with two decimals."""
    if value is None:
        return "unset"
    if kind is ResourceKind.CPU:
        return f"{round(value)}m"
    return f"{value / GIB:.2f}Gi"


@dataclass(frozen=True, slots=True)
class _RequestChoice:
    request: int
    reason: Reason
    why: str
    urgent: bool = False


def _choose_request(
    kind: ResourceKind,
    request: int,
    limit: int | None,
    usage: UsageSummary,
    policy: ResizePolicy,
    may_shrink: bool,
) -> _RequestChoice:
    bounds = policy.for_kind(kind)
    step = bounds.step
    peak = usage.recent_peak(kind)
    wanted = rules.wanted_request(peak, bounds.target_utilization)
    peak_text = f"peak {_show(kind, peak)} over {policy.scale_up_lookback_s:g}s"

    if kind is ResourceKind.MEMORY:
        pressure = rules.memory_under_pressure(peak, limit, policy.memory_pressure_ratio)
        pressure_reason = Reason.MEMORY_PRESSURE
        if pressure and limit is not None:
            # The grown limit (request * ratio) must clear the peak by the margin.
            floor = rules.memory_limit_floor(peak, policy.memory_limit_margin, step)
            wanted = max(wanted, -(-floor * request // limit))
    else:
        pressure = rules.cpu_under_pressure(
            usage.cpu_throttled_fraction,
            peak,
            limit,
            throttling_threshold=policy.cpu_throttling_threshold,
            usage_ratio=policy.cpu_pressure_ratio,
        )
        pressure_reason = Reason.CPU_THROTTLING

    if pressure:
        grown = rules.clamp(rules.pressure_growth(request, wanted, step), bounds.min, bounds.max)
        if grown > request:
            return _RequestChoice(grown, pressure_reason, f"pressure, {peak_text}", urgent=True)
        return _RequestChoice(
            request, Reason.AT_MAXIMUM, f"pressure but at maximum, {peak_text}", urgent=True
        )

    if not bounds.min <= request <= bounds.max:
        base = (
            rules.round_up_to_step(wanted, step)
            if rules.grows_beyond_band(request, wanted, policy.hysteresis)
            else request
        )
        fixed = rules.clamp(base, bounds.min, bounds.max)
        return _RequestChoice(fixed, Reason.OUT_OF_BOUNDS, "brought within policy bounds")

    if rules.grows_beyond_band(request, wanted, policy.hysteresis):
        grown = rules.clamp(rules.round_up_to_step(wanted, step), bounds.min, bounds.max)
        if grown > request:
            return _RequestChoice(grown, Reason.SCALE_UP, peak_text)
        return _RequestChoice(request, Reason.AT_MAXIMUM, f"at maximum, {peak_text}")

    window_peak = usage.window_peak(kind)
    window_wanted = wanted if window_peak is None else window_peak / bounds.target_utilization
    if rules.shrinks_beyond_band(request, window_wanted, policy.hysteresis):
        if window_peak is None or not may_shrink:
            return _RequestChoice(
                request, Reason.SCALE_DOWN_STABILIZING, "waiting out the stabilisation window"
            )
        shrunk = rules.stabilised_shrink(request, window_wanted, step, policy.max_scale_down_steps)
        shrunk = max(shrunk, bounds.min)
        if shrunk < request:
            window_text = (
                f"peak {_show(kind, window_peak)} over {policy.scale_down_stabilization_s:g}s"
            )
            return _RequestChoice(shrunk, Reason.SCALE_DOWN, window_text)

    return _RequestChoice(request, Reason.WITHIN_BAND, f"within band, {peak_text}")


def decide_resource(
    kind: ResourceKind,
    resources: ContainerResources,
    usage: UsageSummary | None,
    policy: ResizePolicy,
    *,
    qos: QoSClass,
    may_shrink: bool,
) -> ResourceDecision:
    """New request and limit for one resource; `resources` as the API server stores
    them (requests defaulted)."""
    request, limit = resources.request(kind), resources.limit(kind)

    def hold(reason: Reason, message: str, urgent: bool = False) -> ResourceDecision:
        return ResourceDecision(kind, request, limit, request, limit, reason, message, urgent)

    if request is None or request <= 0 or (limit is not None and limit <= 0):
        # Adding a resource the container never had could change the QoS class; a
        # zero counts as absent, as it does for QoS.
        return hold(Reason.NOT_SET, f"{kind}: not set, left alone")
    if usage is None:
        return hold(Reason.NO_METRICS, f"{kind}: no recent usage samples")

    choice = _choose_request(kind, request, limit, usage, policy, may_shrink)
    step = policy.for_kind(kind).step
    new_request = choice.request
    new_limit = rules.scale_limit(new_request, request, limit, step)
    if qos is QoSClass.GUARANTEED:
        new_limit = new_request
    if kind is ResourceKind.MEMORY and new_limit is not None and limit is not None:
        peak = max(usage.recent_memory_peak, usage.window_memory_peak or 0.0)
        floor = rules.memory_limit_floor(peak, policy.memory_limit_margin, step)
        new_limit = rules.protect_memory_limit(new_limit, limit, floor)
        if qos is QoSClass.GUARANTEED:
            new_request = new_limit

    if (new_request, new_limit) == (request, limit):
        message = f"{kind} {_show(kind, request)} kept: {choice.why}"
    else:
        message = (
            f"{kind} {_show(kind, request)}/{_show(kind, limit)} -> "
            f"{_show(kind, new_request)}/{_show(kind, new_limit)} (request/limit): {choice.why}"
        )
    return ResourceDecision(
        kind, request, limit, new_request, new_limit, choice.reason, message, choice.urgent
    )


def recommend_container(
    container: ContainerState,
    policy: ResizePolicy,
    *,
    now: float,
    qos: QoSClass,
    last_resize_at: float | None,
) -> Recommendation:
    window = policy.scale_down_stabilization_s
    usage = summarise_usage(
        container.samples,
        now,
        lookback_s=policy.scale_up_lookback_s,
        window_s=window,
        last_resize_at=last_resize_at,
    )
    may_shrink = last_resize_at is None or now - last_resize_at >= window
    resources = container.resources.with_defaulted_requests()
    cpu, memory = (
        decide_resource(kind, resources, usage, policy, qos=qos, may_shrink=may_shrink)
        for kind in (ResourceKind.CPU, ResourceKind.MEMORY)
    )
    return Recommendation(container.name, cpu, memory)


def _request_delta(recommendations: tuple[Recommendation, ...], kind: ResourceKind) -> int:
    total = 0
    for rec in recommendations:
        decision = rec.cpu if kind is ResourceKind.CPU else rec.memory
        total += (decision.new_request or 0) - (decision.current_request or 0)
    return total


def decide_resize(pod: PodResizeInput, now: float) -> PodResizeDecision:
    """The engine's entry point: per-container recommendations and the pod verdict."""
    policy = pod.policy
    qos = pod.qos or pod_qos_class(c.resources for c in pod.containers)

    def nothing(reason: Reason, message: str) -> PodResizeDecision:
        return PodResizeDecision(Verdict.NO_CHANGE, reason, message, qos)

    if policy.mode is ResizeMode.OFF:
        return nothing(Reason.MODE_OFF, "resize mode is Off")
    if qos is QoSClass.BEST_EFFORT:
        return nothing(Reason.BEST_EFFORT, "BestEffort pods cannot gain resources in place")
    if pod.resize_in_progress:
        return nothing(Reason.RESIZE_IN_PROGRESS, "waiting for the previous resize to settle")

    recommendations = tuple(
        recommend_container(container, policy, now=now, qos=qos, last_resize_at=pod.last_resize_at)
        for container in pod.containers
    )
    changes = [r for r in recommendations if r.changed]
    if not changes:
        return PodResizeDecision(
            Verdict.NO_CHANGE,
            Reason.NO_CHANGE,
            "no container needs a resize",
            qos,
            recommendations,
        )

    before = [r.current for r in recommendations]
    after = [r.target for r in recommendations]
    if pod_qos_class(after) != pod_qos_class(before):
        return PodResizeDecision(
            Verdict.NO_CHANGE,
            Reason.QOS_WOULD_CHANGE,
            "the resize would change the pod's QoS class; refused",
            qos,
            recommendations,
        )

    cpu_delta = _request_delta(recommendations, ResourceKind.CPU)
    memory_delta = _request_delta(recommendations, ResourceKind.MEMORY)
    fits = rules.fits_node(cpu_delta, memory_delta, pod.node)
    urgent = any(r.urgent for r in changes)
    summary = "; ".join(r.message for r in changes)

    if policy.mode is ResizeMode.RECOMMEND:
        verdict, reason = Verdict.RECOMMEND, Reason.RECOMMENDED
    elif fits:
        verdict, reason = Verdict.APPLY, Reason.FITS_NODE
    else:
        verdict, reason = Verdict.DOES_NOT_FIT, Reason.INSUFFICIENT_NODE_RESOURCES
        summary = (
            f"node lacks room: cpu {cpu_delta:+d}m of "
            f"{_show(ResourceKind.CPU, pod.node.free_cpu_millicores)} free, memory "
            f"{memory_delta / GIB:+.2f}Gi of "
            f"{_show(ResourceKind.MEMORY, pod.node.free_memory_bytes)} free; {summary}"
        )
    return PodResizeDecision(
        verdict,
        reason,
        summary,
        qos,
        recommendations,
        fits_node=fits,
        cpu_delta_millicores=cpu_delta,
        memory_delta_bytes=memory_delta,
        urgent=urgent,
    )
