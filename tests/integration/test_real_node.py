"""A real kubelet node beside the simulated ones: real containers from images
built without a registry, reaching the API server at the Service's ClusterIP;
`down` leaves nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from egpu.sim.usage import usage_annotation
from harness import (
    LOCALCLUSTER,
    REAL_NODE_LABEL,
    REAL_NODE_TOLERATION,
    REPO,
    Cluster,
    OperatorProcess,
    wait_until,
)

pytestmark = pytest.mark.integration

# Lists pods with the pod's own ServiceAccount token, through the `kubernetes`
# Service: 403 (authenticated, not authorized) proves network, TLS and token.
PROBE = """
import os, ssl, sys, urllib.error, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
ctx = ssl.create_default_context(cafile=sa + "ca.crt")
url = "https://%s:%s/api/v1/pods" % (
    os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"])
req = urllib.request.Request(url, headers={"Authorization": "Bearer " + open(sa + "token").read()})
try:
    urllib.request.urlopen(req, context=ctx, timeout=10)
    print("api 200", flush=True)
except urllib.error.HTTPError as e:
    print("api %d" % e.code, flush=True)
print("uid %d" % os.getuid(), flush=True)
import signal
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
signal.pause()
"""


def plain_pod(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {REAL_NODE_LABEL: "true"},
            "tolerations": [REAL_NODE_TOLERATION],
            "terminationGracePeriodSeconds": 5,
            "containers": [
                {
                    "name": "main",
                    "image": "egpu.local/python:3.11",
                    "imagePullPolicy": "Never",
                    "command": ["/usr/bin/python3.11", "-c", PROBE],
                    "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}},
                }
            ],
        },
    }


def test_plain_pod_runs_on_the_real_node(cluster: Cluster, real_node: str, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(plain_pod("plain")))

    def pod() -> dict[str, object]:
        out = cluster.kubectl("get", "pod", "plain", "-n", namespace, "-o", "json").stdout
        return dict(json.loads(out))

    wait_until(lambda: pod()["status"].get("phase") == "Running", 90, "the pod to run")  # type: ignore[union-attr]
    got = pod()
    assert got["spec"]["nodeName"] == real_node  # type: ignore[index]
    status = got["status"]
    container = status["containerStatuses"][0]  # type: ignore[index]
    assert container["containerID"].startswith("containerd://")
    assert container["restartCount"] == 0
    # The pod's own network namespace, on the node's bridge subnet, not the host's.
    node = json.loads(cluster.kubectl("get", "node", real_node, "-o", "json").stdout)
    node_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    assert status["podIP"] != node_ip  # type: ignore[index]
    assert status["podIP"].rsplit(".", 1)[0] == node_ip.rsplit(".", 1)[0]  # type: ignore[index]

    def logs() -> str:
        return cluster.kubectl("logs", "plain", "-n", namespace, check=False).stdout

    wait_until(lambda: "uid" in logs(), 30, "the pod's output")
    assert "api 403" in logs(), logs()
    assert "uid 65532" in logs(), logs()  # the image's non-root user
    cluster.kubectl("delete", "pod", "plain", "-n", namespace, "--wait=true", "--timeout=60s")


def _leftovers(run_dir: Path) -> list[str]:
    sys.path.insert(0, str(REPO / "hack"))
    import realnode

    found = []
    procs = realnode.processes_mentioning(str(run_dir))
    if procs:
        found.append(f"processes {procs}")
    for node in realnode.nodes_of(run_dir):
        links = subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
        if node.bridge in links:
            found.append(f"bridge {node.bridge}")
        rules = subprocess.run(
            ["iptables", "-w", "-t", "nat", "-S"], capture_output=True, text=True
        ).stdout
        if node.rule_comment in rules:
            found.append("the Service DNAT rule")
        mounts = Path("/proc/self/mountinfo").read_text()
        if str(node.dir) in mounts:
            found.append("mounts")
        if any((h / node.cgroup_root).exists() for h in realnode.cgroup_hierarchies()):
            found.append("cgroups")
    return found


@pytest.fixture(scope="module")
def second_cluster() -> Iterator[tuple[Path, Cluster]]:
    """A cluster of its own whose real node advertises 4 fake GPUs (a device
    plugin): GPU pods here do not meet the other tests' binder."""
    # Short: the kubelet's sockets live under it (a unix socket path has 107 bytes).
    run_dir = Path(tempfile.mkdtemp(prefix="egpu-rn-"))
    env = {**os.environ, "EGPU_RUN_DIR": str(run_dir)}
    env.update(EGPU_REAL_NODES="1", EGPU_REAL_NODE_GPUS="4")
    subprocess.run([*LOCALCLUSTER, "up"], env=env, check=True, stdout=subprocess.DEVNULL)
    try:
        other = Cluster(kubeconfig=str(run_dir / "kubeconfig"))
        wait_until(
            lambda: other.kubectl("get", "sa", "default", check=False).returncode == 0,
            60,
            "the default ServiceAccount",
        )
        yield run_dir, other
    finally:
        subprocess.run([*LOCALCLUSTER, "down"], env=env, capture_output=True)
        shutil.rmtree(run_dir, ignore_errors=True)


def gpu_pod(name: str, gpus: int) -> dict[str, Any]:
    pod: dict[str, Any] = plain_pod(name)
    container = pod["spec"]["containers"][0]
    container["command"] = [
        "/usr/bin/python3.11",
        "-c",
        "import os, signal, sys\n"
        "print('devices', os.environ.get('NVIDIA_VISIBLE_DEVICES'), flush=True)\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "signal.pause()",
    ]
    container["resources"]["limits"] = {"nvidia.com/gpu": str(gpus)}
    return pod


def test_gpu_pods_get_their_devices_from_the_real_kubelet(
    second_cluster: tuple[Path, Cluster],
) -> None:
    _, other = second_cluster
    node = json.loads(other.kubectl("get", "node", "egpu-real-0", "-o", "json").stdout)
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    for name in ("gpu-a", "gpu-b", "gpu-c"):
        other.kubectl("apply", "-f", "-", input=json.dumps(gpu_pod(name, 2)))
    for name in ("gpu-a", "gpu-b"):
        other.kubectl("wait", f"pod/{name}", "--for=jsonpath={.status.phase}=Running",
                      "--timeout=90s")  # fmt: skip

    def devices(name: str) -> list[str]:
        out = other.kubectl("logs", name, check=False).stdout
        line = next((ln for ln in out.splitlines() if ln.startswith("devices ")), "")
        return sorted(line.removeprefix("devices ").split(",")) if line else []

    wait_until(lambda: bool(devices("gpu-a") and devices("gpu-b")), 30, "the pods' output")
    a, b = devices("gpu-a"), devices("gpu-b")
    # The kubelet's device manager gave each container two of the plugin's four
    # devices, none twice.
    assert len(a) == len(b) == 2 and not set(a) & set(b), (a, b)
    assert set(a) | set(b) == {f"GPU-fake-{i}" for i in range(4)}
    # No fifth and sixth GPU: the third pod waits.
    third = json.loads(other.kubectl("get", "pod", "gpu-c", "-o", "json").stdout)
    assert third["status"]["phase"] == "Pending" and not third["spec"].get("nodeName")
    other.kubectl("delete", "pod", "gpu-a", "gpu-b", "gpu-c", "--wait=true", "--timeout=60s")


USAGE = "egpu.io/sim-usage"
FAKE_MODEL = "EGPU-FAKE-GPU"


FEEDER = "/usr/local/bin/egpu-usage-feeder"  # hack/image/usage_feeder.py, in the image
MEMORY_STEPS_MIB = "950,1950,2950"  # each about 0.93 of the limit it waits for


def resizable_workload(usage: str) -> dict[str, Any]:
    """One member whose container really holds 950 MiB, then more as its limit
    grows (the usage feeder); its simulated usage annotation says `usage`."""
    command = (
        "import os\n"
        "print('devices', os.environ.get('NVIDIA_VISIBLE_DEVICES'), flush=True)\n"
        f"os.execv({FEEDER!r}, [{FEEDER!r}, '--memory-mib', {MEMORY_STEPS_MIB!r},"
        " '--cpu-millicores', '100'])\n"
    )
    return {
        "apiVersion": "egpu.io/v1alpha1",
        "kind": "GPUWorkload",
        "metadata": {"name": "grow"},
        "spec": {
            "replicas": 1,
            "gpusPerPod": 2,
            "gpuModel": FAKE_MODEL,
            "gang": {"policy": "None"},
            "resize": {
                "mode": "Auto",
                "cpu": {"min": "500m", "max": "1", "step": "500m"},
                "memory": {"min": "1Gi", "max": "4Gi", "step": "1Gi"},
            },
            "template": {
                "metadata": {
                    "annotations": {
                        USAGE: usage_annotation({"main": {"cpu": "300m", "memory": usage}})
                    }
                },
                "spec": {
                    "tolerations": [REAL_NODE_TOLERATION],
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "main",
                            "image": "egpu.local/python:3.11",
                            "imagePullPolicy": "Never",
                            "command": ["/usr/bin/python3.11", "-c", command],
                            "resources": {
                                "requests": {"cpu": "500m", "memory": "1Gi"},
                                "limits": {"cpu": "500m", "memory": "1Gi"},
                            },
                        }
                    ],
                },
            },
        },
    }


@pytest.mark.e2e
@pytest.mark.parametrize("source", ["auto", "annotations"])
def test_real_memory_use_grows_a_real_pod_in_place_step_by_step(
    second_cluster: tuple[Path, Cluster], source: str
) -> None:
    """The operator (a process on the host) binds a GPUWorkload member to the real
    node; the kubelet allocates its fake GPUs; the container's real working set
    rises in 1 GiB steps and, read from the kubelet's metrics (the default source),
    grows the pod in place 1 -> 2 -> 3 -> 4 GiB: same UID, no restart, the kubelet
    writes each new limit into the container's cgroup. With the simulation's reader
    (the annotation says 700Mi) the same pod never grows: the test needs real usage."""
    run_dir, other = second_cluster
    other.kubectl("label", "node", "egpu-real-0", f"nvidia.com/gpu.product={FAKE_MODEL}")
    other.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    other.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    operator = OperatorProcess(
        other, run_dir / f"operator-{source}.log", env={"EGPU_USAGE_SOURCE": source}
    )
    operator.start()
    try:
        other.kubectl("apply", "-f", "-", input=json.dumps(resizable_workload("700Mi")))

        def member() -> dict[str, Any]:
            out = other.kubectl("get", "pod", "grow-0", "-o", "json", check=False)
            return dict(json.loads(out.stdout)) if out.returncode == 0 else {}

        def running() -> bool:
            statuses = member().get("status", {}).get("containerStatuses") or []
            return bool(statuses) and "running" in statuses[0]["state"]

        wait_until(running, 90, "the member to run on the real node")
        first = member()
        assert first["spec"]["nodeName"] == "egpu-real-0"
        uid = first["metadata"]["uid"]
        # The operator's plan and the kubelet's choice: two devices each. The
        # kubelet picks on its own (device-plugin nodes are GPU-advisory).
        planned = first["metadata"]["annotations"]["egpu.io/gpu-ids"].split(",")
        out = other.kubectl("logs", "grow-0").stdout
        given = next(ln for ln in out.splitlines() if ln.startswith("devices ")).split()[1]
        assert len(planned) == 2 and len(given.split(",")) == 2, (planned, given)

        def limit() -> str:
            return str(member()["status"]["containerStatuses"][0]["resources"]["limits"]["memory"])

        if source == "annotations":
            wait_until(
                lambda: "step 950 MiB" in other.kubectl("logs", "grow-0").stdout, 60, "950 MiB"
            )
            time.sleep(45)  # several kubelet stats refreshes and resize passes
            assert limit() == "1Gi"
            return

        container_id = first["status"]["containerStatuses"][0]["containerID"]
        container_id = container_id.removeprefix("containerd://")
        sys.path.insert(0, str(REPO / "hack"))
        import realnode

        node = realnode.Node(run_dir, 0)
        files = list(
            (realnode.CGROUP_FS / "memory" / node.cgroup_root).rglob(
                f"pod{uid}/{container_id}/memory.limit_in_bytes"
            )
        )
        assert len(files) == 1, files
        for gib in (2, 3, 4):
            wait_until(
                lambda gib=gib: limit() == f"{gib}Gi", 120, f"the pod to grow to {gib}Gi in place"
            )
            wait_until(
                lambda gib=gib: files[0].read_text().strip() == str(gib << 30),
                30,
                f"the cgroup's limit of {gib}Gi",
            )
        last = member()
        status = last["status"]["containerStatuses"][0]
        assert last["metadata"]["uid"] == uid and status["restartCount"] == 0
        logs = other.kubectl("logs", "grow-0").stdout
        assert "step 1950 MiB" in logs, logs  # each limit followed a real rise of use
    finally:
        operator.stop()
        other.kubectl("delete", "gpuworkload", "grow", "--wait=true", "--timeout=60s", check=False)
        wait_until(lambda: not member_exists(other), 60, "the member to be gone")


def member_exists(cluster: Cluster) -> bool:
    return cluster.kubectl("get", "pod", "grow-0", check=False).returncode == 0


def test_down_leaves_nothing_behind(second_cluster: tuple[Path, Cluster]) -> None:
    """With pods running on the real node (and its device plugin), `down` must
    leave no process, mount, bridge, iptables rule or cgroup."""
    run_dir, other = second_cluster
    other.kubectl("apply", "-f", "-", input=json.dumps(plain_pod("left")))
    other.kubectl("wait", "pod/left", "--for=jsonpath={.status.phase}=Running", "--timeout=90s")
    assert _leftovers(run_dir)  # the check sees a running node
    env = {**os.environ, "EGPU_RUN_DIR": str(run_dir)}
    down = subprocess.run([*LOCALCLUSTER, "down"], env=env, capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    assert _leftovers(run_dir) == []
