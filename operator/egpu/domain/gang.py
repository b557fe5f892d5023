"""What a gang asks for: N pods alike, each with GPUs, CPU and memory."""

from __future__ import annotations

from dataclasses import dataclass

from egpu.domain.scheduling import NodeConstraints


@dataclass(frozen=True, slots=True)
class GangRequest:
    """A gang of `pod_count` identical pods.

    `gpu_model` None means any model (a gang may then mix models). `required_level`:
    every pod in one domain of that level, or nothing. `preferred_level`: a hint only;
    the engine always looks for the smallest domain first, so it reports whether the
    hint was met. `min_members` (default: all pods) lets a gang start with fewer pods.
    `*_headroom_*`: room a node must have beyond each pod's requests (pods whose
    requests grow in place), asked of the node when the pod is placed, not reserved.
    `dra`: the pods' GPUs come through DRA claims (DRA nodes only; else device-plugin
    nodes only). `extras`: what else each pod holds on its node, (resource, amount): ephemeral
    storage, extended resources, host ports. `constraints`: what the pods ask of a
    node's labels and taints (one entry per distinct ask; a node must satisfy all).
    `keep_model`: the GPU model the gang's members already placed run on; the rest
    keep it unless it has no room for them (a gang runs at its slowest GPU's pace).
    `artefacts`: what each pod loads at start (image references, model keys): nodes
    that hold them are preferred (a score, never a filter).
    """

    gang_id: str
    pod_count: int
    gpus_per_pod: int
    cpu_millis_per_pod: int = 0
    memory_bytes_per_pod: int = 0
    gpu_model: str | None = None
    required_level: str | None = None
    preferred_level: str | None = None
    min_members: int | None = None
    # Place only inside this domain (its path, outermost level value first): the
    # rest of a gang whose first members are already bound under a required level.
    within: tuple[str, ...] = ()
    cpu_headroom_millis: int = 0
    memory_headroom_bytes: int = 0
    extras: tuple[tuple[str, int], ...] = ()
    constraints: tuple[NodeConstraints, ...] = ()
    # The GPUs come through DRA claims: only nodes whose GPUs a DRA driver publishes
    # fit; else only nodes with the device plugin (a pod's claims are fixed at creation).
    dra: bool = False
    keep_model: str | None = None
    artefacts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.gang_id:
            raise ValueError("a gang needs an id")
        if self.pod_count < 1:
            raise ValueError(f"gang {self.gang_id}: pod_count must be at least 1")
        if self.gpus_per_pod < 1:
            raise ValueError(f"gang {self.gang_id}: gpus_per_pod must be at least 1")
        if self.cpu_millis_per_pod < 0 or self.memory_bytes_per_pod < 0:
            raise ValueError(f"gang {self.gang_id}: cpu and memory must not be negative")
        if self.cpu_headroom_millis < 0 or self.memory_headroom_bytes < 0:
            raise ValueError(f"gang {self.gang_id}: headroom must not be negative")
        if any(amount < 0 for _, amount in self.extras):
            raise ValueError(f"gang {self.gang_id}: extended resources must not be negative")
        if self.min_members is not None and not 1 <= self.min_members <= self.pod_count:
            raise ValueError(
                f"gang {self.gang_id}: min_members must be between 1 and pod_count "
                f"({self.pod_count}), got {self.min_members}"
            )

    @property
    def min_pods(self) -> int:
        return self.pod_count if self.min_members is None else self.min_members

    @property
    def total_gpus(self) -> int:
        return self.pod_count * self.gpus_per_pod
