"""Pieces the workload kinds share: the pod template, resource bounds and conditions."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from egpu.api.base import ApiModel, list_map
from egpu.api.types import DnsLabel, LabelValue

MAX_GPUS_PER_POD = 64
MAX_CONTAINERS = 64


class Container(ApiModel):
    """A container of the pod template; fields other than these pass through untouched."""

    model_config = ConfigDict(extra="allow")
    preserve_unknown_fields = True

    name: DnsLabel = Field(description="Container name, unique within the pod (a DNS label).")
    image: str = Field(min_length=1, max_length=1024, description="Container image reference.")


class PodSpecTemplate(ApiModel):
    """The pod spec; only `containers` is checked here, the rest is a core/v1 PodSpec."""

    model_config = ConfigDict(extra="allow")
    preserve_unknown_fields = True

    containers: list[Container] = Field(
        min_length=1,
        max_length=MAX_CONTAINERS,
        description="The pod's containers (core/v1 Container); at least one.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )


class PodTemplate(ApiModel):
    """A core/v1 PodTemplateSpec for the pods the operator creates.

    The operator adds the GPU request (`nvidia.com/gpu: gpusPerPod`) to the first
    container, sets `schedulerName: egpu-scheduler`, and adds its own labels.
    """

    metadata: dict[str, Any] | None = Field(
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
        description="Only nodes whose `nvidia.com/gpu.product` label equals this value are "
        "used, e.g. NVIDIA-H100-80GB-HBM3. Unset: any GPU model.",
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
