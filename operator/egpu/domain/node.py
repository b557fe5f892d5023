"""A node as the placement engine sees it: capacity, GPUs, wiring, topology labels.

`Node.used_*` is usage the caller cannot attribute to a reservation or to a foreign
pod (for example, from a snapshot taken before the engine started). Usage the ledger
should be able to give back later goes through the ledger instead, never both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from egpu.domain.artefacts import NO_ARTEFACTS, image_names, intern_artefacts, parse_artefact_keys
from egpu.domain.dra import DraNode
from egpu.domain.gpu import Gpu, Interconnect, parse_interconnect, parse_unhealthy_gpus
from egpu.domain.labels import (
    CACHED_ARTEFACTS_ANNOTATION,
    GPU_COUNT_LABEL,
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    HOSTNAME_LABEL,
    INTERCONNECT_ANNOTATION,
    UNHEALTHY_GPUS_ANNOTATION,
)
from egpu.domain.quantity import cpu_millis, memory_bytes, whole_count
from egpu.domain.scheduling import TAINT_EFFECTS, Taint

# Resources the node's own fields count; every other allocatable entry is "extended"
# (ephemeral storage, hugepages, rdma/*, nvidia.com/mig-*, ...).
OWN_RESOURCES = frozenset({"cpu", "memory", "pods", GPU_RESOURCE})

# More GPUs than any machine has (HGX boards have 8, the largest systems 16 per node):
# a node that claims more is misconfigured or lying, and would draw every gang to it.
MAX_GPUS_PER_NODE = 64


@dataclass(frozen=True, slots=True)
class Node:
    """One node. GPUs are indexed 0..gpu_count-1, all of one model (as GFD reports them);
    `gpus` lists them as Gpu values. Kept as a count and sets rather than one object
    per GPU: a 15,000-node cluster would otherwise hold 120,000 more objects."""

    name: str
    labels: Mapping[str, str]
    cpu_millis: int
    memory_bytes: int
    gpu_count: int = 0
    gpu_model: str | None = None
    unhealthy_gpus: frozenset[int] = field(default_factory=frozenset)
    interconnect: Interconnect | None = None
    schedulable: bool = True
    used_cpu_millis: int = 0
    used_memory_bytes: int = 0
    used_gpus: frozenset[int] = field(default_factory=frozenset)
    taints: tuple[Taint, ...] = ()
    max_pods: int | None = None  # allocatable pods; None: not limited
    extended: Mapping[str, int] = field(default_factory=dict)  # other allocatable
    # Its GPUs are published through DRA (a ResourceSlice): the GPU ids are enforced.
    dra: bool = False
    # What it holds for fast starts (egpu.domain.artefacts): its cache agent's keys and
    # its kubelet's image names, one shared set per distinct content.
    artefacts: frozenset[str] = NO_ARTEFACTS

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a node needs a name")
        for what in (
            "cpu_millis",
            "memory_bytes",
            "gpu_count",
            "used_cpu_millis",
            "used_memory_bytes",
        ):
            if getattr(self, what) < 0:
                raise ValueError(f"node {self.name}: {what} must not be negative")
        if self.interconnect is not None and self.interconnect.gpu_count != self.gpu_count:
            raise ValueError(
                f"node {self.name}: interconnect describes {self.interconnect.gpu_count} GPUs, "
                f"the node has {self.gpu_count}"
            )
        if self.max_pods is not None and self.max_pods < 0:
            raise ValueError(f"node {self.name}: max_pods must not be negative")
        for what in ("used_gpus", "unhealthy_gpus"):
            bad = sorted(i for i in getattr(self, what) if not 0 <= i < self.gpu_count)
            if bad:
                raise ValueError(f"node {self.name}: {what} {bad} do not exist")

    @property
    def gpus(self) -> tuple[Gpu, ...]:
        return tuple(
            Gpu(i, self.gpu_model, i not in self.unhealthy_gpus) for i in range(self.gpu_count)
        )

    @property
    def hostname(self) -> str:
        return self.labels.get(HOSTNAME_LABEL, self.name)

    @property
    def wiring(self) -> Interconnect:
        return self.interconnect or Interconnect.unknown(self.gpu_count)

    @property
    def free_gpus(self) -> tuple[int, ...]:
        """Healthy GPUs no one uses, by index."""
        gone = self.used_gpus | self.unhealthy_gpus
        return tuple(i for i in range(self.gpu_count) if i not in gone)


def node_from_kubernetes(
    name: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    allocatable: Mapping[str, str],
    schedulable: bool = True,
    taints: object = None,
    dra: DraNode | None = None,
    images: object = None,
) -> Node:
    """Build a Node from a Kubernetes Node's labels, annotations and status.allocatable.

    GPU count comes from allocatable `nvidia.com/gpu` (else the GFD count label), the
    model from `nvidia.com/gpu.product`. `schedulable` is false for cordoned or not-Ready
    nodes. `taints` is spec.taints as the API serves it. With `dra` (the GPUs a DRA
    driver publishes for it) the GPU count, model and wiring come from its devices, in
    preference to the labels and the interconnect annotation. `images` is status.images:
    its names and the keys of the cached-artefacts annotation are what the node holds
    (a malformed list or annotation reads as holding nothing). Raises ValueError naming
    the node and the bad field.
    """
    try:
        if dra is not None:
            gpu_count = dra.gpu_count
        else:
            gpu_text = allocatable.get(GPU_RESOURCE, labels.get(GPU_COUNT_LABEL, "0"))
            gpu_count = whole_count(gpu_text, "nvidia.com/gpu")
        if gpu_count > MAX_GPUS_PER_NODE:
            raise ValueError(
                f"it claims {gpu_count} GPUs (nvidia.com/gpu), more than the "
                f"{MAX_GPUS_PER_NODE} a node can have"
            )
        unhealthy = parse_unhealthy_gpus(annotations.get(UNHEALTHY_GPUS_ANNOTATION), gpu_count)
        if dra is not None:
            wiring = dra.wiring()
        else:
            wiring = parse_interconnect(annotations.get(INTERCONNECT_ANNOTATION), gpu_count)
        cpu = cpu_millis(allocatable.get("cpu", "0"))
        memory = memory_bytes(allocatable.get("memory", "0"))
        pods = allocatable.get("pods")
        max_pods = whole_count(pods, "pods") if pods is not None else None
        extended = {
            str(k): memory_bytes(v) for k, v in allocatable.items() if k not in OWN_RESOURCES
        }
        node_taints = parse_taints(taints)
    except ValueError as exc:
        raise ValueError(f"node {name}: {exc}") from None
    return Node(
        name=name,
        labels=dict(labels),
        cpu_millis=cpu,
        memory_bytes=memory,
        gpu_count=gpu_count,
        gpu_model=labels.get(GPU_PRODUCT_LABEL) or (dra.product if dra is not None else None),
        unhealthy_gpus=unhealthy,
        interconnect=wiring,
        schedulable=schedulable,
        taints=node_taints,
        max_pods=max_pods,
        extended=extended,
        dra=dra is not None,
        artefacts=intern_artefacts(
            [
                *parse_artefact_keys(annotations.get(CACHED_ARTEFACTS_ANNOTATION)),
                *image_names(images),
            ]
        ),
    )


def parse_taints(raw: object) -> tuple[Taint, ...]:
    """spec.taints as Taint values; raises ValueError on a shape the API never serves."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError("spec.taints is not a list")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise ValueError(f"taint {item!r} has no key")
        effect = str(item.get("effect") or "")
        if effect not in TAINT_EFFECTS:
            raise ValueError(f"taint {item['key']} has effect {effect!r}")
        out.append(Taint(item["key"], str(item.get("value") or ""), effect))
    return tuple(out)
