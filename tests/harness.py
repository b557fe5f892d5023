"""Test harness: the real control plane and the operator, as pytest fixtures.

`make integration` starts the control plane beforehand (hack/run-integration.sh)
and stops it afterwards; run alone, `pytest -m integration` starts it here and
stops what it started. tests/conftest.py exposes the fixtures.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from egpu.sim.nodes import ClusterShape, create_nodes, node_manifests

REPO = Path(__file__).resolve().parents[1]
RUN_DIR = Path(os.environ.get("EGPU_RUN_DIR", REPO / ".run" / "test-cluster"))
LOCALCLUSTER = [sys.executable, str(REPO / "hack" / "localcluster.py")]


@dataclass(frozen=True)
class Cluster:
    kubeconfig: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": self.kubeconfig}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        kubectl = str(Path(sys.executable).parent / "kubectl")
        proc = subprocess.run(
            [kubectl, *args],
            input=input,
            text=True,
            capture_output=True,
            env=self.env,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}"
            )
        return proc


def _status_ok() -> bool:
    env = {**os.environ, "EGPU_RUN_DIR": str(RUN_DIR)}
    return subprocess.run([*LOCALCLUSTER, "status"], env=env, capture_output=True).returncode == 0


def cluster_fixture() -> Iterator[Cluster]:
    # One real kubelet node beside the simulated ones, unless EGPU_REAL_NODES says otherwise.
    env = {**os.environ, "EGPU_RUN_DIR": str(RUN_DIR)}
    env.setdefault("EGPU_REAL_NODES", "1")
    env.setdefault("EGPU_REAL_NODE_GPUS", "2")  # as hack/run-integration.sh
    env.setdefault("EGPU_AUDIT", "1")  # the Helm test reads the audit log
    started_here = not _status_ok()
    if started_here:
        subprocess.run([*LOCALCLUSTER, "up"], env=env, check=True, stdout=subprocess.DEVNULL)
    yield Cluster(kubeconfig=str(RUN_DIR / "kubeconfig"))
    if started_here:
        subprocess.run([*LOCALCLUSTER, "down"], env=env, check=False)


def namespace_fixture(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


# The GPUTopology the e2e tests place by: block > leaf > node.
DEFAULT_TOPOLOGY = """
apiVersion: egpu.io/v1alpha1
kind: GPUTopology
metadata: {name: default}
spec:
  levels:
  - {nodeLabel: egpu.io/block}
  - {nodeLabel: egpu.io/leaf}
  - {nodeLabel: kubernetes.io/hostname}
"""


def add_gpu_nodes(cluster: Cluster, *shapes: ClusterShape, topology: bool = False) -> None:
    """Simulated GPU nodes of these shapes, Ready; with `topology`, also DEFAULT_TOPOLOGY."""
    names: set[str] = set()
    for shape in shapes:
        create_nodes(shape, kubeconfig=cluster.kubeconfig)
        names |= {node["metadata"]["name"] for node in node_manifests(shape)}
    if topology:
        cluster.kubectl("apply", "-f", "-", input=DEFAULT_TOPOLOGY)

    def ready() -> int:
        out = cluster.kubectl("get", "nodes", "--no-headers").stdout
        rows = [line.split()[:2] for line in out.splitlines()]
        return sum(1 for row in rows if len(row) == 2 and row[0] in names and row[1] == "Ready")

    wait_until(lambda: ready() == len(names), 60, f"{len(names)} simulated GPU nodes to be Ready")


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# Tests kill operators and start new ones: a short Lease, so a takeover takes seconds.
FAST_LEASE = {
    "EGPU_LEASE_DURATION": "4s",
    "EGPU_RENEW_DEADLINE": "3s",
    "EGPU_RETRY_PERIOD": "500ms",
}


PORT_ATTEMPTS = 3


def free_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    """The real `egpu-operator` console script, run against the test cluster."""

    def __init__(self, cluster: Cluster, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.cluster = cluster
        self.health_port, self.metrics_port = free_local_port(), free_local_port()
        self.log_path = log_path
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait for /healthz. A port picked free can be taken by another
        process's connection before the operator binds it: then again on new ports."""
        for attempt in range(PORT_ATTEMPTS):
            self._launch()
            try:
                wait_until(self.healthy, 60, "the operator's /healthz")
                return
            except AssertionError as exc:
                if "address already in use" not in str(exc) or attempt == PORT_ATTEMPTS - 1:
                    raise
                self.health_port, self.metrics_port = free_local_port(), free_local_port()

    def _launch(self) -> None:
        exe = str(Path(sys.executable).parent / "egpu-operator")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    exe,
                    "--kubeconfig",
                    self.cluster.kubeconfig,
                    "--bind-address",
                    "127.0.0.1",
                    "--health-port",
                    str(self.health_port),
                    "--metrics-port",
                    str(self.metrics_port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self.cluster.env, **FAST_LEASE, **self.extra_env},
            )

    def healthy(self) -> bool:
        import urllib.request

        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"operator exited; log:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/healthz", timeout=1
            ) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as resp:
            return str(resp.read().decode())

    def kill(self) -> None:
        """SIGKILL: the crash the operator must survive."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


# What hack/realnode.py labels and taints its nodes with.
REAL_NODE_LABEL = "egpu.io/real-node"
REAL_NODE_TOLERATION = {"key": REAL_NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}


def real_node_fixture(cluster: Cluster) -> str:
    """The name of a Ready real kubelet node; fails (never skips) when there is none."""
    import json

    nodes = json.loads(
        cluster.kubectl("get", "nodes", "-l", f"{REAL_NODE_LABEL}=true", "-o", "json").stdout
    )["items"]
    for node in nodes:
        conditions = node["status"].get("conditions", [])
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return str(node["metadata"]["name"])
    raise AssertionError(
        "no Ready real node: start the cluster with `hack/localcluster.py up --real-nodes 1` "
        "(hack/run-integration.sh does, unless EGPU_REAL_NODES=0)"
    )
