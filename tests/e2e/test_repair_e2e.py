"""Self-healing on the real control plane: the simulated node agent finds a GPU fault
under a running 16-GPU gang, the repair controller fences the GPU and repairs the gang
by its policy, and the gang runs again on healthy GPUs in its leaf; a broken agent
reporting every GPU bad is stopped by the circuit breaker; a node lost under an elastic
workload shrinks it and it grows back when the node is Ready again; a job that stops
reporting progress is restarted."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from egpu.sim.nodes import ClusterShape, node_manifests
from harness import RUN_DIR, Cluster, OperatorProcess, add_gpu_nodes, wait_until

pytestmark = pytest.mark.e2e

REPAIR_ENV = {
    "EGPU_REPAIR_INTERVAL": "500ms",
    "EGPU_REPAIR_BACKOFF": "1s",
    "EGPU_NODE_LOST_AFTER": "2s",
}


def shape(model: str, prefix: str, leaves: int = 2, nodes: int = 4) -> ClusterShape:
    return ClusterShape(
        blocks=1,
        leaves_per_block=leaves,
        nodes_per_leaf=nodes,
        gpus_per_node=8,
        nvlink_group_size=4,
        gpu_models=(model,),
        name_prefix=prefix,
        domain_prefix=f"{prefix}-",
    )


REPLACE = shape("NVIDIA-H100-REPLACE", "rpl")
RESTART = shape("NVIDIA-H100-RESTART", "rst")
PREDICT = shape("NVIDIA-H100-PREDICT", "prd", leaves=1)
ELASTIC = shape("NVIDIA-H100-ELASTIC", "els", leaves=1, nodes=3)
HANG = shape("NVIDIA-H100-HANG", "hng", leaves=1, nodes=1)


class Agent:
    """`egpu agent --simulate` for some nodes, as the DaemonSet runs it on KWOK nodes."""

    def __init__(
        self,
        cluster: Cluster,
        nodes: list[str],
        faults: list[str],
        log: Path,
        extra: tuple[str, ...] = (),
    ) -> None:
        args = [str(Path(sys.executable).parent / "egpu"), "--kubeconfig", cluster.kubeconfig]
        args += ["agent", "--simulate", "--interval", "1s", "--heartbeat", "5s", *extra]
        args += ["--quiet-period", "40s", "--passes", "2", "--metrics-port", "0"]
        for node in nodes:
            args += ["--node", node]
        for fault in faults:
            args += ["--inject", fault]
        self.log = log
        self.started = time.time()
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=cluster.env
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


def workload(
    name: str,
    model: str,
    replicas: int,
    gpus: int,
    policy: str,
    spec: dict[str, Any] | None = None,
    repair: dict[str, Any] | None = None,
) -> str:
    body: dict[str, Any] = json.loads(_workload(name, model, replicas, gpus, policy))
    body["spec"].update(spec or {})
    body["spec"]["repair"].update(repair or {})
    return json.dumps(body)


def _workload(name: str, model: str, replicas: int, gpus: int, policy: str) -> str:
    return json.dumps(
        {
            "apiVersion": "egpu.io/v1alpha1",
            "kind": "GPUWorkload",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "gpusPerPod": gpus,
                "gpuModel": model,
                "gang": {"policy": "AllOrNothing"},
                "topology": {"topologyName": "default", "required": "egpu.io/leaf"},
                "repair": {
                    "policy": policy,
                    "maxRestarts": 3,
                    "gracePeriod": "1s",
                    "checkpoint": {"annotation": "example.com/checkpoint"},
                },
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "trainer",
                                "image": "registry.local/egpu/trainer:latest",
                                "resources": {"requests": {"cpu": "2", "memory": "8Gi"}},
                            }
                        ]
                    }
                },
            },
        }
    )


def get(cluster: Cluster, *what: str) -> dict[str, Any]:
    return dict(json.loads(cluster.kubectl("get", *what, "-o", "json").stdout))


def members(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    return [
        p
        for p in get(cluster, "pods", "-n", namespace)["items"]
        if not p["metadata"].get("deletionTimestamp")
    ]


def running(items: list[dict[str, Any]], count: int) -> bool:
    return len(items) == count and all(
        p["spec"].get("nodeName") and p.get("status", {}).get("phase") == "Running" for p in items
    )


def gpus_of(pod: dict[str, Any]) -> set[tuple[str, int]]:
    ids = pod["metadata"]["annotations"]["egpu.io/gpu-ids"].split(",")
    return {(pod["spec"]["nodeName"], int(i)) for i in ids}


def leaf(cluster: Cluster, node: str) -> str:
    return str(get(cluster, "node", node)["metadata"]["labels"]["egpu.io/leaf"])


def condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    for c in body.get("status", {}).get("conditions", []):
        if c["type"] == kind:
            return dict(c)
    return {}


def annotation(cluster: Cluster, node: str, key: str) -> str:
    return str(get(cluster, "node", node)["metadata"].get("annotations", {}).get(key) or "")


def gpu_nodes(cluster: Cluster) -> list[dict[str, Any]]:
    items = get(cluster, "nodes")["items"]
    return [n for n in items if int(n["status"].get("allocatable", {}).get("nvidia.com/gpu", "0"))]


def unhealthy_reported(node: dict[str, Any]) -> bool:
    text = node["metadata"].get("annotations", {}).get("egpu.io/gpu-health")
    return bool(text and json.loads(text)["unhealthy"])


def events(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    out = get(cluster, "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")
    return list(out["items"])


@pytest.fixture(scope="module")
def repair_cluster(crds: Cluster) -> Cluster:
    add_gpu_nodes(crds, REPLACE, RESTART, PREDICT, ELASTIC, HANG, topology=True)
    return crds


@pytest.fixture
def operator(repair_cluster: Cluster) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(repair_cluster, RUN_DIR / "operator-repair-e2e.log", env=REPAIR_ENV)
    proc.start()
    yield proc
    proc.stop()


def start_gang(
    cluster: Cluster,
    namespace: str,
    name: str,
    model: str,
    replicas: int,
    gpus: int,
    policy: str,
    **extra: dict[str, Any],
) -> list[dict[str, Any]]:
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=workload(name, model, replicas, gpus, policy, **extra),
    )
    wait_until(lambda: running(members(cluster, namespace), replicas), 90, "the gang to run")
    items = members(cluster, namespace)
    for pod in items:  # the job reports its checkpoints as it trains
        cluster.kubectl(
            "annotate", "pod", "-n", namespace, pod["metadata"]["name"],
            f"example.com/checkpoint=step-{1000 - int(pod['metadata']['labels']['egpu.io/rank'])}",
        )  # fmt: skip
    return items


def test_a_gpu_fault_replaces_the_lost_member_in_its_leaf_never_on_the_fenced_gpu(
    repair_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    cluster = repair_cluster
    before = start_gang(cluster, namespace, "train", "NVIDIA-H100-REPLACE", 4, 4, "ReplaceMember")
    by_rank = {p["metadata"]["labels"]["egpu.io/rank"]: p for p in before}
    victim = by_rank["2"]
    node = victim["spec"]["nodeName"]
    bad_gpu = sorted(g for _, g in gpus_of(victim))[1]
    the_leaf = leaf(cluster, node)
    agent = Agent(cluster, [node], [f"2:{node}:{bad_gpu}:xid=79"], RUN_DIR / "agent-replace.log")
    try:
        wait_until(
            lambda: str(bad_gpu) in annotation(cluster, node, "egpu.io/unhealthy-gpus").split(","),
            30,
            "the GPU to be fenced",
        )
        node_body = get(cluster, "node", node)
        health = json.loads(node_body["metadata"]["annotations"]["egpu.io/gpu-health"])
        assert health["unhealthy"][str(bad_gpu)]["reasons"] == ["Xid: XID 79"]
        cond = condition(node_body, "GPUHealthy")
        assert cond["status"] == "False" and f"GPU {bad_gpu}" in cond["message"]

        def replaced() -> bool:
            items = members(cluster, namespace)
            ranks = {p["metadata"]["labels"]["egpu.io/rank"]: p for p in items}
            return running(items, 4) and ranks["2"]["metadata"]["uid"] != victim["metadata"]["uid"]

        wait_until(replaced, 60, "rank 2 to run again")
        after = {p["metadata"]["labels"]["egpu.io/rank"]: p for p in members(cluster, namespace)}
        new = after["2"]
        assert (node, bad_gpu) not in gpus_of(new), "placed on the fenced GPU"
        assert leaf(cluster, new["spec"]["nodeName"]) == the_leaf
        for rank in ("0", "1", "3"):  # only the lost member was replaced
            assert after[rank]["metadata"]["uid"] == by_rank[rank]["metadata"]["uid"]
        # the replacement resumes from the last checkpoint the gang reported (rank 0's)
        assert new["metadata"]["annotations"]["egpu.io/resume-from"] == "step-1000"
        used = [g for p in after.values() for g in gpus_of(p)]
        assert len(used) == len(set(used)) == 16
        body = get(cluster, "gpuworkload", "train", "-n", namespace)
        assert json.loads(body["metadata"]["annotations"]["egpu.io/repair"])["restarts"] == 1

        def healthy_reason() -> str:
            body = get(cluster, "gpuworkload", "train", "-n", namespace)
            return str(condition(body, "Healthy").get("reason"))

        wait_until(lambda: healthy_reason() == "Repaired", 30, "Healthy to say Repaired")
        reasons = {e["reason"] for e in events(cluster, namespace, "train")}
        assert "MemberReplaced" in reasons
        # after its quiet period (40 s) and passing checks, the GPU is back
        wait_until(
            lambda: not annotation(cluster, node, "egpu.io/unhealthy-gpus"),
            90,
            "the GPU to be unfenced once healthy again",
        )
        node_events = {e["reason"] for e in events(cluster, "default", node)}
        assert {"GPUFenced", "GPUUnfenced"} <= node_events, node_events
    finally:
        agent.stop()
        cluster.kubectl("delete", "gpuworkload", "train", "-n", namespace)


def test_a_gpu_fault_restarts_a_tightly_coupled_gang_together_in_its_leaf(
    repair_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    cluster = repair_cluster
    before = start_gang(cluster, namespace, "tight", "NVIDIA-H100-RESTART", 2, 8, "RestartGang")
    node = before[0]["spec"]["nodeName"]
    the_leaf = leaf(cluster, node)
    agent = Agent(cluster, [node], [f"1:{node}:5:remap-failure"], RUN_DIR / "agent-restart.log")
    old = {p["metadata"]["uid"] for p in before}
    try:

        def restarted() -> bool:
            items = members(cluster, namespace)
            return running(items, 2) and not old & {p["metadata"]["uid"] for p in items}

        wait_until(restarted, 90, "the whole gang to run again")
        after = members(cluster, namespace)
        for pod in after:
            assert (node, 5) not in gpus_of(pod), "placed on the fenced GPU"
            assert pod["spec"]["nodeName"] != node  # 7 healthy GPUs left there: no room for 8
            assert leaf(cluster, pod["spec"]["nodeName"]) == the_leaf  # room left in its leaf
            assert pod["metadata"]["annotations"]["egpu.io/resume-from"] == "step-1000"
        reasons = {e["reason"] for e in events(cluster, namespace, "tight")}
        assert "GangRestarted" in reasons
    finally:
        agent.stop()
        cluster.kubectl("delete", "gpuworkload", "tight", "-n", namespace)


def test_a_predicted_fault_moves_the_member_at_its_next_checkpoint_before_it_fails(
    repair_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    cluster = repair_cluster
    before = start_gang(cluster, namespace, "early", "NVIDIA-H100-PREDICT", 4, 4, "ReplaceMember")
    victim = next(p for p in before if p["metadata"]["labels"]["egpu.io/rank"] == "1")
    node = victim["spec"]["nodeName"]
    gpu = sorted(g for _, g in gpus_of(victim))[0]
    # correctable ECC errors climb on the GPU (a precursor); it fails for good at 60 s
    faults = [f"{k}:{node}:{gpu}:sbe=60" for k in range(2, 8)]
    faults.append(f"60:{node}:{gpu}:remap-failure")
    extra = ("--risk-sample-every", "1s")
    agent = Agent(cluster, [node], faults, RUN_DIR / "agent-predict.log", extra)
    try:

        def at_risk() -> bool:
            text = annotation(cluster, node, "egpu.io/gpu-health")
            return bool(text) and str(gpu) in json.loads(text).get("atRisk", {})

        wait_until(at_risk, 40, "the agent to report the GPU at risk")
        time.sleep(3)  # the controller sees it and waits for the next checkpoint
        names = {p["metadata"]["name"]: p["metadata"]["uid"] for p in members(cluster, namespace)}
        assert names[victim["metadata"]["name"]] == victim["metadata"]["uid"], "moved too early"
        body = get(cluster, "gpuworkload", "early", "-n", namespace)
        assert condition(body, "Healthy").get("reason") == "GPUAtRisk"
        for pod in members(cluster, namespace):  # the job writes its next checkpoint
            cluster.kubectl(
                "annotate", "pod", "-n", namespace, pod["metadata"]["name"], "--overwrite",
                "example.com/checkpoint=step-2000",
            )  # fmt: skip

        def moved() -> bool:
            items = members(cluster, namespace)
            ranks = {p["metadata"]["labels"]["egpu.io/rank"]: p for p in items}
            return running(items, 4) and ranks["1"]["metadata"]["uid"] != victim["metadata"]["uid"]

        wait_until(moved, 40, "rank 1 to move off the GPU at risk")
        assert time.time() < agent.started + 60, "the move came after the fault"
        items = members(cluster, namespace)
        assert not any((node, gpu) in gpus_of(p) for p in items)
        assert str(gpu) in annotation(cluster, node, "egpu.io/unhealthy-gpus").split(",")
        assert "MovedBeforeFault" in {e["reason"] for e in events(cluster, namespace, "early")}
        record = json.loads(
            get(cluster, "gpuworkload", "early", "-n", namespace)["metadata"]["annotations"][
                "egpu.io/repair"
            ]
        )
        assert record == {**record, "restarts": 1, "resumeFrom": "step-2000"}
        uids = {p["metadata"]["uid"] for p in items}
        # when the GPU then fails, nothing runs on it: no repair is needed
        wait_until(
            lambda: "RowRemapFailure" in annotation(cluster, node, "egpu.io/gpu-health"),
            90,
            "the fault itself",
        )
        time.sleep(3)
        assert {p["metadata"]["uid"] for p in members(cluster, namespace)} == uids
    finally:
        agent.stop()
        cluster.kubectl("delete", "gpuworkload", "early", "-n", namespace)


def test_the_circuit_breaker_stops_a_mass_fencing(repair_cluster: Cluster, namespace: str) -> None:
    cluster = repair_cluster
    others = len(gpu_nodes(cluster))
    # more of our own nodes than the cluster has others, so a broken agent on all of ours
    # reports more than half the GPU nodes unhealthy
    count = others + 2
    mass = shape("NVIDIA-H100-MASS", "mass", leaves=1, nodes=count)
    add_gpu_nodes(cluster, mass)
    names = [n["metadata"]["name"] for n in node_manifests(mass)]
    total = others + count
    limit = total // 2
    proc = OperatorProcess(
        cluster,
        RUN_DIR / "operator-breaker-e2e.log",
        env={**REPAIR_ENV, "EGPU_BREAKER_WINDOW": "10m", "EGPU_BREAKER_MAX_FRACTION": "0.5"},
    )
    proc.start()
    agent = Agent(cluster, names, ["1:*:*:nvml-down"], RUN_DIR / "agent-breaker.log")
    try:

        def fenced() -> list[str]:
            return [
                n["metadata"]["name"]
                for n in get(cluster, "nodes")["items"]
                if n["metadata"]["name"] in names
                and n["metadata"].get("annotations", {}).get("egpu.io/fenced-gpus")
            ]

        def reported() -> int:
            return sum(
                1
                for n in get(cluster, "nodes")["items"]
                if n["metadata"]["name"] in names and unhealthy_reported(n)
            )

        wait_until(lambda: reported() == count, 60, "every mass node reported unhealthy")
        wait_until(
            lambda: "egpu_fence_breaker_open 1.0" in proc.metrics(), 30, "the breaker to open"
        )
        wait_until(lambda: len(fenced()) > 0, 10, "the first fences")
        for _ in range(8):  # it stays stopped: passes go on, no more fences
            assert len(fenced()) <= limit
            time.sleep(0.5)
        assert 0 < len(fenced()) <= limit < count
        found = get(cluster, "events", "-n", "default", "--field-selector", "reason=FencingPaused")
        paused = [e for e in found["items"] if e["involvedObject"]["name"] in names]
        assert len(paused) >= count - limit
    finally:
        agent.stop()
        proc.stop()
        cluster.kubectl("delete", "node", *names, "--wait=false")


def by_rank(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["labels"]["egpu.io/rank"]: p for p in items}


def test_a_lost_node_shrinks_an_elastic_workload_and_it_grows_back_when_the_node_returns(
    repair_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    cluster = repair_cluster
    # 3 members of 8 GPUs fill the leaf's 3 nodes: a lost one has nowhere to go
    before = by_rank(
        start_gang(
            cluster, namespace, "elastic", "NVIDIA-H100-ELASTIC", 3, 8, "Shrink",
            spec={"minReplicas": 2},
        )
    )  # fmt: skip
    the_leaf = leaf(cluster, before["0"]["spec"]["nodeName"])
    lost = before["2"]["spec"]["nodeName"]

    def status() -> dict[str, Any]:
        return dict(get(cluster, "gpuworkload", "elastic", "-n", namespace).get("status", {}))

    try:
        cluster.kubectl("label", "node", lost, "egpu.io/sim-fault=NodeLost")

        def shrunk() -> bool:
            items = by_rank(members(cluster, namespace))
            return set(items) == {"0", "1"} and status().get("currentMembers") == 2

        wait_until(shrunk, 60, "the workload to shrink to 2 members")
        after = by_rank(members(cluster, namespace))
        for rank in ("0", "1"):  # the members left keep running, untouched
            assert after[rank]["metadata"]["uid"] == before[rank]["metadata"]["uid"]
        body = get(cluster, "gpuworkload", "elastic", "-n", namespace)
        record = json.loads(body["metadata"]["annotations"]["egpu.io/repair"])
        assert record["dropped"] == [2] and record["restarts"] == 1
        assert body["status"]["wantedMembers"] == 3
        wait_until(
            lambda: condition(get(cluster, "gpuworkload", "elastic", "-n", namespace), "Healthy")
            .get("reason") == "Shrunk",
            15,
            "Healthy to say Shrunk",
        )  # fmt: skip
        time.sleep(3)  # no room in the leaf: it stays shrunk, rank 2 is not created
        assert set(by_rank(members(cluster, namespace))) == {"0", "1"}
        shrink_events = [
            e for e in events(cluster, namespace, "elastic") if e["reason"] == "Shrunk"
        ]
        assert shrink_events and f"lost node {lost}" in shrink_events[0]["message"]

        cluster.kubectl("label", "node", lost, "egpu.io/sim-fault-")  # the node comes back

        def grown() -> bool:
            items = members(cluster, namespace)
            return running(items, 3) and status().get("currentMembers") == 3

        wait_until(grown, 90, "the workload to grow back to 3 members")
        again = by_rank(members(cluster, namespace))
        assert leaf(cluster, again["2"]["spec"]["nodeName"]) == the_leaf
        for rank in ("0", "1"):
            assert again[rank]["metadata"]["uid"] == before[rank]["metadata"]["uid"]
        assert again["2"]["metadata"]["annotations"]["egpu.io/resume-from"] == "step-1000"
        assert "GrewBack" in {e["reason"] for e in events(cluster, namespace, "elastic")}
        record = json.loads(
            get(cluster, "gpuworkload", "elastic", "-n", namespace)["metadata"]["annotations"][
                "egpu.io/repair"
            ]
        )
        assert "dropped" not in record and record["restarts"] == 1
    finally:
        cluster.kubectl("label", "node", lost, "egpu.io/sim-fault-", check=False)
        cluster.kubectl("delete", "gpuworkload", "elastic", "-n", namespace)


def test_a_job_that_stops_reporting_progress_is_hung_and_restarted(
    repair_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    cluster = repair_cluster
    before = start_gang(
        cluster, namespace, "stuck", "NVIDIA-H100-HANG", 2, 4, "RestartGang",
        repair={"progressAnnotation": "example.com/step", "hangTimeout": "6s"},
    )  # fmt: skip
    old = {p["metadata"]["uid"] for p in before}
    try:
        for step in range(5):  # 10 s of progress, beyond the timeout: not hung
            for pod in before:
                cluster.kubectl(
                    "annotate", "pod", "-n", namespace, pod["metadata"]["name"], "--overwrite",
                    f"example.com/step={step}",
                )  # fmt: skip
            stopped = time.monotonic()
            time.sleep(2)
        assert {p["metadata"]["uid"] for p in members(cluster, namespace)} == old

        def restarted() -> bool:
            items = members(cluster, namespace)
            return running(items, 2) and not old & {p["metadata"]["uid"] for p in items}

        wait_until(restarted, 40, "the hung gang to be restarted")
        assert time.monotonic() - stopped >= 5, "restarted before its hang timeout"
        hung = [e for e in events(cluster, namespace, "stuck") if e["reason"] == "Hung"]
        assert hung and hung[0]["type"] == "Warning" and "no progress" in hung[0]["message"]
        for pod in members(cluster, namespace):
            assert pod["metadata"]["annotations"]["egpu.io/resume-from"] == "step-1000"
    finally:
        cluster.kubectl("delete", "gpuworkload", "stuck", "-n", namespace)


def test_a_new_leader_carries_on_the_hang_clock_of_a_stalled_job(
    repair_cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    """The leader dies while a job is hung: the new one goes on from the clock recorded
    on the members, not a fresh full timeout from when it first sees them."""
    cluster = repair_cluster
    timeout = 30.0
    before = start_gang(
        cluster, namespace, "stalled", "NVIDIA-H100-HANG", 2, 4, "RestartGang",
        repair={"progressAnnotation": "example.com/step", "hangTimeout": f"{timeout:.0f}s"},
    )  # fmt: skip
    old = {p["metadata"]["uid"] for p in before}
    successor = OperatorProcess(cluster, RUN_DIR / "operator-repair-e2e-successor.log", REPAIR_ENV)
    try:
        for pod in before:
            cluster.kubectl(
                "annotate", "pod", "-n", namespace, pod["metadata"]["name"], "--overwrite",
                "example.com/step=7",
            )  # fmt: skip
        stopped = time.monotonic()

        def recorded() -> bool:
            seen = [
                (p["metadata"].get("annotations") or {}).get("egpu.io/progress-seen")
                for p in members(cluster, namespace)
            ]
            return len(seen) == 2 and all(s and json.loads(s)["value"] == "7" for s in seen)

        wait_until(recorded, timeout, "the hang clocks to be recorded on the members")
        assert time.monotonic() - stopped >= timeout / 2 - 1  # not before half the timeout
        operator.kill()  # SIGKILL: the Lease runs out, the successor takes over
        started = time.monotonic()
        successor.start()

        def restarted() -> bool:
            items = members(cluster, namespace)
            return running(items, 2) and not old & {p["metadata"]["uid"] for p in items}

        wait_until(restarted, 2 * timeout, "the successor to restart the hung gang")
        # a successor that started the clocks afresh would wait a full timeout from
        # when it first saw the members, which is after it started
        assert time.monotonic() - started < timeout, "the successor waited a full timeout"
        assert time.monotonic() - stopped >= timeout - 1, "restarted before its hang timeout"
        hung = [e for e in events(cluster, namespace, "stalled") if e["reason"] == "Hung"]
        assert hung and hung[0]["type"] == "Warning"
    finally:
        successor.stop()
        cluster.kubectl("delete", "gpuworkload", "stalled", "-n", namespace)
