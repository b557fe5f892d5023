"""What a placement decision returns: assignments per pod, or a diagnosis."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class PodAssignment:
    """One pod of a gang: where it goes and what it holds there.

    `domain` maps each topology level label (outermost first, hostname last) to this
    node's value at that level. Neighbouring ranks sit closest in the topology.
    """

    rank: int
    node: str
    gpu_indices: tuple[int, ...]
    domain: Mapping[str, str]
    cpu_millis: int = 0
    memory_bytes: int = 0
    # Other resources the pod holds there: (name, amount), ephemeral storage, extended
    # resources and host ports (`egpu.domain.scheduling.host_port_key`).
    extras: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Placement:
    """Every placed pod of a gang, and the smallest domain that holds them all.

    `level` is the label of that domain's level (`kubernetes.io/hostname` for one
    node, `cluster` for the whole cluster); `domain` is its path, level -> value.
    `preferred_met` is None when the gang named no preferred level. `models`: the GPU
    models the pods got (more than one only when no single model had room for the
    gang, and then `note` says so).
    """

    gang_id: str
    assignments: tuple[PodAssignment, ...]
    level: str
    domain: Mapping[str, str]
    requested_pods: int
    preferred_met: bool | None = None
    models: tuple[str, ...] = ()
    note: str | None = None

    @property
    def partial(self) -> bool:
        return len(self.assignments) < self.requested_pods

    @property
    def gpu_count(self) -> int:
        return sum(len(a.gpu_indices) for a in self.assignments)


class UnschedulableReason(StrEnum):
    INVALID_REQUEST = "InvalidRequest"
    NO_MATCHING_NODES = "NoMatchingNodes"
    REQUIRED_LEVEL = "RequiredLevelUnsatisfiable"
    INSUFFICIENT_CAPACITY = "InsufficientCapacity"


@dataclass(frozen=True, slots=True)
class LevelDiagnosis:
    """How close one level came: its roomiest domain and how many pods it could take.

    `best_pods` counts pods of the gang's shape (GPUs, CPU, memory) that fit in the
    best domain; `best_gpus` is `best_pods * gpus_per_pod` (GPUs usable by this gang).
    """

    level: str
    domains: int
    needed_pods: int
    needed_gpus: int
    best_domain: str | None
    best_path: tuple[str, ...]
    best_pods: int
    best_gpus: int


class FilterReason(StrEnum):
    TAINT = "TaintNotTolerated"
    NODE_SELECTOR = "NodeSelectorMismatch"
    NODE_AFFINITY = "NodeAffinityMismatch"
    TOO_MANY_PODS = "TooManyPods"
    INSUFFICIENT_RESOURCE = "InsufficientResource"
    HOST_PORT = "HostPortInUse"
    GPU_ALLOCATION = "GpuAllocationMismatch"


_WORDS = {
    FilterReason.TAINT: "taint",
    FilterReason.NODE_SELECTOR: "nodeSelector",
    FilterReason.NODE_AFFINITY: "required node affinity",
    FilterReason.TOO_MANY_PODS: "pod count",
    FilterReason.INSUFFICIENT_RESOURCE: "insufficient",
    FilterReason.HOST_PORT: "host port in use",
    FilterReason.GPU_ALLOCATION: "GPU allocation",
}


@dataclass(frozen=True, slots=True)
class Exclusion:
    """How many nodes one filter refused for one detail."""

    reason: FilterReason
    detail: str
    nodes: int

    def __str__(self) -> str:
        noun = "node" if self.nodes == 1 else "nodes"
        return f"{self.nodes} {noun} excluded by {_WORDS[self.reason]} {self.detail}".rstrip()


@dataclass(frozen=True, slots=True)
class Unschedulable:
    """Why a gang was not placed. `excluded`: the nodes the filters refused, counted
    per reason and detail (e.g. `Exclusion(TaintNotTolerated, "gpu=broken:NoSchedule",
    3)`); the message says them in words."""

    gang_id: str
    reason: UnschedulableReason
    message: str
    levels: tuple[LevelDiagnosis, ...] = ()
    excluded: tuple[Exclusion, ...] = ()


PlacementResult = Placement | Unschedulable
