#!/usr/bin/env python3
"""Binding throughput, end to end, on the local control plane: the egpu binder against
a binder that decides nothing (the ceiling) and the stock kube-scheduler, default and
bin-packing, on the same nodes and the same backlog; then gangs of GPUWorkloads.

    .venv/bin/python hack/bench/bind.py [--nodes-per-leaf 40] [--pods 10000] [--gangs 100]
        [--phases egpu,ceiling,kube-default,kube-most-allocated,gangs]

Every phase gets a fresh control plane (kube-scheduler held back) with the same
simulated nodes: 5 blocks x 5 leaves x N nodes of 16 GPUs (NVLink groups of 8), so
that the backlog of single-GPU pods fits. Phases:

- egpu: the whole backlog (1-GPU pods, schedulerName egpu-scheduler) is created first,
  then the operator started, timed from its start to the last pod bound (and from the
  first bind to the last), as seen through the benchmark's own watch.
- ceiling: the same backlog bound by a binder that decides nothing: it LISTs the
  nodes and the pending pods and POSTs each pod's Binding, round-robin over the nodes,
  64 at a time (the egpu binder's limit), through the operator's own client
  (egpu.kube.client, egpu.actuators.pods.bind_pod), in a process of its own like the
  operator. egpu / ceiling is the share of the ceiling the egpu binder reaches.
- kube-default: kube-scheduler v1.36.3 with its default profile (LeastAllocated: it
  spreads); kube-most-allocated: the bin-packing profile of hack/localcluster.py
  (NodeResourcesFit MostAllocated, nvidia.com/gpu weight 10, cpu and memory 1).
- gangs: the operator running and leading (/leaderz), then G GPUWorkloads of 8 pods x 8
  GPUs (gang AllOrNothing, topology required egpu.io/leaf) created at once; timed from
  the first create to every gang bound. The workload controller creates the pods, the
  binder records each gang's plan on every pod (the crash-safe write) and then binds.

Placement quality after each single-GPU phase: nodes used, nodes left whole, and GPUs
stranded (free on used nodes with fewer than 8 free, so no 8-GPU pod can use them).
Per-phase results are printed as they come; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kubebench as kb

from egpu.actuators.pods import bind_pod
from egpu.domain.labels import LEAF_LABEL, PLAN_ANNOTATION
from egpu.kube.client import Credentials, KubeClient, gather_limited
from egpu.sim.nodes import ClusterShape

RUN_DIR = Path(os.environ.get("EGPU_RUN_DIR", kb.REPO / ".run" / "bench-bind"))
GPUS_PER_NODE = 16
GANG_PODS = 8
GANG_GPUS = 8
CEILING_SCHEDULER = "bench-ceiling"
CEILING_CONCURRENCY = 64
PHASES = ("egpu", "ceiling", "kube-default", "kube-most-allocated", "gangs")


def shape_for(nodes_per_leaf: int) -> ClusterShape:
    return ClusterShape(
        blocks=5,
        leaves_per_block=5,
        nodes_per_leaf=nodes_per_leaf,
        gpus_per_node=GPUS_PER_NODE,
        nvlink_group_size=8,
        name_prefix="bench",
    )


# -- the ceiling: a binder that decides nothing ----------------------------------------


async def ceiling(kubeconfig: str, namespace: str) -> int:
    """Bind every pending pod of `namespace` that names the ceiling's scheduler,
    round-robin over the Ready nodes; returns how many it bound."""
    async with KubeClient(Credentials.load(kubeconfig)) as client:
        nodes, _ = await client.list_all("/api/v1/nodes")
        names = sorted(n["metadata"]["name"] for n in nodes if kb.ready(n))
        if not names:
            raise RuntimeError("no Ready node to bind to")
        next_node = itertools.cycle(names)
        total = 0
        while True:
            pods, _ = await client.list_all(
                f"/api/v1/namespaces/{namespace}/pods", fieldSelector="spec.nodeName="
            )
            pending = [p for p in pods if p["spec"].get("schedulerName") == CEILING_SCHEDULER]
            if not pending:
                return total
            results = await gather_limited(
                CEILING_CONCURRENCY,
                *(
                    bind_pod(
                        client,
                        namespace,
                        p["metadata"]["name"],
                        p["metadata"]["uid"],
                        next(next_node),
                    )
                    for p in pending
                ),
            )
            failed = [r for r in results if isinstance(r, BaseException)]
            total += len(results) - len(failed)
            if failed:
                print(f"ceiling: {len(failed)} binds failed: {failed[0]}", file=sys.stderr)
                await asyncio.sleep(0.2)


def start_ceiling(cluster: kb.Cluster, namespace: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            __file__,
            "ceiling",
            "--kubeconfig",
            cluster.kubeconfig,
            "--namespace",
            namespace,
        ],
        env=cluster.env,
    )


# -- phases ----------------------------------------------------------------------------


async def fresh(cluster: kb.Cluster, shape: ClusterShape, gangs: bool = False) -> None:
    up = cluster.up()
    ready = await kb.add_nodes(cluster, shape)
    if gangs:
        cluster.install_crds()
    print(
        f"fresh control plane in {up:.1f}s; {shape.node_count} nodes Ready in {ready:.1f}s",
        flush=True,
    )


async def backlog_phase(
    cluster: kb.Cluster, shape: ClusterShape, phase: str, pods: int, timeout: float
) -> dict[str, Any]:
    """One scheduler against a backlog of single-GPU pods created before it starts."""
    await fresh(cluster, shape)
    namespace = f"bench-{phase}"
    scheduler = {"egpu": "egpu-scheduler", "ceiling": CEILING_SCHEDULER}.get(
        phase, "default-scheduler"
    )
    async with KubeClient(Credentials.load(cluster.kubeconfig)) as client:
        created = await kb.create_backlog(client, namespace, pods, scheduler)
        print(f"{phase}: {pods} pods created in {created:.1f}s", flush=True)
        proc: subprocess.Popen[bytes] | None = None
        t0 = time.monotonic()
        if phase == "egpu":
            proc = kb.start_operator(cluster)
        elif phase == "ceiling":
            proc = start_ceiling(cluster, namespace)
        else:
            profile = phase.removeprefix("kube-")
            await asyncio.to_thread(cluster.start_scheduler, profile)
        try:
            watch = kb.watch_binds(client, namespace, pods, timeout)
            # the ceiling exits once it has bound all; the operator never should
            bound = await (
                kb.while_alive(proc, watch) if proc is not None and phase == "egpu" else watch
            )
        finally:
            if proc is not None:
                kb.stop(proc)
        first, last = min(bound.values()), max(bound.values())
        items, _ = await client.list_all(f"/api/v1/namespaces/{namespace}/pods")
    quality = kb.placement_quality(kb.used_gpus(items), shape.node_count, GPUS_PER_NODE)
    result = {
        "pods_per_min": round(pods / (last - t0) * 60),
        "pods_per_min_after_first_bind": round(pods / max(last - first, 1e-3) * 60),
        "start_to_first_bind_s": round(first - t0, 2),
        "quality": quality,
    }
    print(
        f"{phase}: all {pods} bound {last - t0:.1f}s after start "
        f"({last - first:.1f}s from the first bind): {result}",
        flush=True,
    )
    return result


def gang_workload(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "egpu.io/v1alpha1",
        "kind": "GPUWorkload",
        "metadata": {"name": name},
        "spec": {
            "replicas": GANG_PODS,
            "gpusPerPod": GANG_GPUS,
            "gang": {"policy": "AllOrNothing", "minMembers": GANG_PODS, "timeout": "10m"},
            "topology": {"topologyName": "default", "required": LEAF_LABEL},
            "template": {
                "metadata": {"labels": {"bench": "gang"}},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "registry.local/bench:latest",
                            "resources": {"requests": {"cpu": "1", "memory": "4Gi"}},
                        }
                    ]
                },
            },
        },
    }


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def gang_phase(
    cluster: kb.Cluster, shape: ClusterShape, gangs: int, timeout: float
) -> dict[str, Any]:
    await fresh(cluster, shape, gangs=True)
    namespace = "bench-gangs"
    port = kb.free_port()
    operator = kb.start_operator(cluster, health_port=port)
    try:
        async with KubeClient(Credentials.load(cluster.kubeconfig)) as client:
            started = time.monotonic()
            ready_at = await kb.wait_ready(port, operator)
            print(f"gangs: operator ready {ready_at - started:.1f}s after its start", flush=True)
            await kb.create_namespace(client, namespace)
            names = [f"g-{i:04d}" for i in range(gangs)]
            t0 = time.monotonic()
            watcher = asyncio.create_task(
                kb.watch_binds(client, namespace, gangs * GANG_PODS, timeout)
            )
            created = await kb.create_all(
                client,
                f"/apis/egpu.io/v1alpha1/namespaces/{namespace}/gpuworkloads",
                (gang_workload(n) for n in names),
            )
            print(f"gangs: {gangs} GPUWorkloads created in {created:.1f}s", flush=True)
            bound = await kb.while_alive(operator, watcher)
            last = max(bound.values())
            items, _ = await client.list_all(f"/api/v1/namespaces/{namespace}/pods")
            nodes, _ = await client.list_all("/api/v1/nodes")
    finally:
        kb.stop(operator)
    leaf_of = {n["metadata"]["name"]: n["metadata"]["labels"].get(LEAF_LABEL) for n in nodes}
    leaves: dict[str, set[str | None]] = {}
    planned = 0
    for p in items:
        meta = p["metadata"]
        gang = meta["name"].rsplit("-", 1)[0]
        leaves.setdefault(gang, set()).add(leaf_of.get(p["spec"].get("nodeName") or ""))
        planned += PLAN_ANNOTATION in (meta.get("annotations") or {})
    gang_done = {}
    for name, at in bound.items():
        gang = name.rsplit("-", 1)[0]
        gang_done[gang] = max(gang_done.get(gang, 0.0), at)
    latencies = [at - t0 for at in gang_done.values()]
    result = {
        "gangs": gangs,
        "pods": gangs * GANG_PODS,
        "gpus": gangs * GANG_PODS * GANG_GPUS,
        "all_bound_s": round(last - t0, 2),
        "gangs_per_min": round(gangs / (last - t0) * 60, 1),
        "pods_per_min": round(gangs * GANG_PODS / (last - t0) * 60),
        "gang_bound_p50_s": round(statistics.median(latencies), 2),
        "gang_bound_p99_s": round(quantile(latencies, 0.99), 2),
        "gangs_in_one_leaf": sum(1 for v in leaves.values() if len(v) == 1 and None not in v),
        "pods_with_plan": planned,
        "operator_ready_s": round(ready_at - started, 2),
    }
    print(f"gangs: all {gangs} gangs bound {last - t0:.1f}s after the first create: {result}")
    return result


async def run(args: argparse.Namespace, cluster: kb.Cluster) -> dict[str, Any]:
    shape = shape_for(args.nodes_per_leaf)
    result: dict[str, Any] = {"nodes": shape.node_count, "gpus": shape.gpu_count}
    for phase in args.phases:
        if phase == "gangs":
            result["gangs"] = await gang_phase(cluster, shape, args.gangs, args.timeout)
        else:
            result["pods"] = args.pods
            result[phase] = await backlog_phase(cluster, shape, phase, args.pods, args.timeout)
    if "egpu" in result and "ceiling" in result:
        e, c = result["egpu"], result["ceiling"]
        result["egpu_over_ceiling"] = round(e["pods_per_min"] / c["pods_per_min"], 3)
        result["egpu_over_ceiling_after_first_bind"] = round(
            e["pods_per_min_after_first_bind"] / c["pods_per_min_after_first_bind"], 3
        )
    return result


def phases(text: str) -> list[str]:
    chosen = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in PHASES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"phases are among {', '.join(PHASES)}")
    return chosen


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "ceiling":
        sub = argparse.ArgumentParser(prog="bind.py ceiling")
        sub.add_argument("--kubeconfig", required=True)
        sub.add_argument("--namespace", required=True)
        sub_args = sub.parse_args(sys.argv[2:])
        asyncio.run(ceiling(sub_args.kubeconfig, sub_args.namespace))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes-per-leaf", type=int, default=40, help="x 25 leaves")
    parser.add_argument("--pods", type=int, default=10000, help="single-GPU backlog")
    parser.add_argument("--gangs", type=int, default=100, help="8-pod x 8-GPU GPUWorkloads")
    parser.add_argument("--phases", type=phases, default=list(PHASES))
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    if args.pods > args.nodes_per_leaf * 25 * GPUS_PER_NODE:
        parser.error("more pods than GPUs")
    per_leaf = args.nodes_per_leaf * GPUS_PER_NODE // (GANG_PODS * GANG_GPUS)
    if "gangs" in args.phases and args.gangs > 25 * per_leaf:
        parser.error(f"at most {25 * per_leaf} gangs fit, one leaf each")
    kb.exit_on_sigterm()
    cluster = kb.Cluster(RUN_DIR)
    try:
        result = asyncio.run(run(args, cluster))
    finally:
        cluster.down()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
