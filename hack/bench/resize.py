#!/usr/bin/env python3
"""In-place resize, end to end, on the local control plane: the time from a usage
change becoming visible to the resize being applied.

    .venv/bin/python hack/bench/resize.py [--pods 1000] [--steps 2]

A fresh control plane (its own run directory) gets 100 simulated nodes of 16 GPUs
and GPUWorkloads with `resize.mode: Auto` whose 1,000 single-GPU member pods request
2Gi of memory and "use" 1.5Gi (`egpu.io/sim-usage`). Once all run and the operator
is idle, each step raises every pod's memory use by about 0.8Gi, which is one 1 GiB
step of growth. Per pod, the clock starts when the API server has acknowledged the
usage change (from then on any watcher sees it) and stops when the bench's own watch
sees the pod's spec resized (pods/resize accepted): p50/p99 of that is `p50_s` /
`p99_s`. `completed_*` also counts the simulated kubelet (KWOK, 300 ms delay)
reporting the new size in the pod's status. `restarts` is container restarts plus
pods replaced (both must stay 0). The bench, the operator and the control plane
share the machine. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "operator"))

from egpu.kube.client import ApiError, Credentials, KubeClient, gather_limited  # noqa: E402
from egpu.sim.nodes import ClusterShape, create_nodes  # noqa: E402
from egpu.sim.usage import usage_patch  # noqa: E402

RUN_DIR = Path(os.environ.get("EGPU_RUN_DIR", REPO / ".run" / "bench-resize"))
ENV = {**os.environ, "EGPU_RUN_DIR": str(RUN_DIR)}
LOCALCLUSTER = [sys.executable, str(REPO / "hack" / "localcluster.py")]
KUBECTL = str(Path(sys.executable).parent / "kubectl")
NAMESPACE = "bench-resize"
GIB = 2**30
START_MEMORY_GIB = 2
START_USE_GIB = 1.5
SELECTOR = "egpu.io/workload"


def use(memory_gib: float) -> dict[str, dict[str, str]]:
    return {"main": {"cpu": "700m", "memory": f"{round(memory_gib * 1024)}Mi"}}


def workload(name: str, replicas: int) -> dict[str, Any]:
    annotation = usage_patch(use(START_USE_GIB))["metadata"]["annotations"]
    return {
        "apiVersion": "egpu.io/v1alpha1",
        "kind": "GPUWorkload",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "gpusPerPod": 1,
            "gang": {"policy": "None"},
            "resize": {
                "mode": "Auto",
                "cpu": {"min": "500m", "max": "8", "step": "500m"},
                "memory": {"min": "1Gi", "max": "64Gi", "step": "1Gi"},
            },
            "template": {
                "metadata": {"annotations": annotation},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "registry.local/egpu/sim:latest",
                            "resources": {
                                "requests": {"cpu": "1", "memory": f"{START_MEMORY_GIB}Gi"}
                            },
                        }
                    ]
                },
            },
        },
    }


def memory_of(pod: dict[str, Any]) -> tuple[str | None, str | None]:
    """(spec request, status-reported request) of the main container's memory."""
    spec = pod["spec"]["containers"][0].get("resources", {}).get("requests", {}).get("memory")
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    reported = ((statuses[0].get("resources") or {}).get("requests") or {}).get("memory")
    return spec, (reported if statuses else None)


def running(pod: dict[str, Any]) -> bool:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return bool(statuses) and all(
        "running" in s.get("state", {}) and s.get("resources") for s in statuses
    )


async def wait_for(
    client: KubeClient, what: str, check: Any, timeout: float, every: float = 1.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        items, _ = await client.list_all(
            f"/api/v1/namespaces/{NAMESPACE}/pods", labelSelector=SELECTOR
        )
        if check(items):
            return items
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_operator(kubeconfig: str, metrics_port: int) -> subprocess.Popen[bytes]:
    (RUN_DIR / "logs").mkdir(parents=True, exist_ok=True)
    log = (RUN_DIR / "logs" / "operator.log").open("ab")
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "egpu-operator"),
            "--kubeconfig", kubeconfig,
            "--bind-address", "127.0.0.1",
            "--health-port", str(free_port()),
            "--metrics-port", str(metrics_port),
            "--log-level", "WARNING",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=ENV,
    )  # fmt: skip


def operator_metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


class SpecWatch:
    """Watches the member pods; records when each one's spec and status first show a
    wanted memory request."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self.want = ""
        self.applied: dict[str, float] = {}
        self.completed: dict[str, float] = {}
        self.resizes = 0
        self._last_spec: dict[str, str | None] = {}

    def seed(self, items: list[dict[str, Any]]) -> None:
        for pod in items:
            self._last_spec[pod["metadata"]["name"]] = memory_of(pod)[0]

    def see(self, pod: dict[str, Any], at: float) -> None:
        name = pod["metadata"]["name"]
        spec, reported = memory_of(pod)
        if spec != self._last_spec.get(name):
            self._last_spec[name] = spec
            self.resizes += 1
        if spec == self.want:
            self.applied.setdefault(name, at)
        if reported == self.want:
            self.completed.setdefault(name, at)

    async def run(self, resource_version: str) -> None:
        path = f"/api/v1/namespaces/{NAMESPACE}/pods"
        rv = resource_version
        while True:
            try:
                async for event in self.client.watch(path, rv, labelSelector=SELECTOR):
                    at = time.monotonic()
                    obj = event.get("object") or {}
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self.see(obj, at)
            except ApiError as exc:
                if exc.status != 410:
                    raise
                items, rv = await self.client.list_all(path, labelSelector=SELECTOR)
                now = time.monotonic()
                for pod in items:
                    self.see(pod, now)


def quantiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[98]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    kubeconfig = str(RUN_DIR / "kubeconfig")
    shape = ClusterShape(
        blocks=1, leaves_per_block=4, nodes_per_leaf=25, gpus_per_node=16, nvlink_group_size=8,
        name_prefix="bench", cpu_per_node="256", memory_per_node="4096Gi",
    )  # fmt: skip
    create_nodes(shape, kubeconfig=kubeconfig, workers=16)
    subprocess.run(
        [KUBECTL, "apply", "--server-side", "-f", str(REPO / "crds")],
        env={**ENV, "KUBECONFIG": kubeconfig}, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    subprocess.run(
        [KUBECTL, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"],
        env={**ENV, "KUBECONFIG": kubeconfig}, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    metrics_port = free_port()
    client = KubeClient(Credentials.load(kubeconfig))
    async with client:
        await client.create(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        )
        for _ in range(100):  # pods need the namespace's default ServiceAccount
            try:
                await client.get(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default")
                break
            except ApiError:
                await asyncio.sleep(0.2)
        operator = start_operator(kubeconfig, metrics_port)
        try:
            t0 = time.monotonic()
            per_workload = 100
            for w in range(0, args.pods, per_workload):
                await client.create(
                    f"/apis/egpu.io/v1alpha1/namespaces/{NAMESPACE}/gpuworkloads",
                    workload(f"bench-{w // per_workload:03d}", min(per_workload, args.pods - w)),
                )
            items = await wait_for(
                client,
                f"{args.pods} member pods running",
                lambda items: sum(1 for p in items if running(p)) >= args.pods,
                timeout=args.timeout,
                every=2.0,
            )
            print(f"{args.pods} pods running after {time.monotonic() - t0:.1f}s", flush=True)
            uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in items}
            await asyncio.sleep(3)  # let the operator's first passes settle

            watch = SpecWatch(client)
            watch.seed(items)
            _, rv = await client.list_all(
                f"/api/v1/namespaces/{NAMESPACE}/pods", labelSelector=SELECTOR
            )
            watcher = asyncio.create_task(watch.run(rv))
            applied: list[float] = []
            completed: list[float] = []
            for step in range(1, args.steps + 1):
                want = f"{START_MEMORY_GIB + step}Gi"
                watch.want, watch.applied, watch.completed = want, {}, {}
                visible: dict[str, float] = {}

                async def raise_use(name: str, memory_gib: float) -> None:
                    await client.patch(
                        f"/api/v1/namespaces/{NAMESPACE}/pods/{name}",
                        usage_patch(use(memory_gib)),
                    )
                    visible[name] = time.monotonic()

                # Use at 0.8 x (old size + 1 GiB) minus a little: one 1 GiB step.
                target_use = (START_MEMORY_GIB + step) * 0.8 - 0.1
                started = time.monotonic()
                results = await gather_limited(
                    args.concurrency, *(raise_use(n, target_use) for n in uids)
                )
                failures = [r for r in results if isinstance(r, BaseException)]
                if failures:
                    raise RuntimeError(f"{len(failures)} usage patches failed: {failures[0]}")
                deadline = time.monotonic() + args.timeout
                while len(watch.completed) < len(uids) and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                if len(watch.completed) < len(uids):
                    raise RuntimeError(
                        f"step {step}: only {len(watch.applied)} applied, "
                        f"{len(watch.completed)} completed of {len(uids)}"
                    )
                step_applied = [watch.applied[n] - visible[n] for n in uids]
                step_completed = [watch.completed[n] - visible[n] for n in uids]
                applied += step_applied
                completed += step_completed
                p50, p99 = quantiles(step_applied)
                print(
                    f"step {step}: usage -> {target_use:.1f}Gi on {len(uids)} pods "
                    f"(patched in {max(visible.values()) - started:.1f}s); resized to {want}: "
                    f"p50 {p50:.3f}s p99 {p99:.3f}s, all done "
                    f"{max(watch.completed.values()) - started:.1f}s after the first patch",
                    flush=True,
                )
                await asyncio.sleep(2)
            watcher.cancel()

            final, _ = await client.list_all(
                f"/api/v1/namespaces/{NAMESPACE}/pods", labelSelector=SELECTOR
            )
            replaced = sum(
                1 for p in final if uids.get(p["metadata"]["name"]) != p["metadata"]["uid"]
            ) + len(set(uids) - {p["metadata"]["name"] for p in final})
            container_restarts = sum(
                s.get("restartCount", 0)
                for p in final
                for s in (p.get("status") or {}).get("containerStatuses") or []
            )
            operator_applied = operator_metric(metrics_port, "egpu_resizes_applied_total")
        finally:
            operator.terminate()
            operator.wait(timeout=30)
    p50, p99 = quantiles(applied)
    c50, c99 = quantiles(completed)
    return {
        "pods": len(uids),
        "steps": args.steps,
        "p50_s": round(p50, 3),
        "p99_s": round(p99, 3),
        "max_s": round(max(applied), 3),
        "completed_p50_s": round(c50, 3),
        "completed_p99_s": round(c99, 3),
        "resizes": watch.resizes,
        "operator_resizes_applied": int(operator_applied),
        "restarts": container_restarts + replaced,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32, help="usage patches in flight")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    subprocess.run([*LOCALCLUSTER, "up", "--fresh"], env=ENV, check=True, stdout=subprocess.DEVNULL)
    try:
        result = asyncio.run(run(args))
    finally:
        subprocess.run([*LOCALCLUSTER, "down"], env=ENV, check=False)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
