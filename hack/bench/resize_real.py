#!/usr/bin/env python3
"""In-place resize on a real kubelet: the time from a container's real memory use rising
to the new limit written into its cgroup.

    .venv/bin/python hack/bench/resize_real.py [--pods 6] [--steps 2]

A control plane of its own with one real kubelet node (containerd, runc, a fake-GPU
device plugin with one GPU per pod) runs the operator as a host process, reading usage
from the kubelet's /metrics/resource (the default source). One GPUWorkload with
`resize.mode: Auto` (memory only) has `--pods` members of 1 GiB and 100m CPU (the
machine has 2 cores); each runs the usage feeder of the
python test image, which really holds 950 MiB, then 1950 MiB once its limit has room,
and so on for `--steps` steps, printing the wall-clock time of each step. Each step is
0.93 of the limit it waits for, so the operator grows the pod by one 1 GiB step.

The bench polls every pod's cgroup (`memory.limit_in_bytes`, this machine's cgroup v1
hierarchy) every 20 ms and the kubelet's metrics every 250 ms through the API server:
- `p50_s` / `p99_s`: from the feeder beginning a rise (its log, wall clock; the same
  clock as the bench's, all on this machine) to the cgroup's new limit, per pod and
  step; this includes the rise itself (`rise_*`: writing about 1 GiB of pages);
- `from_visible_*`: from the kubelet's metrics first showing a use above the target
  share of the limit (0.8: what calls for growth, seen by any reader of the real
  metrics path) to the cgroup's new limit;
- `visible_lag_*`: from the rise beginning to the kubelet's metrics showing that (the
  kubelet's stats refresh: cAdvisor housekeeping, 10 s by default);
- `to_spec_*`: from the rise beginning to the pod's spec asking for the new limit (the
  operator's resize, seen by the bench's 4 Hz listing), and `kubelet_apply_*`: from
  there to the cgroup (the kubelet applying the in-place resize);
- `raised_ahead_of_use`: limits raised before the rise began (must be 0).
How many pods: memory-bound here (each step holds ~1 GiB more per pod on a 24 GiB,
2-core machine that also runs the control plane); the real node allows 32 pods.
`kubelet_gpus_differ_from_plan`: pods whose fake GPUs from the kubelet (device plugin)
are not the ones the binder planned (`egpu.io/gpu-ids`): such nodes are node-exact and
GPU-advisory. `restarts` (container restarts plus pods replaced) must stay 0. Last
line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO / "hack"))
sys.path.insert(0, str(REPO / "hack" / "bench"))

from resize import free_port, quantiles  # noqa: E402

import realnode  # noqa: E402
from egpu.domain.kubelet_metrics import parse_resource_metrics  # noqa: E402
from egpu.engines.resize.model import DEFAULT_MEMORY_POLICY  # noqa: E402

LOCALCLUSTER = [sys.executable, str(REPO / "hack" / "localcluster.py")]
KUBECTL = str(Path(sys.executable).parent / "kubectl")
FEEDER = "/usr/local/bin/egpu-usage-feeder"  # hack/image/usage_feeder.py, in the image
NODE = "egpu-real-0"
MODEL = "EGPU-FAKE-GPU"
NAME = "bench-grow"
GIB, MIB = 1 << 30, 1 << 20
TARGET = DEFAULT_MEMORY_POLICY.target_utilization
TOLERATION = {"key": "egpu.io/real-node", "operator": "Exists", "effect": "NoSchedule"}


def kubectl(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        [KUBECTL, *args], input=stdin, text=True, capture_output=True, env=env, check=True
    )
    return out.stdout


def workload(pods: int, steps: int) -> dict[str, Any]:
    memory_steps = ",".join(str(1000 * (k + 1) - 50) for k in range(steps))
    command = [FEEDER, "--memory-mib", memory_steps, "--cpu-millicores", "20"]
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


def given_gpus(limit: Path) -> set[int]:
    """The fake GPUs the kubelet gave the container (its NVIDIA_VISIBLE_DEVICES, read
    from /proc of a process in its cgroup; the device plugin names them GPU-fake-N)."""
    pid = (limit.parent / "cgroup.procs").read_text().split()[0]
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    value = next(e for e in env if e.startswith(b"NVIDIA_VISIBLE_DEVICES=")).split(b"=", 1)[1]
    return {int(d.rsplit("-", 1)[1]) for d in value.decode().split(",")}


def working_sets(env: dict[str, str]) -> dict[str, float]:
    text = kubectl(env, "get", "--raw", f"/api/v1/nodes/{NODE}/proxy/metrics/resource")
    return {
        pod: reading.memory_bytes
        for (_, pod, container), reading in parse_resource_metrics(text).items()
        if container == "main" and reading.memory_bytes is not None
    }


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
    operator = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "egpu-operator"),
            "--kubeconfig", str(run_dir / "kubeconfig"),
            "--bind-address", "127.0.0.1",
            "--health-port", str(free_port()),
            "--metrics-port", str(free_port()),
            "--log-level", "WARNING",
        ],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        return measure(args, run_dir, env)
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
    applied: dict[tuple[str, int], float] = {}  # (pod, new limit GiB) -> when
    visible: dict[tuple[str, int], float] = {}  # (pod, step MiB) -> when the kubelet showed it
    resized: dict[tuple[str, int], float] = {}  # (pod, GiB) -> when its spec asked for it
    steps_mib = [1000 * (k + 1) - 50 for k in range(args.steps)]
    want = {(name, k + 2) for name in files for k in range(args.steps)}
    last_scrape = 0.0
    while not want <= applied.keys():
        now = time.time()
        for name, path in files.items():
            value = int(path.read_text())
            if value != limits.get(name):
                limits[name] = value
                applied.setdefault((name, value // GIB), now)
        if now - last_scrape >= 0.25:
            last_scrape = now
            for pod in members(env):
                spec = pod["spec"]["containers"][0]["resources"]["limits"]["memory"]
                if spec.endswith("Gi"):
                    resized.setdefault((pod["metadata"]["name"], int(spec[:-2])), now)
            for name, used in working_sets(env).items():
                # The use that calls for growth: above the target share of the limit.
                k = limits.get(name, GIB) // GIB - 1
                if name in limits and k < len(steps_mib) and used > TARGET * limits[name]:
                    visible.setdefault((name, steps_mib[k]), now)
        if time.monotonic() > deadline:
            raise RuntimeError(f"resizes seen: {sorted(applied)}")
        time.sleep(0.02)
    total, from_visible, lag, rise, to_spec, kubelet = [], [], [], [], [], []
    ahead = 0  # limits raised before the feeder's rise began (not a response to it)
    for name in files:
        times = step_times(env, name)
        for k, step in enumerate(steps_mib):
            done, began = applied[(name, k + 2)], times.get(("rising", step))
            if began is None or began > done:
                ahead += 1
                print(f"{name}: {k + 2} GiB at {done:.3f}, rise to {step} MiB at {began}",
                      file=sys.stderr)  # fmt: skip
                continue
            total.append(done - began)
            if ("step", step) in times:
                rise.append(times[("step", step)] - began)
            if (name, k + 2) in resized:
                to_spec.append(resized[(name, k + 2)] - began)
                kubelet.append(done - resized[(name, k + 2)])
            if (name, step) in visible:
                from_visible.append(done - visible[(name, step)])
                lag.append(visible[(name, step)] - began)
    after = members(env)
    restarts = sum(
        s.get("restartCount", 0) for p in after for s in p["status"].get("containerStatuses", [])
    ) + sum(1 for p in after if uids.get(p["metadata"]["name"]) != p["metadata"]["uid"])
    p50, p99 = quantiles(total)
    v50, v99 = quantiles(from_visible)
    l50, l99 = quantiles(lag)
    r50, r99 = quantiles(rise)
    s50, s99 = quantiles(to_spec)
    k50, k99 = quantiles(kubelet)
    return {
        "bench": "resize-real",
        "pods": args.pods,
        "steps": args.steps,
        "resizes": len(total),
        "raised_ahead_of_use": ahead,
        "p50_s": round(p50, 3),
        "p99_s": round(p99, 3),
        "from_visible_p50_s": round(v50, 3),
        "from_visible_p99_s": round(v99, 3),
        "visible_lag_p50_s": round(l50, 3),
        "visible_lag_p99_s": round(l99, 3),
        "to_spec_p50_s": round(s50, 3),
        "to_spec_p99_s": round(s99, 3),
        "kubelet_apply_p50_s": round(k50, 3),
        "kubelet_apply_p99_s": round(k99, 3),
        "rise_p50_s": round(r50, 3),
        "rise_p99_s": round(r99, 3),
        "pods_running_after_s": round(ready_s, 1),
        "kubelet_gpus_differ_from_plan": differs,
        "restarts": restarts,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=6)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600)
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
        shutil.rmtree(run_dir, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
