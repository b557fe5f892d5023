"""The three kinds as the API server sees them: names, scope, columns, subresources."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from egpu import GROUP
from egpu.api.base import ApiModel
from egpu.api.inference import GPUInferenceService
from egpu.api.topology import GPUTopology
from egpu.api.workload import GPUWorkload

CATEGORY = "egpu"


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    json_path: str
    description: str
    priority: int = 0

    def to_crd(self) -> dict[str, object]:
        out: dict[str, object] = {
            "name": self.name,
            "type": self.type,
            "jsonPath": self.json_path,
            "description": self.description,
        }
        if self.priority:
            out["priority"] = self.priority
        return out


AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation.")


@dataclass(frozen=True)
class Kind:
    model: type[ApiModel]
    plural: str
    short_names: tuple[str, ...]
    namespaced: bool
    columns: tuple[PrinterColumn, ...]
    # The scale subresource (kubectl scale, HPA): spec.replicas, status.replicas/selector.
    scalable: bool
    # The operator labels the pods with the owner's name: it must fit a label value.
    max_name_length: int | None = None

    @property
    def name(self) -> str:
        return self.model.__name__

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def file_name(self) -> str:
        return f"{GROUP}_{self.plural}.yaml"


KINDS: tuple[Kind, ...] = (
    Kind(
        model=GPUWorkload,
        plural="gpuworkloads",
        short_names=("gw",),
        namespaced=True,
        scalable=True,
        max_name_length=63,
        columns=(
            PrinterColumn("Phase", "string", ".status.phase", "Lifecycle phase."),
            PrinterColumn("Replicas", "integer", ".spec.replicas", "Pods wanted."),
            PrinterColumn("Ready", "integer", ".status.readyReplicas", "Pods Ready."),
            PrinterColumn("Bound", "integer", ".status.boundReplicas", "Pods bound.", 1),
            PrinterColumn("GPUs/Pod", "integer", ".spec.gpusPerPod", "GPUs per pod."),
            PrinterColumn("Level", "string", ".spec.topology.required", "Required topology level."),
            PrinterColumn("Model", "string", ".spec.gpuModel", "Required GPU model.", 1),
            AGE,
        ),
    ),
    Kind(
        model=GPUInferenceService,
        plural="gpuinferenceservices",
        short_names=("gis",),
        namespaced=True,
        scalable=True,
        max_name_length=63,
        columns=(
            PrinterColumn("Min", "integer", ".spec.minReplicas", "Fewest replicas.", 1),
            PrinterColumn("Max", "integer", ".spec.maxReplicas", "Most replicas.", 1),
            PrinterColumn(
                "Desired", "integer", ".status.desiredReplicas", "Replicas the autoscaler wants."
            ),
            PrinterColumn("Ready", "integer", ".status.readyReplicas", "Replicas Ready."),
            PrinterColumn("Warm", "integer", ".status.warmReplicas", "Warm-pool pods.", 1),
            PrinterColumn("Metric", "string", ".spec.scaling.metric", "Scaling signal."),
            PrinterColumn(
                "Reason", "string", ".status.lastDecision.reason", "Why the last decision."
            ),
            AGE,
        ),
    ),
    Kind(
        model=GPUTopology,
        plural="gputopologies",
        short_names=("gtopo",),
        namespaced=False,
        scalable=False,
        columns=(
            # A column shows only the first match of a list, so name the two ends.
            PrinterColumn("Outermost", "string", ".spec.levels[0].nodeLabel", "Widest level."),
            PrinterColumn("Innermost", "string", ".spec.levels[-1:].nodeLabel", "Narrowest level."),
            PrinterColumn(
                "Ready",
                "string",
                '.status.conditions[?(@.type=="Ready")].status',
                "Whether the nodes carry every level's label.",
            ),
            AGE,
        ),
    ),
)
