"""The resize engine end to end: per-container recommendations and the pod verdict."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import pytest

from egpu.engines.resize import (
    GIB,
    ContainerResources,
    ContainerState,
    NodeRoom,
    PodResizeDecision,
    PodResizeInput,
    QoSClass,
    Reason,
    ResizeMode,
    ResizePolicy,
    ResourcePolicy,
    UsageSample,
    Verdict,
    build_resize_patch,
    container_resources_from_k8s,
    decide_resize,
    pod_qos_class,
)

pytestmark = pytest.mark.unit

NOW = 1_000_000.0
ROOMY = NodeRoom(free_cpu_millicores=64_000, free_memory_bytes=256 * GIB)
AUTO = ResizePolicy(mode=ResizeMode.AUTO)
BURSTABLE = ContainerResources(2000, 4000, 4 * GIB, 8 * GIB)
GUARANTEED = ContainerResources(2000, 2000, 4 * GIB, 4 * GIB)


def samples(
    cpu: float | Callable[[int], float],
    memory: float | Callable[[int], float],
    *,
    span_s: float = 600.0,
    every_s: float = 15.0,
    throttled: float | None = None,
    end: float = NOW,
) -> tuple[UsageSample, ...]:
    """Samples from end - span to end; cpu/memory are constants or functions of the index."""
    count = int(span_s // every_s) + 1
    out = []
    for i in range(count):
        at = end - span_s + i * every_s
        c = cpu(i) if callable(cpu) else cpu
        m = memory(i) if callable(memory) else memory
        out.append(UsageSample(at, c, m, throttled))
    return tuple(out)


def decide(
    resources: ContainerResources,
    usage: tuple[UsageSample, ...],
    *,
    policy: ResizePolicy = AUTO,
    node: NodeRoom = ROOMY,
    last_resize_at: float | None = None,
    qos: QoSClass | None = None,
    now: float = NOW,
) -> PodResizeDecision:
    pod = PodResizeInput(
        containers=(ContainerState("main", resources, usage),),
        policy=policy,
        node=node,
        last_resize_at=last_resize_at,
        qos=qos,
    )
    return decide_resize(pod, now)


def noisy(center: float, spread: float) -> Callable[[int], float]:
    """A deterministic wobble of +-spread around center."""
    pattern = (0.0, 1.0, -1.0, 0.5, -0.5, 0.8, -0.8)
    return lambda i: center * (1 + spread * pattern[i % len(pattern)])


# --- hysteresis and growth ------------------------------------------------------------


def test_usage_at_target_with_noise_changes_nothing() -> None:
    # 1400m / 0.7 = 2000m and 3.2 GiB / 0.8 = 4 GiB: exactly the current requests.
    decision = decide(BURSTABLE, samples(noisy(1400, 0.05), noisy(3.2 * GIB, 0.05)))
    assert decision.verdict is Verdict.NO_CHANGE
    (rec,) = decision.recommendations
    assert (rec.cpu.reason, rec.memory.reason) == (Reason.WITHIN_BAND, Reason.WITHIN_BAND)
    assert not rec.changed


def test_bursty_usage_across_a_step_boundary_never_flaps() -> None:
    """Replay 60 decisions a minute apart, applying each change.

    Quiet minutes want ~2430m (2500m would do), busy ones ~2860m (3000m): sizing a
    shrink on anything but the window's peak would bounce between the two.
    """
    resources = BURSTABLE
    last_resize: float | None = None
    history: list[UsageSample] = []
    applied: list[int | None] = []
    for minute in range(60):
        now = NOW + minute * 60
        level = noisy(2000 if minute // 2 % 2 else 1700, 0.02)  # two quiet, two busy
        history += [UsageSample(now - 60 + s, level(s // 15), 3.2 * GIB) for s in range(15, 61, 15)]
        decision = decide(resources, tuple(history), last_resize_at=last_resize, now=now)
        if decision.verdict is Verdict.APPLY:
            resources = decision.recommendations[0].target
            applied.append(resources.cpu_request)
            last_resize = now
    # Up in the first quiet minutes, up again in the first busy ones, then never again.
    assert applied == [2500, 3000]


def test_usage_above_the_band_grows_to_the_step_and_keeps_the_limit_ratio() -> None:
    decision = decide(BURSTABLE, samples(2100, 3.2 * GIB))  # wants 3000m
    assert decision.verdict is Verdict.APPLY
    (rec,) = decision.recommendations
    assert (rec.cpu.new_request, rec.cpu.new_limit) == (3000, 6000)
    assert rec.cpu.reason is Reason.SCALE_UP
    assert not decision.urgent
    assert not rec.memory.changed


def test_new_values_are_rounded_up_to_steps() -> None:
    # cpu 1500 / 0.7 = 2143m -> 2500m; memory 5 GiB / 0.8 = 6.25 GiB -> 7 GiB.
    resources = ContainerResources(1000, None, 2 * GIB, None)
    (rec,) = decide(resources, samples(1500, 5 * GIB)).recommendations
    assert rec.target == ContainerResources(2500, None, 7 * GIB, None)


def test_growth_is_clamped_to_the_maximum() -> None:
    policy = dataclasses.replace(
        AUTO, cpu=ResourcePolicy(min=500, max=3000, step=500, target_utilization=0.7)
    )
    (rec,) = decide(BURSTABLE, samples(4200, 3.2 * GIB), policy=policy).recommendations
    assert rec.cpu.new_request == 3000
    at_max = dataclasses.replace(BURSTABLE, cpu_request=3000, cpu_limit=6000)
    (held,) = decide(at_max, samples(4200, 3.2 * GIB), policy=policy).recommendations
    assert held.cpu.reason is Reason.AT_MAXIMUM
    assert not held.cpu.changed


def test_requests_outside_the_bounds_are_brought_in() -> None:
    below = ContainerResources(200, None, 4 * GIB, None)
    (rec,) = decide(below, samples(50, 3.2 * GIB)).recommendations
    assert (rec.cpu.new_request, rec.cpu.reason) == (500, Reason.OUT_OF_BOUNDS)

    policy = dataclasses.replace(
        AUTO, cpu=ResourcePolicy(min=500, max=4000, step=500, target_utilization=0.7)
    )
    above = ContainerResources(8000, 16_000, 4 * GIB, None)
    (rec,) = decide(above, samples(4000, 3.2 * GIB), policy=policy).recommendations
    assert (rec.cpu.new_request, rec.cpu.new_limit) == (4000, 8000)


# --- pressure -------------------------------------------------------------------------


def test_memory_near_the_limit_grows_at_once_and_is_urgent() -> None:
    # 3.7 GiB of a 4 GiB limit (92.5%), a resize 10 s ago: pressure ignores cooldowns.
    decision = decide(GUARANTEED, samples(1400, 3.7 * GIB), last_resize_at=NOW - 10)
    assert decision.verdict is Verdict.APPLY
    assert decision.urgent
    (rec,) = decision.recommendations
    assert rec.memory.reason is Reason.MEMORY_PRESSURE
    assert rec.memory.urgent
    assert rec.memory.new_request == rec.memory.new_limit == 5 * GIB


def test_memory_pressure_grows_enough_to_clear_the_margin() -> None:
    # A 4/8 GiB container at 7.3 GiB: the new limit must leave 25% above the peak.
    (rec,) = decide(BURSTABLE, samples(1400, 7.3 * GIB)).recommendations
    assert rec.memory.new_request is not None and rec.memory.new_limit is not None
    assert rec.memory.new_request >= 5 * GIB  # at least one step
    assert rec.memory.new_limit >= 7.3 * GIB * 1.25
    assert rec.memory.new_limit == 2 * rec.memory.new_request  # ratio kept


def test_cpu_throttling_grows_even_within_the_band() -> None:
    # 1300m wants 1857m, inside the band of 2000m; 30% throttled periods say otherwise.
    decision = decide(GUARANTEED, samples(1300, 3.2 * GIB, throttled=0.3))
    (rec,) = decision.recommendations
    assert rec.cpu.reason is Reason.CPU_THROTTLING
    assert (rec.cpu.new_request, rec.cpu.new_limit) == (2500, 2500)
    assert decision.urgent


def test_throttling_from_before_the_last_resize_is_ignored() -> None:
    usage = samples(1300, 3.2 * GIB, throttled=0.3, end=NOW - 20)
    (rec,) = decide(GUARANTEED, usage, last_resize_at=NOW - 10).recommendations
    assert not rec.cpu.changed


def test_cpu_near_the_limit_without_throttling_data_is_pressure() -> None:
    (rec,) = decide(GUARANTEED, samples(1850, 3.2 * GIB)).recommendations
    assert rec.cpu.reason is Reason.CPU_THROTTLING
    assert rec.cpu.new_request == 3000  # 1850 / 0.7 = 2643 -> 3000


# --- stabilised shrink ----------------------------------------------------------------

BIG = ContainerResources(4000, 8000, 4 * GIB, 8 * GIB)


def test_idle_container_shrinks_one_step_after_the_window() -> None:
    decision = decide(BIG, samples(700, 3.2 * GIB))  # wants 1000m
    (rec,) = decision.recommendations
    assert rec.cpu.reason is Reason.SCALE_DOWN
    assert (rec.cpu.new_request, rec.cpu.new_limit) == (3500, 7000)
    assert not decision.urgent


def test_no_shrink_within_the_window_after_a_resize() -> None:
    (rec,) = decide(BIG, samples(700, 3.2 * GIB), last_resize_at=NOW - 100).recommendations
    assert rec.cpu.reason is Reason.SCALE_DOWN_STABILIZING
    assert not rec.changed


def test_no_shrink_without_a_full_window_of_history() -> None:
    (rec,) = decide(BIG, samples(700, 3.2 * GIB, span_s=120)).recommendations
    assert rec.cpu.reason is Reason.SCALE_DOWN_STABILIZING
    assert not rec.changed


def test_shrink_sizes_on_the_peak_seen_in_the_window() -> None:
    def spike_at(index: int) -> Callable[[int], float]:
        return lambda i: 2800.0 if i == index else 700.0

    # samples() spans 600 s in 15 s steps: index 27 is 195 s ago, index 10 is 450 s ago.
    (inside,) = decide(BIG, samples(spike_at(27), 3.2 * GIB)).recommendations
    assert not inside.cpu.changed
    (outside,) = decide(BIG, samples(spike_at(10), 3.2 * GIB)).recommendations
    assert outside.cpu.new_request == 3500


def test_a_small_shrink_inside_the_band_is_ignored() -> None:
    # An off-grid 2100m wanting 1960m (-7%): rounding would give 2000m, the band says no.
    off_grid = ContainerResources(2100, 4200, 4 * GIB, 8 * GIB)
    (rec,) = decide(off_grid, samples(1372, 3.2 * GIB)).recommendations
    assert rec.cpu.reason is Reason.WITHIN_BAND
    assert not rec.changed


def test_shrink_rate_and_target() -> None:
    policy = dataclasses.replace(AUTO, max_scale_down_steps=3)
    (rec,) = decide(BIG, samples(700, 3.2 * GIB), policy=policy).recommendations
    assert rec.cpu.new_request == 2500
    near = dataclasses.replace(BIG, cpu_request=1500, cpu_limit=3000)
    (rec,) = decide(near, samples(700, 3.2 * GIB), policy=policy).recommendations
    assert rec.cpu.new_request == 1000  # stops at what usage wants


def test_memory_limit_never_shrinks_below_usage_plus_margin() -> None:
    # A target of 95% would size the limit at 6 GiB for a 5 GiB peak; the 25% margin
    # holds it at 7 GiB (and Guaranteed keeps the request equal).
    policy = ResizePolicy(
        mode=ResizeMode.AUTO,
        memory=ResourcePolicy(min=GIB, max=64 * GIB, step=GIB, target_utilization=0.95),
        hysteresis=0.0,
        max_scale_down_steps=4,
    )
    pod = ContainerResources(2000, 2000, 8 * GIB, 8 * GIB)
    (rec,) = decide(pod, samples(1400, 5 * GIB), policy=policy).recommendations
    assert rec.memory.new_limit == rec.memory.new_request == 7 * GIB


# --- QoS ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpu", "memory"),
    [(2100, 3.2 * GIB), (1900, 3.2 * GIB), (700, 1.2 * GIB), (1400, 3.7 * GIB)],
)
def test_guaranteed_stays_guaranteed(cpu: float, memory: float) -> None:
    decision = decide(GUARANTEED, samples(cpu, memory))
    (rec,) = decision.recommendations
    assert rec.changed
    assert rec.target.cpu_request == rec.target.cpu_limit
    assert rec.target.memory_request == rec.target.memory_limit
    assert pod_qos_class([rec.target]) is QoSClass.GUARANTEED


def test_burstable_never_becomes_guaranteed() -> None:
    # cpu request < limit (ratio 1.5), memory equal: growth must keep the cpu gap.
    resources = ContainerResources(1000, 1500, 4 * GIB, 4 * GIB)
    decision = decide(resources, samples(2100, 3.2 * GIB))
    assert decision.verdict is Verdict.APPLY
    (rec,) = decision.recommendations
    assert rec.target.cpu_limit is not None and rec.target.cpu_request is not None
    assert rec.target.cpu_limit > rec.target.cpu_request
    assert pod_qos_class([rec.target]) is QoSClass.BURSTABLE


def test_absent_limits_and_requests_are_never_added() -> None:
    resources = ContainerResources(cpu_request=1000)
    (rec,) = decide(resources, samples(2100, 7 * GIB)).recommendations
    assert rec.target.cpu_limit is None
    assert rec.target.memory_request is None and rec.target.memory_limit is None
    assert rec.memory.reason is Reason.NOT_SET


def test_zero_quantities_are_left_alone() -> None:
    zero_limit = ContainerResources(1000, None, GIB, 0)
    (rec,) = decide(zero_limit, samples(1400, 3 * GIB)).recommendations
    assert rec.memory.reason is Reason.NOT_SET
    assert not rec.memory.changed
    assert rec.cpu.changed  # the other resource is still sized


def test_a_resize_that_would_change_qos_is_refused() -> None:
    # A wrong hint (Guaranteed for a Burstable shape) would pin limit == request;
    # the final check catches the class change.
    decision = decide(
        ContainerResources(1000, 1500, 4 * GIB, 4 * GIB),
        samples(2100, 3.2 * GIB),
        qos=QoSClass.GUARANTEED,
    )
    assert decision.verdict is Verdict.NO_CHANGE
    assert decision.reason is Reason.QOS_WOULD_CHANGE


def test_best_effort_pod_gets_no_recommendation() -> None:
    decision = decide(ContainerResources(), samples(8000, 30 * GIB))
    assert decision.verdict is Verdict.NO_CHANGE
    assert decision.reason is Reason.BEST_EFFORT
    assert decision.qos is QoSClass.BEST_EFFORT
    assert decision.recommendations == ()


# --- GPUs -----------------------------------------------------------------------------


def test_gpus_are_never_resized() -> None:
    spec = {
        "requests": {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": "8"},
        "limits": {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": "8"},
    }
    decision = decide(container_resources_from_k8s(spec), samples(3900, 31 * GIB))
    assert decision.verdict is Verdict.APPLY
    (entry,) = build_resize_patch(decision)["spec"]["containers"]
    resources = entry["resources"]
    assert isinstance(resources, dict)
    for section in ("requests", "limits"):
        assert set(resources[section]) == {"cpu", "memory"}
        # The API server merges the maps by key: every other resource stays as it was.
        merged = {**spec[section], **resources[section]}
        assert merged["nvidia.com/gpu"] == "8"
        assert merged["cpu"] != spec[section]["cpu"]
    assert {f.name for f in dataclasses.fields(ContainerResources)} == {
        "cpu_request",
        "cpu_limit",
        "memory_request",
        "memory_limit",
    }


def test_patch_names_only_changed_containers_in_quantity_strings() -> None:
    pod = PodResizeInput(
        containers=(
            ContainerState("idle", BURSTABLE, samples(1400, 3.2 * GIB)),
            ContainerState("busy", BURSTABLE, samples(2100, 5 * GIB)),
        ),
        policy=AUTO,
        node=ROOMY,
    )
    patch = build_resize_patch(decide_resize(pod, NOW))
    assert patch == {
        "spec": {
            "containers": [
                {
                    "name": "busy",
                    "resources": {
                        "requests": {"cpu": "3", "memory": "7Gi"},
                        "limits": {"cpu": "6", "memory": "14Gi"},
                    },
                }
            ]
        }
    }


# --- the pod verdict ------------------------------------------------------------------


def test_growth_beyond_the_node_free_room_does_not_fit() -> None:
    tight = NodeRoom(free_cpu_millicores=500, free_memory_bytes=256 * GIB)
    decision = decide(BURSTABLE, samples(2100, 3.2 * GIB), node=tight)  # needs +1000m
    assert decision.verdict is Verdict.DOES_NOT_FIT
    assert decision.reason is Reason.INSUFFICIENT_NODE_RESOURCES
    assert not decision.fits_node
    assert decision.cpu_delta_millicores == 1000
    assert decision.changes  # the wanted values are still reported
    assert "+1000m" in decision.message
    exact = NodeRoom(free_cpu_millicores=1000, free_memory_bytes=0)
    assert decide(BURSTABLE, samples(2100, 3.2 * GIB), node=exact).verdict is Verdict.APPLY


def test_memory_shortage_also_does_not_fit() -> None:
    tight = NodeRoom(free_cpu_millicores=64_000, free_memory_bytes=GIB // 2)
    decision = decide(GUARANTEED, samples(1400, 3.7 * GIB), node=tight)
    assert decision.verdict is Verdict.DOES_NOT_FIT
    assert decision.memory_delta_bytes == GIB


def test_a_shrink_fits_a_full_node() -> None:
    decision = decide(BIG, samples(700, 3.2 * GIB), node=NodeRoom(0, 0))
    assert decision.verdict is Verdict.APPLY
    assert decision.cpu_delta_millicores == -500


SCENARIOS = {
    "grow": (BURSTABLE, samples(2100, 3.2 * GIB)),
    "pressure": (GUARANTEED, samples(1400, 3.7 * GIB)),
    "shrink": (BIG, samples(700, 3.2 * GIB)),
    "steady": (BURSTABLE, samples(1400, 3.2 * GIB)),
}
NODES = (ROOMY, NodeRoom(0, 0))


@pytest.mark.parametrize(("name", "node"), list(itertools.product(SCENARIOS, NODES)))
def test_off_mode_does_nothing(name: str, node: NodeRoom) -> None:
    resources, usage = SCENARIOS[name]
    decision = decide(resources, usage, policy=ResizePolicy(mode=ResizeMode.OFF), node=node)
    assert decision.verdict is Verdict.NO_CHANGE
    assert decision.reason is Reason.MODE_OFF
    assert decision.recommendations == ()


@pytest.mark.parametrize(("name", "node"), list(itertools.product(SCENARIOS, NODES)))
def test_recommend_mode_never_applies(name: str, node: NodeRoom) -> None:
    resources, usage = SCENARIOS[name]
    policy = ResizePolicy(mode=ResizeMode.RECOMMEND)
    decision = decide(resources, usage, policy=policy, node=node)
    auto = decide(resources, usage, policy=AUTO, node=node)
    assert decision.verdict in {Verdict.RECOMMEND, Verdict.NO_CHANGE}
    # Same recommendations as Auto would make; only the verdict differs.
    assert decision.recommendations == auto.recommendations
    assert (decision.verdict is Verdict.RECOMMEND) == bool(auto.changes)


def test_no_recent_samples_means_no_change() -> None:
    stale = samples(5000, 7.9 * GIB, end=NOW - 120)
    for usage in ((), stale):
        decision = decide(BURSTABLE, usage)
        assert decision.verdict is Verdict.NO_CHANGE
        (rec,) = decision.recommendations
        assert rec.cpu.reason is Reason.NO_METRICS


def test_a_resize_in_flight_holds_everything() -> None:
    pod = PodResizeInput(
        containers=(ContainerState("main", GUARANTEED, samples(1400, 3.9 * GIB)),),
        policy=AUTO,
        node=ROOMY,
        resize_in_progress=True,
    )
    decision = decide_resize(pod, NOW)
    assert (decision.verdict, decision.reason) == (Verdict.NO_CHANGE, Reason.RESIZE_IN_PROGRESS)


def test_policy_refuses_a_margin_that_would_grow_forever() -> None:
    with pytest.raises(ValueError, match="margin"):
        ResizePolicy(memory_limit_margin=0.05, memory_pressure_ratio=0.9)


def test_move_goes_elsewhere_or_waits_saying_why() -> None:
    from egpu.domain.placement import Placement, PodAssignment, Unschedulable, UnschedulableReason
    from egpu.engines.resize.move import move_or_wait

    def answer(node: str) -> Placement:
        return Placement("m", (PodAssignment(0, node, (0,), {}),), "egpu.io/leaf", {}, 1)

    assert move_or_wait(answer("n2"), "n1").target == "n2"
    assert move_or_wait(answer("n1"), "n1").why == "only its own node"
    full = Unschedulable("m", UnschedulableReason.INSUFFICIENT_CAPACITY, "no room in the leaf")
    assert move_or_wait(full, "n1").why == "no room in the leaf"
