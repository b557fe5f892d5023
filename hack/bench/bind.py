#!/usr/bin/env python3
"""Binding throughput, end to end, on the local control plane: the egpu binder
against the stock kube-scheduler, on the same cluster and the same backlog.

    .venv/bin/python hack/bench/bind.py [--nodes-per-leaf 40] [--pods 10000]

A fresh control plane starts with kube-scheduler held back; 1,000 simulated
nodes of 16 GPUs come up (1,000 x 8 GPUs could not hold 10,000 single-GPU pods
twice over the churn). Each phase creates the whole backlog of single-GPU pods
first, then starts its scheduler and times it from start to the last pod bound
(and from the first bind to the last). Between phases the first backlog is
deleted. Placement quality afterwards: nodes left whole, and GPUs stranded
(free on nodes with fewer than 8 free, so no 8-GPU pod can use them).
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "operator"))

from egpu.kube.client import ApiError, Credentials, KubeClient, gather_limited  # noqa: E402
from egpu.sim.nodes import ClusterShape, create_nodes  # noqa: E402

RUN_DIR = Path(os.environ.get("EGPU_RUN_DIR", REPO / ".run" / "bench-bind"))
ENV = {**os.environ, "EGPU_RUN_DIR": str(RUN_DIR)}
LOCALCLUSTER = [sys.executable, str(REPO / "hack" / "localcluster.py")]
GPUS_PER_NODE = 16


def pod(name: str, scheduler: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "bind"}},
        "spec": {
            "schedulerName": scheduler,
            "containers": [
                {
                    "name": "main",
                    "image": "registry.local/bench:latest",
                    "resources": {"limits": {"nvidia.com/gpu": "1", "cpu": "1", "memory": "4Gi"}},
                }
            ],
        },
    }


async def create_backlog(client: KubeClient, namespace: str, count: int, scheduler: str) -> float:
    await client.create(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    )
    for _ in range(100):  # the ServiceAccount admission needs the default account
        try:
            await client.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/default")
            break
        except ApiError:
            await asyncio.sleep(0.2)
    started = time.monotonic()
    results = await gather_limited(
        48,
        *(
            client.create(f"/api/v1/namespaces/{namespace}/pods", pod(f"p-{i:05d}", scheduler))
            for i in range(count)
        ),
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise RuntimeError(f"{len(errors)} pod creations failed, first: {errors[0]}")
    return time.monotonic() - started


async def wait_all_bound(
    client: KubeClient, namespace: str, count: int, timeout: float
) -> tuple[float, float]:
    """Watch the namespace's pods; returns (time of the first bind, of the last)."""
    path = f"/api/v1/namespaces/{namespace}/pods"
    items, rv = await client.list_all(path)
    bound = {p["metadata"]["name"] for p in items if p["spec"].get("nodeName")}
    first = time.monotonic() if bound else 0.0
    deadline = time.monotonic() + timeout
    while len(bound) < count and time.monotonic() < deadline:
        try:
            async for event in client.watch(path, rv, timeout_seconds=60):
                obj = event.get("object") or {}
                rv = obj.get("metadata", {}).get("resourceVersion", rv)
                if event.get("type") in ("ADDED", "MODIFIED") and obj["spec"].get("nodeName"):
                    if not bound:
                        first = time.monotonic()
                    bound.add(obj["metadata"]["name"])
                    if len(bound) >= count:
                        break
        except ApiError as exc:
            if exc.status != 410:
                raise
            items, rv = await client.list_all(path)
            bound |= {p["metadata"]["name"] for p in items if p["spec"].get("nodeName")}
    if len(bound) < count:
        raise RuntimeError(f"only {len(bound)}/{count} pods bound within {timeout}s")
    return first, time.monotonic()


async def quality(client: KubeClient, namespace: str, nodes: int) -> dict[str, int]:
    items, _ = await client.list_all(f"/api/v1/namespaces/{namespace}/pods")
    used = Counter(p["spec"]["nodeName"] for p in items if p["spec"].get("nodeName"))
    per_node_free = [GPUS_PER_NODE - c for c in used.values()]
    untouched = nodes - len(used)
    return {
        "nodes_used": len(used),
        "nodes_whole": untouched,
        "stranded_gpus": sum(f for f in per_node_free if f < 8),
    }


async def delete_namespace(client: KubeClient, namespace: str, timeout: float = 600) -> float:
    started = time.monotonic()
    # Pods on simulated nodes have no kubelet to confirm a graceful delete: remove
    # them at once, then the namespace.
    # On two cores a collection DELETE of 10,000 pods can outlast the API server's 60 s
    # request timeout (504); what it removed stays removed, so ask again for the rest.
    while True:
        try:
            await client.request(
                "DELETE",
                f"/api/v1/namespaces/{namespace}/pods",
                params={"gracePeriodSeconds": 0},
                timeout=600,
            )
            break
        except ApiError as exc:
            if exc.status != 504 or time.monotonic() - started > timeout:
                raise
            print(f"deleting the pods of {namespace}: {exc}; asking again", file=sys.stderr)
    await client.delete(f"/api/v1/namespaces/{namespace}")
    while time.monotonic() - started < timeout:
        try:
            await client.get(f"/api/v1/namespaces/{namespace}")
        except ApiError as exc:
            if exc.not_found:
                return time.monotonic() - started
            raise
        await asyncio.sleep(1)
    raise RuntimeError(f"namespace {namespace} still there after {timeout}s")


def start_operator(kubeconfig: str) -> subprocess.Popen[bytes]:
    log = (RUN_DIR / "logs" / "operator.log").open("ab")
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "egpu-operator"),
            "--kubeconfig",
            kubeconfig,
            "--bind-address",
            "127.0.0.1",
            "--health-port",
            "0",
            "--metrics-port",
            "0",
            "--log-level",
            "WARNING",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=ENV,
    )


async def run(args: argparse.Namespace) -> dict[str, object]:
    shape = ClusterShape(
        blocks=5,
        leaves_per_block=5,
        nodes_per_leaf=args.nodes_per_leaf,
        gpus_per_node=GPUS_PER_NODE,
        nvlink_group_size=8,
        name_prefix="bench",
    )
    kubeconfig = str(RUN_DIR / "kubeconfig")
    create_nodes(shape, kubeconfig=kubeconfig, workers=32)
    client = KubeClient(Credentials.load(kubeconfig))
    async with client:
        for _ in range(300):
            nodes, _ = await client.list_all("/api/v1/nodes")
            if (
                sum(
                    1
                    for n in nodes
                    if any(
                        c["type"] == "Ready" and c["status"] == "True"
                        for c in n["status"].get("conditions", [])
                    )
                )
                >= shape.node_count
            ):
                break
            await asyncio.sleep(1)
        result: dict[str, object] = {
            "nodes": shape.node_count,
            "gpus": shape.gpu_count,
            "pods": args.pods,
        }

        # Phase 1: the egpu binder.
        created = await create_backlog(client, "bench-egpu", args.pods, "egpu-scheduler")
        print(f"egpu: {args.pods} pods created in {created:.1f}s", flush=True)
        t0 = time.monotonic()
        operator = start_operator(kubeconfig)
        try:
            first, last = await wait_all_bound(client, "bench-egpu", args.pods, args.timeout)
        finally:
            operator.terminate()
            operator.wait(timeout=30)
        result["egpu_pods_per_min"] = round(args.pods / (last - t0) * 60)
        result["egpu_pods_per_min_after_first_bind"] = round(args.pods / (last - first) * 60)
        result["egpu_quality"] = await quality(client, "bench-egpu", shape.node_count)
        print(
            f"egpu: all bound {last - t0:.1f}s after the operator started "
            f"({last - first:.1f}s from the first bind); {result['egpu_quality']}",
            flush=True,
        )
        gone = await delete_namespace(client, "bench-egpu")
        print(f"backlog deleted in {gone:.1f}s", flush=True)

        # Phase 2: the stock kube-scheduler, same nodes, same backlog.
        created = await create_backlog(client, "bench-kube", args.pods, "default-scheduler")
        print(f"kube-scheduler: {args.pods} pods created in {created:.1f}s", flush=True)
        t0 = time.monotonic()
        await asyncio.to_thread(
            subprocess.run, [*LOCALCLUSTER, "start-scheduler"], env=ENV, check=True
        )
        first, last = await wait_all_bound(client, "bench-kube", args.pods, args.timeout)
        result["kube_scheduler_pods_per_min"] = round(args.pods / (last - t0) * 60)
        result["kube_scheduler_pods_per_min_after_first_bind"] = round(
            args.pods / (last - first) * 60
        )
        result["kube_scheduler_quality"] = await quality(client, "bench-kube", shape.node_count)
        print(
            f"kube-scheduler: all bound {last - t0:.1f}s after it started "
            f"({last - first:.1f}s from the first bind); {result['kube_scheduler_quality']}",
            flush=True,
        )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes-per-leaf", type=int, default=40, help="x 25 leaves")
    parser.add_argument("--pods", type=int, default=10000)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    env = {**ENV, "EGPU_HOLD_BACK": "kube-scheduler"}
    subprocess.run([*LOCALCLUSTER, "up", "--fresh"], env=env, check=True, stdout=subprocess.DEVNULL)
    try:
        result = asyncio.run(run(args))
    finally:
        subprocess.run([*LOCALCLUSTER, "down"], env=ENV, check=False)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
