"""GPUWorkload: a set of GPU pods placed together (a training gang, a notebook)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import Field

from egpu.api.base import (
    LIST_ATOMIC,
    LIST_SET,
    ApiModel,
    Rule,
    defaulted_object,
    list_map,
    rules_extra,
)
from egpu.api.common import (
    MAX_GPUS_PER_POD,
    Condition,
    GpuModel,
    PodTemplate,
    conditions_field,
    gpu_model_field,
    gpus_per_pod_field,
)
from egpu.api.types import (
    Duration,
    LabelKey,
    ObjectName,
    Quantity,
    cel_millis,
    cel_quantity,
    cel_when_quantities,
)

MAX_WORKLOAD_REPLICAS = 4096

GangPolicyName = Literal["AllOrNothing", "None"]
ResizeMode = Literal["Off", "Recommend", "Auto"]
InfeasibleResizeAction = Literal["Wait", "Move"]
RepairPolicyName = Literal["ReplaceMember", "RestartGang", "Shrink", "None"]
GpuAllocation = Literal["DevicePlugin", "DRA"]
WorkloadPhase = Literal[
    "Pending", "Placing", "Running", "Degraded", "Repairing", "Succeeded", "Failed"
]


class GangPolicy(ApiModel):
    """Whether the pods are placed all at once, and how long to wait for room."""

    cel_rules = (
        Rule(
            rule="self.policy == 'AllOrNothing' || !has(self.minMembers)",
            message="minMembers only applies to the AllOrNothing policy",
            field_path=".minMembers",
            reason="FieldValueForbidden",
        ),
    )

    policy: GangPolicyName = Field(
        "AllOrNothing",
        description="AllOrNothing: no pod is bound until minMembers pods fit at once. "
        "None: each pod is placed on its own.",
    )
    min_members: int | None = Field(
        None,
        ge=1,
        le=MAX_WORKLOAD_REPLICAS,
        description="Pods that must be placed together before any is bound. Unset: all replicas.",
    )
    timeout: Duration = Field(
        "5m",
        description="How long a gang may wait for room before its Scheduled condition "
        "says GangTimeout (with a Warning Event); it stays queued and binds when room "
        "appears (e.g. 30s, 5m).",
    )


class TopologyConstraint(ApiModel):
    """How close together the pods must (or should) sit in the network."""

    cel_rules = (
        Rule(
            rule="has(self.required) || has(self.preferred)",
            message="set required, preferred, or both",
            field_path=".required",
            reason="FieldValueRequired",
        ),
        Rule(
            rule="!has(self.required) || !has(self.preferred) || self.required != self.preferred",
            message="preferred must name a narrower level than required, not the same one",
            field_path=".preferred",
        ),
    )

    topology_name: ObjectName = Field(
        "default",
        description="The GPUTopology whose levels the keys below name.",
    )
    required: LabelKey | None = Field(
        None,
        description="All pods must share one domain of this level (a node label key of "
        "the GPUTopology, e.g. egpu.io/leaf). The workload waits until that is possible.",
    )
    preferred: LabelKey | None = Field(
        None,
        description="Pack the pods into one domain of this level when possible; must be a "
        "narrower level than `required`. Only the GPUTopology knows the order of levels, so "
        "a coarser one is not refused at admission: the operator reports "
        "TopologyResolved=False (reason PreferredNotNarrower) and creates no pods.",
    )


def _bound_rules(
    step_ok: str,
    step_message: str,
    as_int: Callable[[str], str],
    is_whole: Callable[[str], str],
) -> tuple[Rule, ...]:
    """The step is positive, min <= max, min > 0, and both bounds a whole multiple of the step.

    `as_int` turns the quantity at a CEL path into the integer `%` works on; it may only
    be called where `is_whole` holds. A bad step is reported once, by its own rule.
    """
    multiples = tuple(
        Rule(
            rule=f"!({step_ok}) || ({is_whole('self.' + bound)}"
            f"{as_int('self.' + bound)} % {as_int('self.step')} == 0)",
            message=f"{bound} must be a whole multiple of step",
            field_path=f".{bound}",
        )
        for bound in ("min", "max")
    )
    rules = (
        Rule(rule=step_ok, message=step_message, field_path=".step"),
        Rule(
            rule=f"{cel_quantity('self.min')}.compareTo({cel_quantity('self.max')}) <= 0",
            message="min must not be greater than max",
            field_path=".min",
        ),
        Rule(
            rule=f"{cel_quantity('self.min')}.isGreaterThan(quantity('0'))",
            message="min must be greater than zero",
            field_path=".min",
        ),
        *multiples,
    )
    paths = ("self.min", "self.max", "self.step")
    return tuple(replace(r, rule=cel_when_quantities(paths, r.rule)) for r in rules)


def _memory_int(path: str) -> str:
    return f"{cel_quantity(path)}.asInteger()"


def _memory_is_whole(path: str) -> str:
    # asInteger() fails on fractional bytes ("1.5"); such a bound is no multiple either.
    return f"{cel_quantity(path)}.isInteger() && "


class CpuBounds(ApiModel):
    """CPU request bounds for in-place resize, in steps (e.g. 0.5 vCPU).

    They bound each container's request (not the pod's sum); the template's requests
    must lie within them.
    """

    cel_rules = _bound_rules(
        step_ok=f"{cel_millis('self.step')} > 0",
        step_message="step must be at least 1m",
        as_int=cel_millis,
        is_whole=lambda path: "",
    )

    min: Quantity = Field(description="Smallest CPU request, e.g. 500m or 1.")
    max: Quantity = Field(description="Largest CPU request, e.g. 16.")
    step: Quantity = Field("500m", description="Requests change in multiples of this.")


class MemoryBounds(ApiModel):
    """Memory request bounds for in-place resize, in steps (e.g. 1Gi).

    They bound each container's request (not the pod's sum); the template's requests
    must lie within them.
    """

    cel_rules = _bound_rules(
        step_ok=f"{_memory_is_whole('self.step')}{_memory_int('self.step')} > 0",
        step_message="step must be a positive whole number of bytes, e.g. 1Gi",
        as_int=_memory_int,
        is_whole=_memory_is_whole,
    )

    min: Quantity = Field(description="Smallest memory request, e.g. 4Gi.")
    max: Quantity = Field(description="Largest memory request, e.g. 256Gi.")
    step: Quantity = Field("1Gi", description="Requests change in multiples of this.")


class ResizeHeadroom(ApiModel):
    """Room a node must have free beyond a pod's requests when the pod is placed."""

    cpu: Quantity | None = Field(None, description="CPU beyond the requests, e.g. 500m or 2.")
    memory: Quantity | None = Field(
        None, description="Memory beyond the requests, e.g. 1Gi or 8Gi."
    )


class ResizePolicy(ApiModel):
    """In-place resize of the pods' CPU and memory requests (no restart)."""

    cel_rules = (
        Rule(
            rule="self.mode == 'Off' || has(self.cpu) || has(self.memory)",
            message="Recommend and Auto need cpu or memory bounds",
            field_path=".mode",
        ),
        Rule(
            rule="self.mode == 'Auto' || self.onInfeasible == 'Wait'",
            message="onInfeasible: Move only applies to mode Auto",
            field_path=".onInfeasible",
            reason="FieldValueForbidden",
        ),
        Rule(
            rule="self.mode == 'Auto' || !has(self.headroom)",
            message="headroom only applies to mode Auto",
            field_path=".headroom",
            reason="FieldValueForbidden",
        ),
    )

    mode: ResizeMode = Field(
        "Off",
        description="Off: never resize. Recommend: publish the recommendation in status "
        "only. Auto: resize the running pods in place.",
    )
    cpu: CpuBounds | None = Field(None, description="CPU bounds; unset: CPU is not resized.")
    memory: MemoryBounds | None = Field(
        None, description="Memory bounds; unset: memory is not resized."
    )
    on_infeasible: InfeasibleResizeAction = Field(
        "Wait",
        description="When the pod's node cannot fit a resize. Wait: keep the pod at its "
        "size until room frees up. Move: recreate the pod at its new size on a node with "
        "room in the same topology domain (the workload's required level, else the "
        "lowest GPUTopology level): a restart, announced by a ResizeMove Event.",
    )
    headroom: ResizeHeadroom | None = Field(
        None,
        description="Mode Auto: free CPU/memory a node must have beyond a pod's requests "
        "for the pod to be placed there, so likely growth fits in place (asked, not "
        "reserved). Unset: one step of each resized resource; zeros: none.",
    )


class Checkpoint(ApiModel):
    """How the workload saves and finds its last checkpoint, so repairs resume from it."""

    cel_rules = (
        Rule(
            rule="has(self.annotation) != has(self.command)",
            message="set exactly one of annotation or command",
            field_path=".annotation",
        ),
    )

    annotation: LabelKey | None = Field(
        None,
        description="Pod annotation in which the workload publishes its latest checkpoint; "
        "the operator copies it onto replacement pods so they resume from it.",
    )
    command: list[str] | None = Field(
        None,
        min_length=1,
        max_length=32,
        description="Command the operator runs (exec) in rank 0's first container to write "
        "a checkpoint before members are moved.",
        json_schema_extra=LIST_ATOMIC,
    )


class RepairPolicy(ApiModel):
    """What happens when a member's GPU or node fails."""

    cel_rules = (
        Rule(
            rule="self.policy != 'None' || !has(self.checkpoint)",
            message="a checkpoint needs a repair policy other than None",
            field_path=".checkpoint",
            reason="FieldValueForbidden",
        ),
        Rule(
            rule="has(self.progressAnnotation) || !has(self.hangTimeout)",
            message="hangTimeout needs progressAnnotation, the pod annotation whose changes "
            "show progress",
            field_path=".hangTimeout",
            reason="FieldValueRequired",
        ),
    )

    policy: RepairPolicyName = Field(
        "ReplaceMember",
        description="ReplaceMember: recreate only the failed pods, on healthy GPUs. "
        "RestartGang: recreate the whole gang. Shrink (elastic, needs minReplicas): drop "
        "failed pods the gang's domain has no room for, the one farthest from the rest "
        "(topology distance) first, down to minReplicas (the others are replaced); dropped "
        "ranks come back when room returns in the domain (status.currentMembers vs "
        "wantedMembers). None: only report the fault. A node not Ready past the operator's "
        "grace (EGPU_NODE_LOST_AFTER) is a fault of all its GPUs.",
    )
    checkpoint: Checkpoint | None = Field(
        None, description="Where repaired members resume from; unset: they start afresh."
    )
    max_restarts: int = Field(
        3,
        ge=0,
        le=1000,
        description="Repairs allowed before the workload is marked Failed.",
    )
    grace_period: Duration = Field(
        "30s",
        description="How long a member deleted by a repair has between SIGTERM and SIGKILL "
        "to write its checkpoint.",
    )
    progress_annotation: LabelKey | None = Field(
        None,
        description="Pod annotation the running members update as they make progress "
        "(e.g. the training step); with hangTimeout, a member whose value stays the same "
        "that long is hung.",
    )
    hang_timeout: Duration | None = Field(
        None,
        description="A running member that reports no new progress (progressAnnotation) "
        "for this long, or none at all since it was first seen running, is hung: repaired "
        "by the policy from the last checkpoint (RestartGang: the whole gang; "
        "ReplaceMember, Shrink: the hung members; None: only reported), reason Hung. "
        "Unset: hangs are not detected.",
    )


def _template_request(container: str, resource: str) -> tuple[str, str]:
    """CEL: whether a container has a request for `resource` as the API server stores
    it (an absent request is its limit), and that request as a string.

    has() guards rather than optional chaining (`c.?resources...`): the server's cost
    estimate loses every size bound through an optional and refuses the rule.
    """
    requests, limits = f"{container}.resources.requests", f"{container}.resources.limits"
    in_requests = f"(has({requests}) && '{resource}' in {requests})"
    in_limits = f"(has({limits}) && '{resource}' in {limits})"
    present = f"has({container}.resources) && ({in_requests} || {in_limits})"
    value = f"string({in_requests} ? {requests}['{resource}'] : {limits}['{resource}'])"
    return present, value


def _bound_contradictions() -> tuple[Rule, ...]:
    """The resize bounds against the template's requests, as the resize loop applies
    them: to every container (init containers are never resized), to a request that is
    set and above zero, unless the container's resizePolicy restarts it for that
    resource; and only while the mode is not Off. A request outside [min, max] would be
    resized as soon as the pod runs: the template and the bounds contradict each other.
    """
    rules = []
    for resource in ("cpu", "memory"):
        present, request = _template_request("c", resource)
        restarts = (
            f"has(c.resizePolicy) && c.resizePolicy.exists(p, p.resourceName == '{resource}' "
            "&& p.restartPolicy == 'RestartContainer')"
        )
        for bound, beyond, op in (("max", "above", ">"), ("min", "below", "<")):
            value = f"self.resize.{resource}.{bound}"
            contradicts = (
                f"{present} && !({restarts}) && isQuantity({request}) "
                f"&& quantity({request}).isGreaterThan(quantity('0')) "
                f"&& quantity({request}).compareTo({cel_quantity(value)}) {op} 0"
            )
            # Names, then filter: filtering the containers themselves costs too much.
            first = (
                f"self.template.spec.containers.map(c, ({contradicts}) "
                f'? c.name + "\' (" + {request} + ")" : \'\')'
                ".filter(n, n != '')[0]"
            )
            rules.append(
                Rule(
                    rule=f"self.resize.mode == 'Off' || !has(self.resize.{resource}) "
                    f"|| !isQuantity(string({value})) "
                    f"|| !self.template.spec.containers.exists(c, {contradicts})",
                    message=f"a container's {resource} request in the template is {beyond} "
                    f"resize.{resource}.{bound}: resize keeps every container's request "
                    "between min and max",
                    message_expression=f'"resize.{resource}.{bound} " + string({value}) '
                    f'+ " contradicts the template: the {resource} request of container \'" '
                    f"+ {first} + \" is {beyond} it; resize keeps every container's "
                    'request between min and max"',
                    field_path=f".resize.{resource}.{bound}",
                )
            )
    return tuple(rules)


def _gpus_immutable() -> dict[str, Any]:
    return rules_extra(
        Rule(
            rule="self == oldSelf",
            message="gpusPerPod is immutable: placement depends on it; create a new workload",
        )
    )


def _allocation_immutable() -> dict[str, Any]:
    return rules_extra(
        Rule(
            rule="self == oldSelf",
            message="gpuAllocation is immutable: a pod's claims are fixed when it is created",
        )
    )


class GPUWorkloadSpec(ApiModel):
    """The desired GPU pods of a GPUWorkload."""

    cel_rules = (
        Rule(
            rule="!has(self.minReplicas) || !has(self.maxReplicas) "
            "|| self.minReplicas <= self.maxReplicas",
            message="minReplicas must not be greater than maxReplicas",
            field_path=".minReplicas",
        ),
        Rule(
            rule="!has(self.minReplicas) || self.replicas >= self.minReplicas",
            message="replicas must not be less than minReplicas",
            field_path=".replicas",
        ),
        Rule(
            rule="!has(self.maxReplicas) || self.replicas <= self.maxReplicas",
            message="replicas must not be greater than maxReplicas",
            field_path=".replicas",
        ),
        Rule(
            rule="!has(self.gang.minMembers) || self.gang.minMembers <= self.replicas",
            message="gang.minMembers must not be greater than replicas",
            field_path=".gang.minMembers",
        ),
        Rule(
            rule="self.repair.policy != 'Shrink' || has(self.minReplicas)",
            message="repair policy Shrink needs minReplicas: the fewest members to shrink to",
            field_path=".minReplicas",
            reason="FieldValueRequired",
        ),
        *_bound_contradictions(),
    )

    template: PodTemplate = Field(description="Template of each pod (core/v1 PodTemplateSpec).")
    replicas: int = Field(
        1,
        ge=1,
        le=MAX_WORKLOAD_REPLICAS,
        description="Pods wanted now; the scale subresource sets it (kubectl scale).",
    )
    min_replicas: int | None = Field(
        None,
        ge=1,
        le=MAX_WORKLOAD_REPLICAS,
        description="Fewest pods the workload may run with (elastic): repair policy Shrink "
        "shrinks it down to this. Unset: replicas.",
    )
    max_replicas: int | None = Field(
        None,
        ge=1,
        le=MAX_WORKLOAD_REPLICAS,
        description="Most pods the workload may grow to (elastic). Unset: replicas.",
    )
    gpus_per_pod: int = gpus_per_pod_field(_gpus_immutable())
    gpu_model: GpuModel | None = gpu_model_field()
    gpu_allocation: GpuAllocation = Field(
        "DevicePlugin",
        description="How the pods get their GPUs. DevicePlugin: each pod asks for "
        "nvidia.com/gpu and goes to nodes whose device plugin advertises it; the node is the "
        "binder's choice, the GPU ids are the kubelet's. DRA: each pod gets one "
        "ResourceClaim (from the ResourceClaimTemplate <workload>-gpus, exactly gpusPerPod "
        "devices of DeviceClass gpu.egpu.io) instead of asking for nvidia.com/gpu, goes "
        "only to nodes whose GPUs a DRA driver publishes, and the binder allocates that "
        "claim to exactly the planned GPUs before it binds the pod (status.gpuIdsEnforced "
        "true). A pod's claims are fixed when it is created, so this is chosen per "
        "workload and immutable.",
        json_schema_extra=_allocation_immutable(),
    )
    gang: GangPolicy = defaulted_object(GangPolicy, "Gang scheduling of the pods.")
    topology: TopologyConstraint | None = Field(
        None, description="Network locality of the pods; unset: anywhere."
    )
    resize: ResizePolicy = defaulted_object(ResizePolicy, "In-place resize of CPU and memory.")
    repair: RepairPolicy = defaulted_object(RepairPolicy, "Self-healing on GPU and node faults.")


class Placement(ApiModel):
    """Where one pod was bound."""

    pod: ObjectName = Field(description="Pod name.")
    rank: int = Field(ge=0, le=MAX_WORKLOAD_REPLICAS, description="Member index in the gang.")
    node: ObjectName = Field(description="Node the pod is bound to.")
    gpus: list[Annotated[int, Field(ge=0, le=MAX_GPUS_PER_POD - 1)]] = Field(
        default_factory=list,
        max_length=MAX_GPUS_PER_POD,
        description="GPU indices on the node assigned to the pod.",
        json_schema_extra=LIST_SET,
    )
    domain: dict[str, str] = Field(
        default_factory=dict,
        description="The pod's domain at each topology level: level label key -> value, "
        "e.g. {egpu.io/block: b0, egpu.io/leaf: b0-l2}.",
    )


class GPUWorkloadStatus(ApiModel):
    """What the operator observed and did."""

    phase: WorkloadPhase | None = Field(
        None,
        description="Pending, Placing, Running, Degraded, Repairing, Succeeded or Failed.",
    )
    conditions: list[Condition] = conditions_field()
    observed_generation: int | None = Field(
        None, ge=0, description="The .metadata.generation the status reflects."
    )
    placements: list[Placement] = Field(
        default_factory=list,
        max_length=MAX_WORKLOAD_REPLICAS,
        description="One entry per bound pod.",
        json_schema_extra=list_map("pod"),
    )
    replicas: int = Field(0, ge=0, description="Pods that exist.")
    ready_replicas: int = Field(0, ge=0, description="Pods that are Ready.")
    bound_replicas: int = Field(0, ge=0, description="Pods bound to a node.")
    restarts: int = Field(0, ge=0, description="Repairs done so far (see repair.maxRestarts).")
    gpu_ids_enforced: bool | None = Field(
        None,
        description=(
            "Whether the GPU ids in placements are the GPUs the pods get: true through DRA "
            "(the binder allocates each pod's claim to exactly those devices); false with "
            "the device plugin, where the node is exact but the kubelet picks the GPUs."
        ),
    )
    selector: str | None = Field(
        None,
        max_length=1024,
        description="Label selector of the pods, for the scale subresource.",
    )
    wanted_members: int | None = Field(None, ge=0, description="Members wanted: spec.replicas.")
    current_members: int | None = Field(
        None,
        ge=0,
        description="Members the workload runs with now: wantedMembers less the ranks an "
        "elastic repair (policy Shrink) dropped until room returns.",
    )


class GPUWorkload(ApiModel):
    """A set of GPU pods placed and bound together, with gang, topology, resize and repair."""

    api_version: Literal["egpu.io/v1alpha1"] = Field(
        "egpu.io/v1alpha1", description="egpu.io/v1alpha1"
    )
    kind: Literal["GPUWorkload"] = Field("GPUWorkload", description="GPUWorkload")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: GPUWorkloadSpec = Field(
        description="The pods wanted and how they are placed, resized and repaired."
    )
    status: GPUWorkloadStatus | None = Field(
        None, description="What the operator observed and did: phase, placements, counts."
    )
