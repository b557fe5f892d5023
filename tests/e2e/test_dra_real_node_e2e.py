"""The DRA path on a real kubelet: a cluster of its own whose real node gets its four
fake GPUs from a DRA kubelet plugin (hack/fakedra, `localcluster.py up --real-node-dra`).
The operator allocates each pod's claim to the devices of its plan and binds; the
kubelet's DRA manager then calls the plugin's NodePrepareResources with that claim
before the containers start, and NodeUnprepareResources once the pod is gone. The
plugin records every claim it prepared (a file per claim) and writes a CDI spec for it,
which containerd applies to the container: the proof is that record and the
container's environment against the claim's allocation against the binder's plan."""

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

from egpu.domain.dra import parse_slices
from harness import LOCALCLUSTER, REAL_NODE_TOLERATION, REPO, Cluster, OperatorProcess, wait_until
from objects import gpu_workload

pytestmark = pytest.mark.e2e

NODE = "egpu-real-0"
PRODUCT = "EGPU-FAKE-GPU"  # what hack/fakedra publishes by default
GPUS = 4


@pytest.fixture(scope="module")
def dra_node_cluster() -> Iterator[tuple[Path, Cluster]]:
    # Short: the kubelet's sockets live under it (a unix socket path has 107 bytes).
    run_dir = Path(tempfile.mkdtemp(prefix="egpu-dra-"))
    env = {**os.environ, "EGPU_RUN_DIR": str(run_dir)}
    env.update(EGPU_REAL_NODES="1", EGPU_REAL_NODE_GPUS=str(GPUS), EGPU_REAL_NODE_DRA="1")
    subprocess.run([*LOCALCLUSTER, "up"], env=env, check=True, stdout=subprocess.DEVNULL)
    try:
        other = Cluster(kubeconfig=str(run_dir / "kubeconfig"))
        other.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        other.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        wait_until(
            lambda: other.kubectl("get", "sa", "default", check=False).returncode == 0,
            60,
            "the default ServiceAccount",
        )
        yield run_dir, other
    finally:
        subprocess.run([*LOCALCLUSTER, "down"], env=env, capture_output=True)
        shutil.rmtree(run_dir, ignore_errors=True)


def dra_workload(replicas: int, gpus: int) -> str:
    """A DRA gang for the real node: its python image, a container that waits."""
    body = json.loads(
        gpu_workload(
            "dra",
            PRODUCT,
            replicas,
            gpus,
            required=None,
            requests={"cpu": "50m", "memory": "32Mi"},
            container="main",
            image="egpu.local/python:3.11",
            pod_spec={"tolerations": [REAL_NODE_TOLERATION], "terminationGracePeriodSeconds": 2},
            gpuAllocation="DRA",
        )
    )
    body["spec"]["template"]["spec"]["containers"][0].update(
        imagePullPolicy="Never",
        command=[
            "/usr/bin/python3.11",
            "-c",
            "import signal, sys\n"
            "print('started', flush=True)\n"
            "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
            "signal.pause()",
        ],
    )
    return json.dumps(body)


def items(cluster: Cluster, *args: str) -> list[dict[str, Any]]:
    return list(json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)["items"])


def members(cluster: Cluster) -> list[dict[str, Any]]:
    return [
        p
        for p in items(cluster, "pods")
        if any(r.get("name") == "dra" for r in p["metadata"].get("ownerReferences", []))
    ]


def running(pod: dict[str, Any]) -> bool:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return bool(statuses) and all("running" in s.get("state", {}) for s in statuses)


def claim_name(pod: dict[str, Any]) -> str:
    statuses = pod.get("status", {}).get("resourceClaimStatuses") or []
    return next(s["resourceClaimName"] for s in statuses if s["name"] == "gpus")


def allocated(claim: dict[str, Any]) -> list[tuple[str, str]]:
    results = ((claim.get("status") or {}).get("allocation") or {}).get("devices", {})
    return sorted((r["pool"], r["device"]) for r in results.get("results", []))


def planned(pod: dict[str, Any]) -> list[tuple[str, str]]:
    ids = pod["metadata"]["annotations"]["egpu.io/gpu-ids"].split(",")
    return sorted((pod["spec"]["nodeName"], f"gpu-{i}") for i in ids)


def container_env(node: Any, pod: dict[str, Any]) -> dict[str, str]:
    """The environment of the pod's container process, read through its cgroup
    (named by the container id) under the node's cgroup root."""
    import realnode  # hack/, on the path once the test has started

    cid = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    for hierarchy in realnode.cgroup_hierarchies():
        for procs in (hierarchy / node.cgroup_root).rglob(f"*{cid}*/cgroup.procs"):
            for pid in procs.read_text().split():
                raw = Path(f"/proc/{pid}/environ").read_bytes()
                return dict(
                    entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry
                )
    raise AssertionError(f"no process of container {cid} under {node.cgroup_root}")


def events(state_dir: Path) -> list[dict[str, Any]]:
    path = state_dir / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_a_device_in_use_is_refused_at_the_node(cluster: Cluster, state_dir: Path) -> None:
    """A claim allocated by hand to gpu-0, which a member holds, and a pod put on the
    node directly (no scheduler, no binder): the controller manager reserves the
    claim, the kubelet asks the plugin to prepare it, the plugin refuses."""
    theirs = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "theirs"},
        "spec": {
            "devices": {
                "requests": [
                    {"name": "gpus", "exactly": {"deviceClassName": "gpu.egpu.io", "count": 1}}
                ]
            }
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(theirs))
    result = {"request": "gpus", "driver": "gpu.egpu.io", "pool": NODE, "device": "gpu-0"}
    status = {"status": {"allocation": {"devices": {"results": [result]}}}}
    cluster.kubectl(
        "patch", "resourceclaim", "theirs", "--subresource=status", "--type=merge",
        "-p", json.dumps(status),
    )  # fmt: skip
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "intruder"},
        "spec": {
            "nodeName": NODE,
            "tolerations": [REAL_NODE_TOLERATION],
            "terminationGracePeriodSeconds": 0,
            "resourceClaims": [{"name": "gpu", "resourceClaimName": "theirs"}],
            "containers": [
                {
                    "name": "main",
                    "image": "egpu.local/python:3.11",
                    "imagePullPolicy": "Never",
                    "command": ["/usr/bin/python3.11", "-c", "print('ran')"],
                    "resources": {"claims": [{"name": "gpu"}]},
                }
            ],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))

    def refused() -> bool:
        return any(
            e["op"] == "prepare-failed" and e["claim"] == "default/theirs"
            for e in events(state_dir)
        )

    wait_until(refused, 60, "the plugin to refuse gpu-0 a second time")
    failed = next(e for e in events(state_dir) if e["op"] == "prepare-failed")
    assert "gpu-0 is already prepared for claim default/dra-" in failed["error"], failed
    intruder = json.loads(cluster.kubectl("get", "pod", "intruder", "-o", "json").stdout)
    statuses = intruder["status"].get("containerStatuses") or []
    assert intruder["status"].get("phase") == "Pending", intruder["status"]
    assert not any("running" in c.get("state", {}) for c in statuses), statuses
    cluster.kubectl("delete", "pod", "intruder", "--wait=true", "--timeout=60s")
    cluster.kubectl("delete", "resourceclaim", "theirs", "--wait=true", "--timeout=60s")


def test_the_real_kubelet_prepares_exactly_the_devices_the_binder_allocated(
    dra_node_cluster: tuple[Path, Cluster],
) -> None:
    t0 = time.monotonic()
    run_dir, cluster = dra_node_cluster
    sys.path.insert(0, str(REPO / "hack"))
    import realnode

    state_dir = realnode.Node(run_dir, 0).dra_state_dir
    # The plugin's slice is what the operator parses: 4 GPUs in 2 NVLink groups.
    node = json.loads(cluster.kubectl("get", "node", NODE, "-o", "json").stdout)
    # No device-plugin GPUs (the kubelet may list the resource at 0: its device
    # manager's checkpoint lives in the machine-wide device-plugins directory).
    assert node["status"]["allocatable"].get("nvidia.com/gpu", "0") == "0"
    parsed = parse_slices(items(cluster, "resourceslices"))[NODE]
    assert (parsed.gpu_count, parsed.product, parsed.pool) == (GPUS, PRODUCT, NODE)
    assert parsed.wiring().nvlink_groups == ((0, 1), (2, 3))
    assert parsed.wiring().numa == (0, 0, 1, 1)
    assert len({gpu.uuid for gpu in parsed.gpus}) == GPUS
    uuid_of = {
        d["name"]: d["attributes"]["uuid"]["string"]
        for s in items(cluster, "resourceslices")
        for d in s["spec"].get("devices", [])
    }

    operator = OperatorProcess(cluster, run_dir / "operator.log")
    operator.start()
    try:
        # Two members of two GPUs each: together they take every device of the node.
        cluster.kubectl("apply", "-f", "-", input=dra_workload(2, 2))
        try:
            wait_until(
                lambda: len(pods := members(cluster)) == 2 and all(map(running, pods)),
                90,
                "both DRA members running on the real node",
            )
        except AssertionError as exc:
            # Why not: the kubelet's and the binder's Events say (e.g. a claim not prepared).
            shown = cluster.kubectl("get", "events", "--sort-by=.lastTimestamp", check=False)
            raise AssertionError(f"{exc}\n{shown.stdout[-3000:]}") from None
        pods = members(cluster)
        claims = {c["metadata"]["name"]: c for c in items(cluster, "resourceclaims")}
        prepared = {
            p.stem: json.loads(p.read_text()) for p in (state_dir / "prepared").glob("*.json")
        }
        assert len(prepared) == 2, prepared
        seen: set[tuple[str, str]] = set()
        for pod in pods:
            assert pod["spec"]["nodeName"] == NODE
            status = pod["status"]["containerStatuses"][0]
            assert status["restartCount"] == 0 and status["containerID"].startswith("containerd")
            claim = claims[claim_name(pod)]
            devices = allocated(claim)
            # The binder's plan == the claim's allocation == what the kubelet prepared.
            assert devices == planned(pod) and len(devices) == 2, pod["metadata"]["name"]
            assert [r["uid"] for r in claim["status"]["reservedFor"]] == [pod["metadata"]["uid"]]
            record = prepared[claim["metadata"]["uid"]]
            assert record["name"] == claim["metadata"]["name"]
            assert sorted((d["pool"], d["device"]) for d in record["devices"]) == devices
            assert all(d["request"] == "gpus" for d in record["devices"])
            # containerd injected the claim's CDI devices: the container is told
            # exactly the GPUs of its allocation, by the uuids the slice publishes.
            env = container_env(realnode.Node(run_dir, 0), pod)
            uuids = [uuid_of[device] for _, device in devices]
            assert env.get("NVIDIA_VISIBLE_DEVICES") == ",".join(uuids), env
            assert {k: v for k, v in env.items() if k.startswith("EGPU_CDI_DEVICE_")} == {
                f"EGPU_CDI_DEVICE_{device.removeprefix('gpu-')}": uuid_of[device]
                for _, device in devices
            }
            # The kubelet chose the plugin's newest DRA gRPC service.
            assert record["method"].endswith(".dra.v1.DRAPlugin/NodePrepareResources"), record
            assert not seen & set(devices)
            seen |= set(devices)
        assert seen == {(NODE, f"gpu-{i}") for i in range(GPUS)}
        uids = {claims[claim_name(p)]["metadata"]["uid"] for p in pods}
        assert_a_device_in_use_is_refused_at_the_node(cluster, state_dir)

        cluster.kubectl("delete", "gpuworkload", "dra", "--wait=true", "--timeout=60s")

        def released() -> bool:
            unprepared = {e["uid"] for e in events(state_dir) if e["op"] == "unprepare"}
            left = [c for c in items(cluster, "resourceclaims") if allocated(c)]
            return not members(cluster) and uids <= unprepared and not left

        wait_until(released, 60, "the claims unprepared by the kubelet and released")
        assert not list((state_dir / "prepared").glob("*.json"))
        assert not list(realnode.Node(run_dir, 0).cdi_dir.glob("*.json"))
        # The members' own claims were prepared at the first try.
        assert not [
            e for e in events(state_dir) if e["op"] == "prepare-failed" and e["uid"] in uids
        ]
    finally:
        operator.stop()
        cluster.kubectl("delete", "gpuworkload", "dra", "--wait=false", check=False)
    print(f"\nDRA on the real kubelet: {time.monotonic() - t0:.1f}s after the cluster was up")


def test_down_stops_the_dra_plugin_with_the_node(dra_node_cluster: tuple[Path, Cluster]) -> None:
    run_dir, _ = dra_node_cluster
    sys.path.insert(0, str(REPO / "hack"))
    import realnode

    node = realnode.Node(run_dir, 0)
    plugin = str(node.dra_state_dir)
    assert realnode.processes_mentioning(plugin), "the plugin is not running"
    env = {**os.environ, "EGPU_RUN_DIR": str(run_dir)}
    down = subprocess.run([*LOCALCLUSTER, "down"], env=env, capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    assert realnode.processes_mentioning(str(run_dir)) == []
    assert not (node.dir / "kubelet").exists()  # its sockets went with the kubelet's root
