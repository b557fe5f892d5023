#!/usr/bin/env python3
"""In-place resize, end to end, on the local control plane: the time from a usage
change becoming visible to the resize being applied.

    .venv/bin/python hack/bench/resize.py [--pods 1000] [--steps 2]

A fresh control plane (its own run directory) gets 100 simulated nodes of 16 GPUs
and GPUWorkloads with `resize.mode: Auto` whose 1,000 single-GPU member pods request
2Gi of memory and "use" 1.5Gi (`egpu.io/sim-usage`). Once all run and the operator
is idle, each step raises every pod's memory use by about 0.8Gi, which is one 1 GiB
step of growth, with 32 usage patches in flight (a 1,000-pod flood).

Per pod, the clock starts when the API server has acknowledged the usage change and
stops when the bench's watch (its own thread) sees the pod's spec resized
(pods/resize accepted): `p50_s` / `p99_s`. Also reported:
- `from_seen_*`: from the bench's watch seeing the new usage to it seeing the resize
  (leaves out the API server's watch delivery, `watch_lag_*`);
- `operator_*`: the operator's own histogram, from the pass that saw the change to the
  resize patch answered (interpolated within buckets);
- `completed_*`: until the simulated kubelet (KWOK, 300 ms delay) reports the new size
  in the pod's status.
`restarts` is container restarts plus pods replaced (both must stay 0). The bench, the
operator and the control plane share the machine. Last line: one JSON object.
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
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "operator"))

from egpu.kube.client import ApiError, Credentials, KubeClient, gather_limited  # noqa: E402
from egpu.sim.nodes import ClusterShape, create_nodes  # noqa: E402
from egpu.sim.usage import usage_patch  # noqa: E402
from egpu.state.usage import USAGE_ANNOTATION  # noqa: E402

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


def operator_quantiles(port: int, name: str) -> tuple[float, float]:
    """p50 and p99 of an operator histogram, interpolated inside its buckets."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    buckets = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1] if buckets else 0.0

    def quantile(q: float) -> float:
        low_bound, low_count = 0.0, 0.0
        for bound, count in buckets:
            if count >= q * total:
                if bound == float("inf") or count == low_count:
                    return low_bound
                return low_bound + (bound - low_bound) * (q * total - low_count) / (
                    count - low_count
                )
            low_bound, low_count = bound, count
        return float("nan")

    return quantile(0.5), quantile(0.99)


class SpecWatch:
    """Watches the member pods from its own thread and event loop (so the bench's patch
    flood does not delay what it sees); records when each pod first shows the new usage,
    the wanted memory request in its spec, and in its status."""

    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self.want = ""
        self.applied: dict[str, float] = {}
        self.completed: dict[str, float] = {}
        self.usage_text = ""
        self.usage_seen: dict[str, float] = {}
        self.resizes = 0
        self.expected = 0
        self.all_completed = threading.Event()
        self._last_spec: dict[str, str | None] = {}

    def expect(self, want: str, pods: int, usage_text: str) -> None:
        self.want, self.expected, self.usage_text = want, pods, usage_text
        self.applied, self.completed, self.usage_seen = {}, {}, {}
        self.all_completed.clear()

    def seed(self, items: list[dict[str, Any]]) -> None:
        for pod in items:
            self._last_spec[pod["metadata"]["name"]] = memory_of(pod)[0]

    def see(self, pod: dict[str, Any], at: float) -> None:
        name = pod["metadata"]["name"]
        spec, reported = memory_of(pod)
        if spec != self._last_spec.get(name):
            self._last_spec[name] = spec
            self.resizes += 1
        annotations = pod["metadata"].get("annotations") or {}
        if annotations.get(USAGE_ANNOTATION) == self.usage_text:
            self.usage_seen.setdefault(name, at)
        if spec == self.want:
            self.applied.setdefault(name, at)
        if reported == self.want:
            self.completed.setdefault(name, at)
            if len(self.completed) >= self.expected:
                self.all_completed.set()

    def start(self, resource_version: str) -> None:
        def watch() -> None:
            try:
                asyncio.run(self._watch(resource_version))
            except Exception:
                if not self.stopped:  # a watch cut by the cluster going down is expected
                    raise

        self.stopped = False
        threading.Thread(target=watch, daemon=True).start()

    async def _watch(self, resource_version: str) -> None:
        path = f"/api/v1/namespaces/{NAMESPACE}/pods"
        rv = resource_version
        async with KubeClient(Credentials.load(self.kubeconfig)) as client:
            while True:
                try:
                    async for event in client.watch(path, rv, labelSelector=SELECTOR):
                        at = time.monotonic()
                        obj = event.get("object") or {}
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if event.get("type") in ("ADDED", "MODIFIED"):
                            self.see(obj, at)
                except ApiError as exc:
                    if exc.status != 410:
                        raise
                    items, rv = await client.list_all(path, labelSelector=SELECTOR)
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
    for argv in (
        ["apply", "--server-side", "-f", str(REPO / "crds")],
        ["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"],
    ):
        await asyncio.to_thread(
            subprocess.run,
            [KUBECTL, *argv],
            env={**ENV, "KUBECONFIG": kubeconfig},
            check=True,
            stdout=subprocess.DEVNULL,
        )
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

            watch = SpecWatch(kubeconfig)
            watch.seed(items)
            _, rv = await client.list_all(
                f"/api/v1/namespaces/{NAMESPACE}/pods", labelSelector=SELECTOR
            )
            watch.start(rv)
            applied: list[float] = []
            completed: list[float] = []
            watch_lag: list[float] = []
            from_seen: list[float] = []
            for step in range(1, args.steps + 1):
                want = f"{START_MEMORY_GIB + step}Gi"
                # Use at 0.8 x (old size + 1 GiB) minus a little: one 1 GiB step.
                target_use = (START_MEMORY_GIB + step) * 0.8 - 0.1
                patch = usage_patch(use(target_use))
                watch.expect(want, len(uids), patch["metadata"]["annotations"][USAGE_ANNOTATION])
                visible: dict[str, float] = {}

                async def raise_use(
                    name: str, patch: dict[str, Any] = patch, visible: dict[str, float] = visible
                ) -> None:
                    await client.patch(f"/api/v1/namespaces/{NAMESPACE}/pods/{name}", patch)
                    visible[name] = time.monotonic()

                started = time.monotonic()
                results = await gather_limited(args.concurrency, *(raise_use(n) for n in uids))
                failures = [r for r in results if isinstance(r, BaseException)]
                if failures:
                    raise RuntimeError(f"{len(failures)} usage patches failed: {failures[0]}")
                if not await asyncio.to_thread(watch.all_completed.wait, args.timeout):
                    raise RuntimeError(
                        f"step {step}: only {len(watch.applied)} applied, "
                        f"{len(watch.completed)} completed of {len(uids)}"
                    )
                step_applied = [watch.applied[n] - visible[n] for n in uids]
                step_completed = [watch.completed[n] - visible[n] for n in uids]
                watch_lag += [
                    watch.usage_seen[n] - visible[n] for n in uids if n in watch.usage_seen
                ]
                from_seen += [
                    watch.applied[n] - watch.usage_seen[n] for n in uids if n in watch.usage_seen
                ]
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

            watch.stopped = True
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
            inside = operator_quantiles(metrics_port, "egpu_resize_latency_seconds")
        finally:
            operator.terminate()
            operator.wait(timeout=30)
    p50, p99 = quantiles(applied)
    c50, c99 = quantiles(completed)
    w50, w99 = quantiles(watch_lag)
    s50, s99 = quantiles(from_seen)
    return {
        "pods": len(uids),
        "steps": args.steps,
        "p50_s": round(p50, 3),
        "p99_s": round(p99, 3),
        "max_s": round(max(applied), 3),
        "completed_p50_s": round(c50, 3),
        "completed_p99_s": round(c99, 3),
        "from_seen_p50_s": round(s50, 3),
        "from_seen_p99_s": round(s99, 3),
        "watch_lag_p50_s": round(w50, 3),
        "watch_lag_p99_s": round(w99, 3),
        "operator_p50_s": round(inside[0], 3),
        "operator_p99_s": round(inside[1], 3),
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
