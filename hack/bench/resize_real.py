#!/usr/bin/env python3
"""In-place resize on a real kubelet: the time from a container's real memory use rising
to the new limit written into its cgroup.

    .venv/bin/python hack/bench/resize_real.py [--pods 6] [--steps 2]

A control plane of its own with one real kubelet node (containerd, runc, a fake-GPU
device plugin with one GPU per pod; the kubelet's container stats from the CRI,
hack/realnode.py) runs the operator as a host process, reading usage from the
kubelet's /metrics/resource (the default source). One GPUWorkload with
`resize.mode: Auto` (memory only) has `--pods` members of 1 GiB and 100m CPU (the
machine has 2 cores); each runs the usage feeder of the python test image, which
really holds 950 MiB, then 1950 MiB once its limit has room, and so on for `--steps`
steps, each rise one populated mapping (allocated in one call), printing the
wall-clock time of each rise's start and end. Each step is 0.93 of the limit it waits
for, so the operator grows the pod by one 1 GiB step. The feeders hold off their first
rise HOLD_OFF_S, so that the bench watches every cgroup before any grows.

The bench polls every pod's cgroup (its limit and working set, this machine's cgroup
v1 hierarchy) every 20 ms, watches the member pods and reads the kubelet's metrics every
250 ms through the API server, the last two from a thread of their own:
- `p50_s` / `p99_s`: from the container's use rising above the share of its limit
  that calls for growth (GROWTH_SHARE: 0.8 target utilisation beyond the 10 %
  hysteresis band, 0.88), read from its cgroup (`memory.usage_in_bytes`
  less `total_inactive_file`, the working set the kubelet reports) in the same 20 ms
  polls, to the cgroup's new limit, per pod and step; the rise itself (`rise_*`, the
  feeder's log: allocating a step takes seconds on a loaded machine) is not counted;
- `visible_lag_*`: from there to the kubelet's metrics first showing it (through the
  API server, as any reader of the real metrics path sees it);
- `operator_*`: from the kubelet's metrics showing it to the pod's spec asking for the
  new limit (the watch): the operator's scrape cadence, decision and patch;
  `to_spec_*`: from the use crossing to the spec; `operator_internal_*`: the
  operator's own histogram (a usage change read -> the patch answered), interpolated
  in its buckets;
- `kubelet_apply_*`: from the spec to the cgroup (the kubelet's in-place resize);
- `previous_unsettled`: steps whose use crossed before the pod's status showed the
  previous resize done (the operator leaves a pod alone while a resize is under way),
  and `previous_settled_after_*`: by how much;
- `raised_ahead_of_use`: limits raised before the use crossed (must be 0).
How many pods: memory-bound here (each step holds ~1 GiB more per pod on a 24 GiB,
2-core machine that also runs the control plane); the real node allows 32 pods.
`kubelet_gpus_differ_from_plan`: pods whose fake GPUs from the kubelet (device plugin)
are not the ones the binder planned (`egpu.io/gpu-ids`): such nodes are node-exact and
GPU-advisory. `restarts` (container restarts plus pods replaced) must stay 0. Last
line: JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO / "hack"))
sys.path.insert(0, str(REPO / "hack" / "bench"))

from resize import free_port, operator_quantiles, quantiles  # noqa: E402

import realnode  # noqa: E402
from egpu.domain.kubelet_metrics import parse_resource_metrics  # noqa: E402
from egpu.engines.resize.model import ResizePolicy  # noqa: E402
from egpu.kube.client import Credentials, KubeClient  # noqa: E402

LOCALCLUSTER = [sys.executable, str(REPO / "hack" / "localcluster.py")]
KUBECTL = str(Path(sys.executable).parent / "kubectl")
FEEDER = "/usr/local/bin/egpu-usage-feeder"  # hack/image/usage_feeder.py, in the image
NODE = "egpu-real-0"
MODEL = "EGPU-FAKE-GPU"
NAME = "bench-grow"
GIB, MIB = 1 << 30, 1 << 20
# The share of the memory request (here also the limit) above which the engine grows a
# pod: the wanted request (use / target utilisation) beyond the hysteresis band.
_POLICY = ResizePolicy()
GROWTH_SHARE = _POLICY.memory.target_utilization * (1 + _POLICY.hysteresis)
TOLERATION = {"key": "egpu.io/real-node", "operator": "Exists", "effect": "NoSchedule"}
SCRAPE_S = 0.25
HOLD_OFF_S = 30  # the feeders' first rise waits for the bench to watch every cgroup


def kubectl(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        [KUBECTL, *args], input=stdin, text=True, capture_output=True, env=env, check=True
    )
    return out.stdout


def workload(pods: int, steps: int) -> dict[str, Any]:
    memory_steps = ",".join(str(1000 * (k + 1) - 50) for k in range(steps))
    command = [
        FEEDER,
        "--memory-mib",
        memory_steps,
        "--cpu-millicores",
        "20",
        "--hold-off-s",
        str(HOLD_OFF_S),
    ]
    return {
        "apiVersion": "egpu.io/v1alpha1",
        "kind": "GPUWorkload",
        "metadata": {"name": NAME},
        "spec": {
            "replicas": pods,
            "gpusPerPod": 1,
            "gpuModel": MODEL,
            "gang": {"policy": "None"},
            "resize": {
                "mode": "Auto",
                "memory": {"min": "1Gi", "max": f"{steps + 1}Gi", "step": "1Gi"},
            },
            "template": {
                "spec": {
                    "tolerations": [TOLERATION],
                    "terminationGracePeriodSeconds": 2,
                    "containers": [
                        {
                            "name": "main",
                            "image": "egpu.local/python:3.11",
                            "imagePullPolicy": "Never",
                            "command": command,
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "1Gi"},
                                "limits": {"cpu": "1", "memory": "1Gi"},
                            },
                        }
                    ],
                },
            },
        },
    }


def members(env: dict[str, str]) -> list[dict[str, Any]]:
    out = kubectl(env, "get", "pods", "-l", f"egpu.io/workload={NAME}", "-o", "json")
    return list(json.loads(out)["items"])


def running(pod: dict[str, Any]) -> bool:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return bool(statuses) and "running" in statuses[0]["state"]


def limit_file(run_dir: Path, pod: dict[str, Any]) -> Path:
    uid = pod["metadata"]["uid"]
    container = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    root = realnode.CGROUP_FS / "memory" / realnode.Node(run_dir, 0).cgroup_root
    found = list(root.rglob(f"pod{uid}/{container}/memory.limit_in_bytes"))
    if len(found) != 1:
        raise RuntimeError(f"cgroup of {pod['metadata']['name']}: {found}")
    return found[0]


def working_set(limit: Path) -> int:
    """The container's working set as the kernel counts it now (cgroup v1: usage less
    inactive file pages, what the kubelet reports as container_memory_working_set_bytes)."""
    usage = int((limit.parent / "memory.usage_in_bytes").read_text())
    for line in (limit.parent / "memory.stat").read_text().splitlines():
        if line.startswith("total_inactive_file "):
            return max(0, usage - int(line.split()[1]))
    return usage


def given_gpus(limit: Path) -> set[int]:
    """The fake GPUs the kubelet gave the container (its NVIDIA_VISIBLE_DEVICES, read
    from /proc of a process in its cgroup; the device plugin names them GPU-fake-N)."""
    pid = (limit.parent / "cgroup.procs").read_text().split()[0]
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    value = next(e for e in env if e.startswith(b"NVIDIA_VISIBLE_DEVICES=")).split(b"=", 1)[1]
    return {int(d.rsplit("-", 1)[1]) for d in value.decode().split(",")}


def settled(pod: dict[str, Any]) -> str | None:
    """The memory limit (e.g. `2Gi`) the pod's status shows applied, when no resize is
    under way (the spec's limit reported, no resize condition); else None."""
    spec = pod["spec"]["containers"][0]["resources"]["limits"]["memory"]
    statuses = pod.get("status", {}).get("containerStatuses") or [{}]
    shown = ((statuses[0].get("resources") or {}).get("limits") or {}).get("memory")
    busy = any(
        c.get("type") in ("PodResizePending", "PodResizeInProgress")
        for c in pod.get("status", {}).get("conditions") or []
    )
    return str(spec) if shown == spec and not busy else None


class Observer:
    """From a thread and event loop of its own (so the cgroup polling keeps its pace):
    watches the member pods, recording when each spec first asks for a memory limit
    and when the status shows it settled, and reads the kubelet's metrics every
    SCRAPE_S, recording when each step's use is first shown above GROWTH_SHARE of the
    current limit (the bench's cgroup readings)."""

    def __init__(self, kubeconfig: str, steps_mib: list[int], limits: dict[str, int]) -> None:
        self.kubeconfig = kubeconfig
        self.steps_mib = steps_mib
        self.limits = limits  # pod -> limit in its cgroup, kept by the main thread
        self.resized: dict[tuple[str, int], float] = {}  # (pod, GiB) -> spec asks for it
        self.settled: dict[tuple[str, int], float] = {}  # (pod, GiB) -> status shows it
        self.visible: dict[tuple[str, int], float] = {}  # (pod, step MiB) -> kubelet shows it
        self.stop = threading.Event()
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.stop.set()
        self._thread.join(timeout=10)

    def _main(self) -> None:
        try:
            asyncio.run(self._observe())
        except BaseException as exc:  # reported by the main thread
            if not self.stop.is_set():
                self.failure = exc

    async def _observe(self) -> None:
        async with KubeClient(Credentials.load(self.kubeconfig)) as client:
            watch = asyncio.create_task(self._watch(client))
            try:
                while not self.stop.is_set():
                    text = await client.get_text(f"/api/v1/nodes/{NODE}/proxy/metrics/resource")
                    self._see_metrics(text, time.time())
                    await asyncio.sleep(SCRAPE_S)
            finally:
                watch.cancel()

    def _see_metrics(self, text: str, now: float) -> None:
        for (_, pod, container), reading in parse_resource_metrics(text).items():
            limit = self.limits.get(pod)
            if container != "main" or reading.memory_bytes is None or limit is None:
                continue
            k = limit // GIB - 1  # the step that the current limit waits for
            if k < len(self.steps_mib) and reading.memory_bytes > GROWTH_SHARE * limit:
                self.visible.setdefault((pod, self.steps_mib[k]), now)

    async def _watch(self, client: KubeClient) -> None:
        path = "/api/v1/namespaces/default/pods"
        selector = f"egpu.io/workload={NAME}"
        items, rv = await client.list_all(path, labelSelector=selector)
        for pod in items:
            self._see_pod(pod, time.time())
        async for event in client.watch(path, rv, labelSelector=selector):
            if event.get("type") in ("ADDED", "MODIFIED"):
                self._see_pod(event["object"], time.time())

    def _see_pod(self, pod: dict[str, Any], now: float) -> None:
        name = pod["metadata"]["name"]
        spec = str(pod["spec"]["containers"][0]["resources"]["limits"]["memory"])
        if spec.endswith("Gi"):
            self.resized.setdefault((name, int(spec[:-2])), now)
        shown = settled(pod)
        if shown is not None and shown.endswith("Gi"):
            self.settled.setdefault((name, int(shown[:-2])), now)


def step_times(env: dict[str, str], name: str) -> dict[tuple[str, int], float]:
    """When each feeder step (MiB) began to rise and was reached: ("rising", N) and
    ("step", N), wall clock, from its log."""
    times = {}
    for line in kubectl(env, "logs", name).splitlines():
        words = line.split()
        if words[:1] == ["step"] and len(words) == 5:
            times[("step", int(words[1]))] = float(words[4])
        elif words[:2] == ["rising", "to"] and len(words) == 6:
            times[("rising", int(words[2]))] = float(words[5])
    return times


def run(args: argparse.Namespace, run_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    for _ in range(120):  # pods need the namespace's ServiceAccount
        if (
            subprocess.run(
                [KUBECTL, "get", "sa", "default"], env=env, capture_output=True
            ).returncode
            == 0
        ):
            break
        time.sleep(0.5)
    kubectl(env, "label", "--overwrite", "node", NODE, f"nvidia.com/gpu.product={MODEL}")
    kubectl(env, "apply", "--server-side", "-f", str(REPO / "crds"))
    kubectl(env, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    log = (run_dir / "operator.log").open("ab")
    metrics_port = free_port()
    operator = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "egpu-operator"),
            "--kubeconfig", str(run_dir / "kubeconfig"),
            "--bind-address", "127.0.0.1",
            "--health-port", str(free_port()),
            "--metrics-port", str(metrics_port),
            "--log-level", args.operator_log_level,
        ],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        result = measure(args, run_dir, env)
        # The operator's own clock: a usage change read -> the resize patched.
        o50, o99 = operator_quantiles(metrics_port, "egpu_resize_latency_seconds")
        result["operator_internal_p50_s"], result["operator_internal_p99_s"] = (
            round(o50, 3),
            round(o99, 3),
        )
        return result
    finally:
        operator.terminate()
        operator.wait(timeout=30)


def measure(args: argparse.Namespace, run_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    started = time.monotonic()
    kubectl(env, "apply", "-f", "-", stdin=json.dumps(workload(args.pods, args.steps)))
    deadline = time.monotonic() + args.timeout
    while True:
        pods = members(env)
        if len(pods) == args.pods and all(running(p) for p in pods):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{sum(map(running, pods))}/{args.pods} pods running")
        time.sleep(1)
    ready_s = time.monotonic() - started
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}
    files = {p["metadata"]["name"]: limit_file(run_dir, p) for p in pods}
    # Device-plugin nodes are GPU-advisory: how often the kubelet gave other GPUs.
    planned = {
        p["metadata"]["name"]: {
            int(i) for i in p["metadata"]["annotations"]["egpu.io/gpu-ids"].split(",")
        }
        for p in pods
    }
    differs = sum(1 for name, path in files.items() if given_gpus(path) != planned[name])
    limits: dict[str, int] = {}
    crossed: dict[tuple[str, int], float] = {}  # (pod, step MiB) -> use above the target
    applied: dict[tuple[str, int], float] = {}  # (pod, new limit GiB) -> when
    steps_mib = [1000 * (k + 1) - 50 for k in range(args.steps)]
    want = {(name, k + 2) for name in files for k in range(args.steps)}
    observer = Observer(env["KUBECONFIG"], steps_mib, limits)
    observer.start()
    try:
        while not want <= applied.keys():
            now = time.time()
            for name, path in files.items():
                value = int(path.read_text())
                if value != limits.get(name):
                    if name not in limits and value > GIB:
                        raise RuntimeError(f"{name} grew before the bench watched it")
                    limits[name] = value
                    applied.setdefault((name, value // GIB), now)
                k = value // GIB - 1  # the step that this limit waits for
                if k < len(steps_mib) and working_set(path) > GROWTH_SHARE * value:
                    crossed.setdefault((name, steps_mib[k]), now)
            if observer.failure is not None:
                raise RuntimeError(f"observing the pods failed: {observer.failure!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"resizes seen: {sorted(applied)}")
            time.sleep(0.02)
    finally:
        observer.close()
    figures: dict[str, list[float]] = {
        k: [] for k in ("total", "rise", "lag", "to_spec", "operator", "kubelet", "unsettled")
    }
    ahead = 0  # limits raised before the use crossed the target (not a response to it)
    for name in files:
        times = step_times(env, name)
        for k, step in enumerate(steps_mib):
            gib = k + 2
            done, began = applied[(name, gib)], crossed.get((name, step))
            if began is None or began > done:
                ahead += 1
                print(f"{name}: {gib} GiB at {done:.3f}, use above the target at {began}",
                      file=sys.stderr)  # fmt: skip
                continue
            figures["total"].append(done - began)
            if ("step", step) in times and ("rising", step) in times:
                figures["rise"].append(times[("step", step)] - times[("rising", step)])
            seen, spec = observer.visible.get((name, step)), observer.resized.get((name, gib))
            if seen is not None:
                figures["lag"].append(seen - began)
                if spec is not None:
                    figures["operator"].append(spec - seen)
            if spec is not None:
                figures["to_spec"].append(spec - began)
                figures["kubelet"].append(done - spec)
            previous = observer.settled.get((name, gib - 1))
            if k > 0 and previous is not None and previous > began:
                figures["unsettled"].append(previous - began)
    after = members(env)
    restarts = sum(
        s.get("restartCount", 0) for p in after for s in p["status"].get("containerStatuses", [])
    ) + sum(1 for p in after if uids.get(p["metadata"]["name"]) != p["metadata"]["uid"])
    result: dict[str, Any] = {
        "bench": "resize-real",
        "pods": args.pods,
        "steps": args.steps,
        "resizes": len(figures["total"]),
        "raised_ahead_of_use": ahead,
    }
    for key, label in (
        ("total", ""),
        ("lag", "visible_lag_"),
        ("operator", "operator_"),
        ("to_spec", "to_spec_"),
        ("kubelet", "kubelet_apply_"),
        ("rise", "rise_"),
    ):
        p50, p99 = quantiles(figures[key])
        result[f"{label}p50_s"], result[f"{label}p99_s"] = round(p50, 3), round(p99, 3)
    result["max_s"] = round(max(figures["total"], default=float("nan")), 3)
    result["previous_unsettled"] = len(figures["unsettled"])
    u50, u99 = quantiles(figures["unsettled"])
    result["previous_settled_after_p50_s"] = round(u50, 3)
    result["previous_settled_after_p99_s"] = round(u99, 3)
    result["pods_running_after_s"] = round(ready_s, 1)
    result["kubelet_gpus_differ_from_plan"] = differs
    result["restarts"] = restarts
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=6)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--operator-log-level", default="WARNING")
    parser.add_argument("--keep-logs", help="copy the run's logs here before removing it")
    args = parser.parse_args()
    # Short: the kubelet's sockets live under it (a unix socket path has 107 bytes).
    run_dir = Path(tempfile.mkdtemp(prefix="egpu-br-"))
    env = {**os.environ, "EGPU_RUN_DIR": str(run_dir), "KUBECONFIG": str(run_dir / "kubeconfig")}
    env.update(EGPU_REAL_NODES="1", EGPU_REAL_NODE_GPUS=str(args.pods))
    subprocess.run([*LOCALCLUSTER, "up"], env=env, check=True, stdout=subprocess.DEVNULL)
    try:
        result = run(args, run_dir, env)
    finally:
        subprocess.run([*LOCALCLUSTER, "down"], env=env, check=False, capture_output=True)
        if args.keep_logs:
            shutil.copytree(run_dir / "logs", args.keep_logs, dirs_exist_ok=True)
            shutil.copy(run_dir / "operator.log", args.keep_logs)
        shutil.rmtree(run_dir, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
