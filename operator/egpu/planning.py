"""What-if tools over the live cluster: `egpu plan` and `egpu topology`.

They read the cluster once (nodes, pods, GPUTopologies), rebuild the binder's
ledger from it exactly as the operator does, and ask the placement engine.
Nothing is created or changed.
"""

from __future__ import annotations

import asyncio
import html
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from egpu.actuators.manifests import build_member_pod
from egpu.api.workload import GPUWorkloadSpec
from egpu.domain.gang import GangRequest
from egpu.domain.placement import Placement, Unschedulable
from egpu.domain.topology import Topology
from egpu.engines.placement import ClusterLedger, place_gang
from egpu.kube.client import JSON, ApiError, Credentials, KubeClient
from egpu.state.ledger_sync import LedgerSync, pod_demand

HOSTNAME_ONLY = Topology(levels=("kubernetes.io/hostname",))


async def read_cluster(kubeconfig: str | None) -> tuple[list[JSON], list[JSON], dict[str, JSON]]:
    async with KubeClient(Credentials.load(kubeconfig)) as client:
        nodes, _ = await client.list_all("/api/v1/nodes")
        pods, _ = await client.list_all("/api/v1/pods")
        try:
            topos, _ = await client.list_all("/apis/egpu.io/v1alpha1/gputopologies")
        except ApiError:
            topos = []  # CRDs not installed: place by node only
    return nodes, pods, {t["metadata"]["name"]: t for t in topos}


class MissingTopologyError(Exception):
    """The GPUTopology a workload names is not in the cluster."""

    def __init__(self, name: str) -> None:
        super().__init__(f"GPUTopology {name!r} not found: apply examples/topology.yaml")
        self.name = name


def topology_of(topologies: dict[str, JSON], name: str) -> Topology | None:
    """The named GPUTopology's levels; None when the cluster has no such object."""
    body = topologies.get(name)
    if body is None:
        return None
    levels = tuple(lv["nodeLabel"] for lv in body.get("spec", {}).get("levels", []))
    return Topology(levels=levels) if levels else HOSTNAME_ONLY


def ledger_of(nodes: list[JSON], pods: list[JSON], topology: Topology | None) -> ClusterLedger:
    return LedgerSync.rebuild(topology or HOSTNAME_ONLY, nodes, pods).ledger


# -- egpu plan -------------------------------------------------------------------------


def request_for(workload: JSON) -> tuple[GangRequest, str]:
    """The gang the binder would see for this GPUWorkload, and its topology's name."""
    spec = GPUWorkloadSpec.model_validate(workload.get("spec") or {})
    body = {**workload, "spec": spec.to_wire()}
    body.setdefault("metadata", {}).setdefault("namespace", "default")
    body["metadata"].setdefault("uid", "what-if")
    demand = pod_demand(build_member_pod(body, 0))
    topology = spec.topology
    all_or_nothing = spec.gang.policy == "AllOrNothing"
    request = GangRequest(
        gang_id=f"{body['metadata']['namespace']}/{body['metadata'].get('name', 'what-if')}",
        pod_count=spec.replicas,
        gpus_per_pod=spec.gpus_per_pod,
        cpu_millis_per_pod=demand.cpu_millis,
        memory_bytes_per_pod=demand.memory_bytes,
        gpu_model=spec.gpu_model,
        required_level=topology.required if topology else None,
        preferred_level=topology.preferred if topology else None,
        min_members=(spec.gang.min_members or spec.replicas) if all_or_nothing else 1,
    )
    return request, topology.topology_name if topology else "default"


def describe_plan(result: Placement | Unschedulable) -> str:
    if isinstance(result, Unschedulable):
        lines = [f"UNSCHEDULABLE ({result.reason}): {result.message}"]
        for level in result.levels:
            lines.append(
                f"  {level.level:28} {level.domains:5} domains; needs {level.needed_gpus} GPUs; "
                f"best {level.best_domain or '-'} holds {level.best_pods} pods "
                f"({level.best_gpus} GPUs)"
            )
        return "\n".join(lines)
    where = ", ".join(f"{k}={v}" for k, v in result.domain.items()) or "the whole cluster"
    lines = [
        f"PLACEABLE: {len(result.assignments)}/{result.requested_pods} pods, "
        f"{result.gpu_count} GPUs, smallest domain {result.level} ({where})"
    ]
    if result.preferred_met is not None:
        lines.append(f"  preferred level met: {result.preferred_met}")
    if result.models:
        lines.append(f"  GPU models: {', '.join(result.models)}")
    if result.note is not None:
        lines.append(f"  note: {result.note}")
    for a in sorted(result.assignments, key=lambda a: a.rank):
        gpus = ",".join(str(g) for g in a.gpu_indices)
        lines.append(f"  rank {a.rank:4}  {a.node:28} GPUs {gpus}")
    return "\n".join(lines)


def plan_against(
    workload: JSON, nodes: list[JSON], pods: list[JSON], topologies: dict[str, JSON]
) -> tuple[bool, str]:
    """The placement the binder would choose for `workload` on this cluster, as text.

    Raises MissingTopologyError when the workload names topology levels and the GPUTopology
    that defines them is absent: without it any answer about levels would be wrong.
    """
    request, topology_name = request_for(workload)
    topology = topology_of(topologies, topology_name)
    note = ""
    if topology is None:
        if request.required_level or request.preferred_level:
            raise MissingTopologyError(topology_name)
        note = f"\n  (GPUTopology {topology_name!r} not found; placing by node only)"
    result = place_gang(ledger_of(nodes, pods, topology), request)
    return isinstance(result, Placement), describe_plan(result) + note


def plan(workload: JSON, kubeconfig: str | None) -> tuple[bool, str]:
    return plan_against(workload, *asyncio.run(read_cluster(kubeconfig)))


# -- egpu topology -----------------------------------------------------------------------


@dataclass(frozen=True)
class DomainUsage:
    path: tuple[str, ...]
    nodes: int
    gpus: int
    free: int


def domain_usage(ledger: ClusterLedger) -> list[DomainUsage]:
    """Every domain above the node, outermost first, with its GPUs and free GPUs."""
    levels = ledger.topology.domain_levels
    totals: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    for name in ledger.node_names():
        view = ledger.node_view(name)
        path = tuple(view.domain.get(level, "?") for level in levels)
        for depth in range(len(path) + 1):
            entry = totals[path[:depth]]
            entry[0] += 1
            entry[1] += view.gpu_count
            entry[2] += len(view.free_gpus) if view.schedulable else 0
    return [DomainUsage(p, n, g, f) for p, (n, g, f) in sorted(totals.items())]


def bar(free: int, total: int, width: int = 24) -> str:
    used = 0 if total == 0 else round(width * (total - free) / total)
    return "#" * used + "." * (width - used)


def render_text(ledger: ClusterLedger) -> str:
    levels = ledger.topology.domain_levels
    lines = [f"levels: {' > '.join(levels) or '(none)'} > node      # = used GPU, . = free"]
    for d in domain_usage(ledger):
        name = d.path[-1] if d.path else "cluster"
        indent = "  " * len(d.path)
        lines.append(
            f"{indent}{name:{max(1, 22 - len(indent))}} [{bar(d.free, d.gpus)}] "
            f"{d.free:6}/{d.gpus:<6} free  {d.nodes} nodes"
        )
    lines.append(f"stranded GPUs (free on nodes with < 8 free): {ledger.stranded_gpus(8)}")
    return "\n".join(lines)


def render_svg(ledger: ClusterLedger) -> str:
    """One row per domain, a bar of used/free GPUs: a picture of fragmentation."""
    rows = domain_usage(ledger)
    height = 24 * len(rows) + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="760" height="{height}" '
        'font-family="monospace" font-size="12">',
        '<text x="10" y="20">egpu topology: used (dark) / free (light) GPUs per domain</text>',
    ]
    for i, d in enumerate(rows):
        y = 40 + 24 * i
        label = html.escape(d.path[-1] if d.path else "cluster")
        x0 = 10 + 16 * len(d.path)
        used_w = 0 if d.gpus == 0 else 400 * (d.gpus - d.free) / d.gpus
        out += [
            f'<text x="{x0}" y="{y + 12}">{label}</text>',
            f'<rect x="240" y="{y}" width="400" height="16" fill="#cde7cd"/>',
            f'<rect x="240" y="{y}" width="{used_w:.1f}" height="16" fill="#2f6f3e"/>',
            f'<text x="650" y="{y + 12}">{d.free}/{d.gpus} free</text>',
        ]
    out.append("</svg>")
    return "\n".join(out)


def topology_report(kubeconfig: str | None, topology_name: str, svg: str | None) -> str:
    nodes, pods, topologies = asyncio.run(read_cluster(kubeconfig))
    topology = topology_of(topologies, topology_name)
    ledger = ledger_of(nodes, pods, topology)
    if svg:
        with open(svg, "w", encoding="utf-8") as fh:
            fh.write(render_svg(ledger))
    text = render_text(ledger)
    if topology is None:
        text = f"GPUTopology {topology_name!r} not found; showing nodes only\n{text}"
    return text


def load_workload(path: str) -> dict[str, Any]:
    import yaml

    with open(path, encoding="utf-8") if path != "-" else _stdin() as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    workloads = [d for d in docs if d.get("kind") == "GPUWorkload"]
    if len(workloads) != 1:
        raise ValueError(f"{path}: expected exactly one GPUWorkload, found {len(workloads)}")
    return dict(workloads[0])


def _stdin() -> Any:
    import sys

    return sys.stdin
