"""Simulated GPU nodes shaped like a GPU data centre, for KWOK to run.

Blocks of leaves of nodes, each node with N GPUs. Every node carries what a real
GPU node carries once GPU Feature Discovery and a topology-labelling cloud have
been at it: allocatable `nvidia.com/gpu`, `nvidia.com/gpu.*` labels, one label
per network level, and the `egpu.io/gpu-interconnect` annotation that the egpu
node agent publishes (NVLink groups, NUMA node per GPU).

With `cached_artefacts`, some nodes also carry `egpu.io/cached-artefacts` (what a cache
agent says a node holds): `cached_nodes` of them, evenly spaced through the nodes in
name order (block, leaf, node), so they spread across leaves and blocks; all of them
when `cached_nodes` is None.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

BLOCK_LABEL = "egpu.io/block"
LEAF_LABEL = "egpu.io/leaf"
HOSTNAME_LABEL = "kubernetes.io/hostname"
INTERCONNECT_ANNOTATION = "egpu.io/gpu-interconnect"
CACHED_ARTEFACTS_ANNOTATION = "egpu.io/cached-artefacts"
SIMULATED_LABEL = "egpu.io/simulated"
KWOK_SELECTOR_LABEL = ("type", "kwok")  # what hack/localcluster.py's kwok manages

GPU_MEMORY_MIB = {
    "NVIDIA-H100-80GB-HBM3": 81559,
    "NVIDIA-H200": 143771,
    "NVIDIA-A100-SXM4-80GB": 81920,
    "NVIDIA-L40S": 46068,
}


@dataclass(frozen=True, slots=True)
class ClusterShape:
    blocks: int = 2
    leaves_per_block: int = 4
    nodes_per_leaf: int = 16
    gpus_per_node: int = 8
    nvlink_group_size: int = 4
    gpu_models: tuple[str, ...] = ("NVIDIA-H100-80GB-HBM3",)
    cpu_per_node: str = "128"
    memory_per_node: str = "2048Gi"
    name_prefix: str = "gpu"
    # Prepended to block and leaf names, so several simulated clusters can
    # share one API server without sharing topology domains.
    domain_prefix: str = ""
    # GPUs published through DRA (egpu.sim.dra) instead of a device plugin: the nodes
    # advertise no nvidia.com/gpu.
    dra: bool = False
    # Artefact keys some nodes hold (egpu.io/cached-artefacts), on `cached_nodes` nodes
    # spread evenly (None: on every node).
    cached_artefacts: tuple[str, ...] = ()
    cached_nodes: int | None = None

    def __post_init__(self) -> None:
        for field in ("blocks", "leaves_per_block", "nodes_per_leaf", "gpus_per_node"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be at least 1")
        if self.nvlink_group_size < 1 or self.gpus_per_node % self.nvlink_group_size:
            raise ValueError(
                f"nvlink_group_size {self.nvlink_group_size} must divide "
                f"gpus_per_node {self.gpus_per_node}"
            )
        if not self.gpu_models:
            raise ValueError("at least one GPU model is needed")
        if any(not key or "," in key or key != key.strip() for key in self.cached_artefacts):
            raise ValueError(
                "cached artefact keys must be non-empty, with no comma or blanks: "
                f"{list(self.cached_artefacts)}"
            )
        if self.cached_nodes is not None:
            if not self.cached_artefacts:
                raise ValueError("cached_nodes needs cached_artefacts")
            if not 0 <= self.cached_nodes <= self.node_count:
                raise ValueError(
                    f"cached_nodes must be between 0 and the {self.node_count} nodes, "
                    f"got {self.cached_nodes}"
                )

    @property
    def node_count(self) -> int:
        return self.blocks * self.leaves_per_block * self.nodes_per_leaf

    @property
    def gpu_count(self) -> int:
        return self.node_count * self.gpus_per_node


def interconnect(shape: ClusterShape) -> dict[str, list[Any]]:
    """NVLink groups of consecutive GPUs; each group sits on its own NUMA node."""
    size = shape.nvlink_group_size
    groups = [list(range(i, i + size)) for i in range(0, shape.gpus_per_node, size)]
    numa = [gpu // size for gpu in range(shape.gpus_per_node)]
    return {"nvlinkGroups": groups, "numa": numa}


def cached_node_indices(shape: ClusterShape) -> frozenset[int]:
    """Which nodes (by position in name order) carry the cached artefacts: `cached_nodes`
    evenly spaced, the first node first."""
    if not shape.cached_artefacts:
        return frozenset()
    total = shape.node_count
    count = total if shape.cached_nodes is None else shape.cached_nodes
    return frozenset(i * total // count for i in range(count))


def node_manifests(shape: ClusterShape) -> Iterator[dict[str, Any]]:
    annotation = json.dumps(interconnect(shape), separators=(",", ":"))
    gpus = str(shape.gpus_per_node)
    cached = cached_node_indices(shape)
    held = ",".join(shape.cached_artefacts)
    position = -1
    for b in range(shape.blocks):
        # One GPU model per block, round robin: blocks are bought in one go.
        model = shape.gpu_models[b % len(shape.gpu_models)]
        for lf in range(shape.leaves_per_block):
            for n in range(shape.nodes_per_leaf):
                block = f"{shape.domain_prefix}b{b}"
                leaf = f"{block}-l{lf}"
                name = f"{shape.name_prefix}-b{b}-l{lf}-n{n:03d}"
                resources = {
                    "cpu": shape.cpu_per_node,
                    "memory": shape.memory_per_node,
                    "pods": "110",
                    "ephemeral-storage": "1Ti",
                }
                if not shape.dra:
                    resources["nvidia.com/gpu"] = gpus
                annotations = {INTERCONNECT_ANNOTATION: annotation, "kwok.x-k8s.io/node": "fake"}
                position += 1
                if position in cached:
                    annotations[CACHED_ARTEFACTS_ANNOTATION] = held
                yield {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "labels": {
                            KWOK_SELECTOR_LABEL[0]: KWOK_SELECTOR_LABEL[1],
                            SIMULATED_LABEL: "true",
                            HOSTNAME_LABEL: name,
                            BLOCK_LABEL: block,
                            LEAF_LABEL: leaf,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "nvidia.com/gpu.present": "true",
                            "nvidia.com/gpu.product": model,
                            "nvidia.com/gpu.count": gpus,
                            "nvidia.com/gpu.memory": str(GPU_MEMORY_MIB.get(model, 81920)),
                        },
                        "annotations": annotations,
                    },
                    "spec": {"providerID": f"kwok://{name}"},
                    # Nodes accept status on create; kwok keeps it when it
                    # marks the node Ready.
                    "status": {"allocatable": resources, "capacity": dict(resources)},
                }


def create_nodes(shape: ClusterShape, kubeconfig: str | None = None, workers: int = 16) -> float:
    """Create every node of the shape (existing ones are left alone). Returns seconds taken."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    config.load_kube_config(config_file=kubeconfig)
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = workers
    api = client.CoreV1Api(client.ApiClient(cfg))

    def create(node: dict[str, Any]) -> None:
        try:
            api.create_node(node, _preload_content=False)
        except ApiException as exc:
            if exc.status != 409:  # already there
                raise

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(create, node_manifests(shape)):
            pass
    return time.monotonic() - start


def delete_nodes(kubeconfig: str | None = None) -> int:
    """Delete every simulated node. Returns how many there were."""
    from kubernetes import client, config

    config.load_kube_config(config_file=kubeconfig)
    api = client.CoreV1Api()
    nodes = api.list_node(label_selector=f"{SIMULATED_LABEL}=true").items
    api.delete_collection_node(label_selector=f"{SIMULATED_LABEL}=true")
    return len(nodes)
