"""Pieces the workload kinds share: the pod template, resource bounds and conditions."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from egpu import DEFAULT_SCHEDULER_NAME as SCHEDULER_NAME
from egpu.api.base import LIST_ATOMIC, ApiModel, Rule, list_map
from egpu.api.types import (
    Annotations,
    DnsLabel,
    Labels,
    LabelValue,
    ResourceList,
)

MAX_GPUS_PER_POD = 64
MAX_CONTAINERS = 64
MAX_NAME_LENGTH = 253


class ContainerResizePolicy(ApiModel):
    """Whether resizing one resource of a container restarts it (core/v1)."""

    model_config = ConfigDict(extra="allow")
    preserve_unknown_fields = True

    resource_name: Literal["cpu", "memory"] = Field(description="cpu or memory.")
    restart_policy: Literal["NotRequired", "RestartContainer"] = Field(
        description="NotRequired: resized in place. RestartContainer: the resize loop "
        "leaves this resource alone (its promise is a resize without a restart)."
    )


# CEL, for a resource `k` of a ResourceRequirements: its request is above its limit.
_REQUEST_OVER_LIMIT = (
    "k in self.limits && isQuantity(string(self.requests[k])) "
    "&& isQuantity(string(self.limits[k])) "
    "&& quantity(string(self.requests[k])).compareTo(quantity(string(self.limits[k]))) > 0"
)
# CEL, for an init container's name `n`: a container has it too.
_NAME_OF_A_CONTAINER = "self.containers.exists(c, c.name == n)"


class ResourceRequirements(ApiModel):
    """A container's requests and limits (core/v1 ResourceRequirements)."""

    model_config = ConfigDict(extra="allow")
    preserve_unknown_fields = True

    cel_rules = (
        Rule(
            rule="!has(self.requests) || !has(self.limits) "
            f"|| !self.requests.exists(k, {_REQUEST_OVER_LIMIT})",
            message="a request must not be greater than its limit",
            message_expression=f'"the " + self.requests.filter(k, {_REQUEST_OVER_LIMIT})[0] '
            '+ " request must not be greater than its limit"',
            field_path=".requests",
        ),
    )

    requests: ResourceList | None = Field(
        None,
        description="Resources the pod is placed with, e.g. {cpu: 2, memory: 16Gi}; "
        "the operator adds nvidia.com/gpu to the first container.",
    )
    limits: ResourceList | None = Field(
        None,
        description="Most the container may use; a request defaults to its limit.",
    )


class Container(ApiModel):
    """A container of the pod template; fields other than these pass through untouched."""

    model_config = ConfigDict(extra="allow")
    preserve_unknown_fields = True

    name: DnsLabel = Field(
        description="Container name, unique among the pod's containers and init containers "
        "(a DNS label)."
    )
    image: str = Field(min_length=1, max_length=1024, description="Container image reference.")
    resources: ResourceRequirements | None = Field(
        None, description="Requests and limits (core/v1 ResourceRequirements)."
    )
    resize_policy: list[ContainerResizePolicy] | None = Field(
        None,
        max_length=2,
        description="Per resource, whether a resize restarts the container (core/v1).",
        json_schema_extra=LIST_ATOMIC,
    )


def _containers_field(description: str, min_items: int) -> Any:
    return Field(
        ... if min_items else None,
        min_length=min_items or None,
        max_length=MAX_CONTAINERS,
        description=description,
        json_schema_extra=list_map("name"),
    )


class PodSpecTemplate(ApiModel):
    """The pod spec; the fields named here are checked, the rest is a core/v1 PodSpec."""

    model_config = ConfigDict(extra="allow")
    preserve_unknown_fields = True

    cel_rules = (
        Rule(
            rule="!has(self.nodeName) || self.nodeName == ''",
            message=f"nodeName is not allowed: {SCHEDULER_NAME} places every pod; remove it "
            "and use nodeSelector or affinity instead",
            field_path=".nodeName",
            reason="FieldValueForbidden",
        ),
        Rule(
            rule="!has(self.initContainers) || "
            f"!self.initContainers.map(i, i.name).exists(n, {_NAME_OF_A_CONTAINER})",
            message="an init container must not share a name with a container",
            message_expression='"init container \'" + self.initContainers.map(i, i.name)'
            f".filter(n, {_NAME_OF_A_CONTAINER})[0] + \"' shares its name with a container: "
            'names must be unique in the pod"',
            field_path=".initContainers",
        ),
    )

    containers: list[Container] = _containers_field(
        "The pod's containers (core/v1 Container); at least one, names unique.", 1
    )
    init_containers: list[Container] | None = _containers_field(
        "Containers run to completion before the others start (core/v1 Container).", 0
    )
    node_name: str | None = Field(
        None,
        max_length=MAX_NAME_LENGTH,
        description="Refused: every pod is placed by the operator (a node named here "
        "would bypass gang, topology and GPU accounting). Use nodeSelector or affinity.",
    )
    scheduler_name: str | None = Field(
        None,
        max_length=MAX_NAME_LENGTH,
        description=f"Replaced by {SCHEDULER_NAME} on every pod: the operator places "
        "the pods itself.",
    )


class PodTemplateMetadata(ApiModel):
    """What the pods inherit of the template's metadata (core/v1 ObjectMeta subset)."""

    model_config = ConfigDict(extra="allow")
    preserve_unknown_fields = True

    labels: Labels | None = Field(
        None,
        description="Labels copied to every pod, beside the operator's own.",
    )
    annotations: Annotations | None = Field(
        None,
        description="Annotations copied to every pod, beside the operator's own.",
    )


class PodTemplate(ApiModel):
    """A core/v1 PodTemplateSpec for the pods the operator creates.

    The operator adds the GPU request (`nvidia.com/gpu: gpusPerPod`) to the first
    container, sets `schedulerName: egpu-scheduler`, and adds its own labels.
    """

    metadata: PodTemplateMetadata | None = Field(
        None,
        description="Labels and annotations copied to every pod (core/v1 ObjectMeta subset).",
    )
    spec: PodSpecTemplate = Field(description="The pod spec (core/v1 PodSpec).")


def gpus_per_pod_field(extra: dict[str, Any] | None = None) -> Any:
    return Field(
        1,
        ge=1,
        le=MAX_GPUS_PER_POD,
        description="GPUs each pod gets (`nvidia.com/gpu`), all on the same node.",
        json_schema_extra=extra,
    )


def gpu_model_field() -> Any:
    return Field(
        None,
        description="Only nodes whose GPU product (the `nvidia.com/gpu.product` label, as GPU "
        "Feature Discovery writes it, e.g. NVIDIA-H200-141GB-HBM3e) matches this value are "
        "used. It matches when its words (split at dashes and underscores, compared whole "
        "and case-insensitively) appear in the product's words in the same order: H200, "
        "h200 and H200-141GB match NVIDIA-H200-141GB-HBM3e; H20 does not. When it matches "
        "several products, a gang's pods all get one of them. Unset: any GPU model; a "
        "gang's pods then still share one model unless no single model has room for all of "
        "them (the placement then says so).",
    )


GpuModel = LabelValue


ConditionStatus = Literal["True", "False", "Unknown"]

CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class Condition(ApiModel):
    """One observation of the object's state (metav1.Condition)."""

    type: str = Field(
        max_length=316,
        pattern=CONDITION_TYPE_PATTERN,
        description="Condition type in CamelCase, e.g. Ready, Placed, Degraded.",
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=CONDITION_REASON_PATTERN,
        description="Machine-readable CamelCase reason for the last transition.",
    )
    message: str = Field("", max_length=32768, description="Human-readable details.")
    last_transition_time: datetime = Field(description="When the status last changed (RFC 3339).")
    observed_generation: int | None = Field(
        None, ge=0, description="The .metadata.generation this condition was computed from."
    )


def conditions_field() -> Any:
    return Field(
        default_factory=list,
        max_length=32,
        description="Current conditions, one per type (Kubernetes conventions).",
        json_schema_extra=list_map("type"),
    )
