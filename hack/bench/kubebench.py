"""What the end-to-end benchmarks share: a fresh local control plane with simulated
nodes, backlogs of pods, a watch that times binds, the operator as a process, and its
resident memory.

Imported by hack/bench/bind.py and hack/bench/scale.py (run as scripts; this
directory is on sys.path then).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "operator"))

from egpu.kube.client import ApiError, Credentials, KubeClient, gather_limited  # noqa: E402
from egpu.sim.nodes import ClusterShape, create_nodes  # noqa: E402

LOCALCLUSTER = [sys.executable, str(REPO / "hack" / "localcluster.py")]
BIN = Path(sys.executable).parent
JSON = dict[str, Any]
T = TypeVar("T")


@dataclass
class Cluster:
    """One local control plane in `run_dir`, with kube-scheduler held back."""

    run_dir: Path
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.env = {**os.environ, "EGPU_RUN_DIR": str(self.run_dir)}

    @property
    def kubeconfig(self) -> str:
        return str(self.run_dir / "kubeconfig")

    def up(self) -> float:
        """A fresh control plane (etcd emptied); returns seconds taken."""
        t0 = time.monotonic()
        env = {**self.env, "EGPU_HOLD_BACK": "kube-scheduler"}
        subprocess.run(
            [*LOCALCLUSTER, "up", "--fresh"], env=env, check=True, stdout=subprocess.DEVNULL
        )
        return time.monotonic() - t0

    def down(self) -> None:
        subprocess.run([*LOCALCLUSTER, "down"], env=self.env, check=False)

    def start_scheduler(self, profile: str = "default") -> None:
        subprocess.run(
            [*LOCALCLUSTER, "start-scheduler", "--profile", profile], env=self.env, check=True
        )

    def kubectl(self, *args: str) -> str:
        proc = subprocess.run(
            [str(BIN / "kubectl"), *args],
            text=True,
            capture_output=True,
            env={**self.env, "KUBECONFIG": self.kubeconfig},
            timeout=300,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr}")
        return proc.stdout

    def install_crds(self) -> None:
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
        self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=120s")
        self.kubectl("apply", "-f", str(REPO / "examples" / "topology.yaml"))


def ready(node: JSON) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )


async def add_nodes(cluster: Cluster, shape: ClusterShape, timeout: float = 900) -> float:
    """Create the shape's nodes and wait until KWOK has made all of them Ready."""
    t0 = time.monotonic()
    await asyncio.to_thread(create_nodes, shape, cluster.kubeconfig, 32)
    async with KubeClient(Credentials.load(cluster.kubeconfig)) as client:
        while time.monotonic() - t0 < timeout:
            nodes, _ = await client.list_all("/api/v1/nodes")
            if sum(1 for n in nodes if ready(n)) >= shape.node_count:
                return time.monotonic() - t0
            await asyncio.sleep(2)
    raise RuntimeError(f"not all {shape.node_count} nodes Ready within {timeout:.0f}s")


async def create_namespace(client: KubeClient, namespace: str) -> None:
    try:
        await client.create(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        )
    except ApiError as exc:
        if not exc.conflict:
            raise
    for _ in range(150):  # the ServiceAccount admission needs the default account
        try:
            await client.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/default")
            return
        except ApiError:
            await asyncio.sleep(0.2)
    raise RuntimeError(f"no default ServiceAccount in {namespace}")


def gpu_pod(name: str, scheduler: str, gpus: int = 1) -> JSON:
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
                    "resources": {
                        "limits": {"nvidia.com/gpu": str(gpus), "cpu": "1", "memory": "4Gi"}
                    },
                }
            ],
        },
    }


async def create_all(
    client: KubeClient, path: str, bodies: Iterable[JSON], limit: int = 48
) -> float:
    """POST every body, `limit` at a time; returns seconds taken. Any failure raises."""
    started = time.monotonic()
    results = await gather_limited(limit, *(client.create(path, b) for b in bodies))
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(results)} creations failed: {errors[0]}")
    return time.monotonic() - started


async def create_backlog(
    client: KubeClient, namespace: str, count: int, scheduler: str, gpus: int = 1
) -> float:
    await create_namespace(client, namespace)
    return await create_all(
        client,
        f"/api/v1/namespaces/{namespace}/pods",
        (gpu_pod(f"p-{i:06d}", scheduler, gpus) for i in range(count)),
    )


async def watch_binds(
    client: KubeClient,
    namespace: str,
    count: int,
    timeout: float,
    on_bind: Callable[[str, float], None] | None = None,
) -> dict[str, float]:
    """Watch the namespace's pods until `count` are bound; returns when each was first
    seen bound (monotonic time; pods bound before the first LIST get the LIST's time)."""
    path = f"/api/v1/namespaces/{namespace}/pods"
    bound: dict[str, float] = {}

    def seen(pod: JSON) -> None:
        name = pod["metadata"]["name"]
        if (pod.get("spec") or {}).get("nodeName") and name not in bound:
            bound[name] = time.monotonic()
            if on_bind is not None:
                on_bind(name, bound[name])

    items, rv = await client.list_all(path)
    for p in items:
        seen(p)
    deadline = time.monotonic() + timeout
    while len(bound) < count and time.monotonic() < deadline:
        try:
            async for event in client.watch(path, rv, timeout_seconds=60):
                obj = event.get("object") or {}
                rv = obj.get("metadata", {}).get("resourceVersion", rv)
                if event.get("type") in ("ADDED", "MODIFIED"):
                    seen(obj)
                    if len(bound) >= count:
                        break
        except ApiError as exc:
            if exc.status != 410:
                raise
            items, rv = await client.list_all(path)
            for p in items:
                seen(p)
    if len(bound) < count:
        raise RuntimeError(f"only {len(bound)}/{count} pods bound within {timeout:.0f}s")
    return bound


def placement_quality(
    used_gpus: dict[str, int], nodes: int, gpus_per_node: int, whole: int = 8
) -> dict[str, int]:
    """Nodes used, nodes left untouched, and GPUs stranded: free on a used node with fewer
    than `whole` free, where no `whole`-GPU pod can use them."""
    free = [gpus_per_node - used for used in used_gpus.values()]
    return {
        "nodes_used": len(used_gpus),
        "nodes_whole": nodes - len(used_gpus),
        "stranded_gpus": sum(f for f in free if f < whole),
    }


def gpus_of(pod: JSON) -> int:
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        value = (res.get("limits") or {}).get("nvidia.com/gpu") or (res.get("requests") or {}).get(
            "nvidia.com/gpu"
        )
        total += int(value or 0)
    return total


def used_gpus(pods: Iterable[JSON]) -> dict[str, int]:
    used: Counter[str] = Counter()
    for p in pods:
        node = (p.get("spec") or {}).get("nodeName")
        if node:
            used[node] += gpus_of(p)
    return dict(used)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_operator(
    cluster: Cluster,
    health_port: int = 0,
    log_name: str = "operator.log",
    memtrace: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """The operator as a process of its own; under tracemalloc (hack/bench/memtrace.py)
    when `memtrace` names the file its report goes to."""
    logs = cluster.run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out = (logs / log_name).open("ab")
    command = [str(BIN / "egpu-operator")]
    if memtrace is not None:
        command = [
            sys.executable,
            str(REPO / "hack" / "bench" / "memtrace.py"),
            str(memtrace),
            "--",
        ]
    return subprocess.Popen(
        [
            *command,
            "--kubeconfig",
            cluster.kubeconfig,
            "--bind-address",
            "127.0.0.1",
            "--health-port",
            str(health_port),
            "--metrics-port",
            "0",
            "--log-level",
            "WARNING",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**cluster.env, **(env or {})},
    )


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


async def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 600) -> float:
    """Poll the operator's /leaderz until 200 (leader, caches synced); returns when."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the operator exited ({proc.returncode}) before it was ready")
        if await asyncio.to_thread(http_status, f"http://127.0.0.1:{port}/leaderz") == 200:
            return time.monotonic()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the operator was not ready within {timeout:.0f}s")


async def while_alive(proc: subprocess.Popen[bytes], work: Awaitable[T]) -> T:
    """Await `work`, but raise at once if the process (the operator) exits meanwhile:
    a benchmark must not wait for binds that nobody will make."""
    task = asyncio.ensure_future(work)
    while not task.done():
        if proc.poll() is not None:
            task.cancel()
            raise RuntimeError(f"the operator exited ({proc.returncode}); see its log")
        await asyncio.wait({task}, timeout=0.5)
    return task.result()


def exit_on_sigterm() -> None:
    """SIGTERM (timeout, kill) ends the benchmark through its clean-up: the control
    plane is stopped, no process left behind."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a live process in MiB, from /proc/PID/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


class MemorySampler:
    """Samples a process's resident memory every `period` seconds (in a thread, so a
    busy event loop does not skew it): the peak (VmHWM, the kernel's own high-water
    mark, and the highest VmRSS seen) and the last sample."""

    def __init__(self, pid: int, period: float = 0.5) -> None:
        self.pid = pid
        self.period = period
        self.peak_rss = 0.0
        self.hwm = 0.0
        self.last_rss = 0.0
        self.samples: list[tuple[float, float]] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        try:
            rss, hwm = memory_mib(self.pid)
        except OSError:
            return
        self.last_rss = rss
        self.peak_rss = max(self.peak_rss, rss)
        self.hwm = max(self.hwm, hwm)
        self.samples.append((time.monotonic(), rss))

    async def _run(self) -> None:
        while not self._stop.is_set():
            await asyncio.to_thread(self.sample)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.period)

    def start(self) -> MemorySampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        self.sample()
        self._stop.set()
        if self._task is not None:
            await self._task

    def report(self) -> dict[str, float]:
        return {
            "peak_hwm_mib": round(self.hwm, 1),
            "peak_rss_mib": round(self.peak_rss, 1),
            "last_rss_mib": round(self.last_rss, 1),
        }
