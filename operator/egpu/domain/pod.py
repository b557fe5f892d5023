"""A pod as the binder and the ledger see it: what it asks for, where it is, what it
belongs to, and the plan the binder recorded on it.

Read from raw pods by `egpu.state.pods.read_pod`, which never raises: whatever cannot
be read lands in `problem`, so one user's malformed pod is reported and skipped
instead of stopping the binder for everyone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from egpu.domain.scheduling import NO_CONSTRAINTS, NodeConstraints


@dataclass(frozen=True, slots=True)
class PodDemand:
    """What a pod asks of its node (requests, init containers and overhead included)."""

    cpu_millis: int
    memory_bytes: int
    gpus: int
    # Every other resource it holds there, (name, amount) sorted by name: ephemeral
    # storage, hugepages, extended resources, and host ports (one each).
    extras: tuple[tuple[str, int], ...] = ()


NO_DEMAND = PodDemand(0, 0, 0)


@dataclass(frozen=True, slots=True)
class RecordedPlan:
    """The binder's plan for one pod, written on the pod before it is bound.

    Trusted only when `uid` is the pod's own: a template or a user cannot know a pod's
    UID before the pod exists, so a copied or hand-written plan never matches.
    `plan_id` names one decision for a gang; `size` is how many pods it placed, so a
    plan whose recording was cut short (the operator died) is known to be incomplete.
    """

    uid: str
    node: str
    gpu_indices: tuple[int, ...]
    domain: Mapping[str, str]
    plan_id: str
    size: int


@dataclass(frozen=True, slots=True)
class Owner:
    """The pod's controller (ownerReference with controller: true)."""

    api_version: str
    kind: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class PlacementAsk:
    """What the pod's annotations ask of placement (written by the operator's builders,
    or by a user on a pod of their own)."""

    gpu_model: str | None = None
    required_level: str | None = None
    preferred_level: str | None = None
    cpu_headroom_millis: int = 0
    memory_headroom_bytes: int = 0
    within: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PodFacts:
    key: str  # namespace/name
    namespace: str
    name: str
    uid: str
    ours: bool  # names the egpu scheduler
    node: str | None  # spec.nodeName: bound
    finished: bool  # Succeeded or Failed: holds nothing
    deleting: bool
    demand: PodDemand
    gang_id: str
    gang_size: int
    gang_min: int
    rank: int | None  # None: no rank (a lone pod, or a pod group without ranks)
    priority: int = 0
    created: str = ""
    owner: Owner | None = None
    workload: str | None = None  # the GPUWorkload that owns it (by owner reference)
    plan: RecordedPlan | None = None  # trusted plan (see RecordedPlan)
    bound_gpus: tuple[int, ...] | None = None  # trusted GPU ids of a bound pod
    ask: PlacementAsk = field(default_factory=PlacementAsk)
    constraints: NodeConstraints = NO_CONSTRAINTS  # taints tolerated, nodes selected
    # Fields the binder does not honour (spec paths): it refuses such a pod rather
    # than place it as if they were not there.
    unsupported: tuple[str, ...] = ()
    problem: str | None = None  # why the pod cannot be placed as it is
    dra: bool = False  # its GPUs come through its DRA claim, which the binder allocates
    gpu_claim: str | None = None  # that claim's name, once the controller manager made it
    # What it loads at start (egpu.io/artefacts): the binder prefers nodes that hold them.
    artefacts: tuple[str, ...] = ()

    @property
    def bound(self) -> bool:
        return self.node is not None

    @property
    def live(self) -> bool:
        """Holds (or will hold) capacity: not finished, and not going before it was bound."""
        return not self.finished and not (self.deleting and self.node is None)

    @property
    def pending(self) -> bool:
        """Ours, waiting for a node."""
        return self.ours and self.node is None and not self.deleting and not self.finished


def workload_gang_id(namespace: str, workload: str) -> str:
    """The gang of a GPUWorkload's members (found by owner reference, never by label)."""
    return f"{namespace}/{workload}"


def group_gang_id(namespace: str, group: str) -> str:
    """A pod group that a user declared on pods of their own (`egpu.io/gang` label)."""
    return f"{namespace}/group:{group}"


def lone_gang_id(namespace: str, name: str) -> str:
    """A pod placed on its own."""
    return f"{namespace}/pod:{name}"
