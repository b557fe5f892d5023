"""One leader among replicas, and no half-bound gang whenever the leader dies: two
operator processes against the real API server; the leader is killed (SIGKILL) while it
writes a gang's plan and while it binds, and the standby finishes the gang in one leaf."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from egpu.sim.nodes import ClusterShape
from harness import RUN_DIR, Cluster, OperatorProcess, add_gpu_nodes, wait_until
from objects import gpu_workload

pytestmark = pytest.mark.e2e

MODEL = "NVIDIA-B200"  # only these test nodes have it
SHAPE = ClusterShape(
    blocks=1,
    leaves_per_block=2,
    nodes_per_leaf=4,
    gpu_models=(MODEL,),
    name_prefix="lead",
    domain_prefix="lead-",
)


@pytest.fixture(scope="module")
def gpu_cluster(crds: Cluster) -> Cluster:
    add_gpu_nodes(crds, SHAPE, topology=True)
    return crds


def gang(name: str, replicas: int = 4) -> str:
    return gpu_workload(name, MODEL, replicas, gang=None, requests={}, container="m", image="x/y:1")


def answers(proc: OperatorProcess, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{proc.health_port}{path}", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def leads(proc: OperatorProcess) -> bool:
    return answers(proc, "/leaderz")


def pods(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout
    return list(json.loads(out)["items"])


def leaf(pod: dict[str, Any]) -> str:
    return str(pod["spec"]["nodeName"]).rsplit("-n", 1)[0]


def assert_whole_in_one_leaf(items: list[dict[str, Any]], size: int) -> None:
    assert len(items) == size and all(p["spec"].get("nodeName") for p in items)
    assert len({leaf(p) for p in items}) == 1, [p["spec"]["nodeName"] for p in items]
    seen: set[tuple[str, str]] = set()
    for pod in items:
        for gpu in pod["metadata"]["annotations"]["egpu.io/gpu-ids"].split(","):
            key = (pod["spec"]["nodeName"], gpu)
            assert key not in seen, f"GPU {key} given twice"
            seen.add(key)


def lease_holder(cluster: Cluster) -> str:
    out = cluster.kubectl(
        "get", "lease", "egpu-operator", "-n", "default", "-o", "jsonpath={.spec.holderIdentity}"
    )
    return out.stdout


@pytest.fixture
def pair(gpu_cluster: Cluster) -> Iterator[list[OperatorProcess]]:
    slow = {"EGPU_BIND_DELAY_MS": "300", "EGPU_PLAN_DELAY_MS": "300"}
    procs = [
        OperatorProcess(gpu_cluster, RUN_DIR / f"operator-pair-{i}.log", env=slow) for i in range(2)
    ]
    for proc in procs:
        proc.start()
    yield procs
    for proc in procs:
        proc.stop()


def test_one_replica_leads_and_the_other_stands_by(
    gpu_cluster: Cluster, pair: list[OperatorProcess]
) -> None:
    wait_until(lambda: sum(leads(p) for p in pair) == 1, 30, "exactly one leader")
    time.sleep(2)  # several renewals later, still one
    assert sum(leads(p) for p in pair) == 1
    assert all(p.healthy() for p in pair), "the standby is alive, only not leading"
    assert all(answers(p, "/readyz") for p in pair), "the standby is ready to take over"
    assert lease_holder(gpu_cluster)


@pytest.mark.parametrize("stage", ["plan", "bind"])
def test_the_leader_killed_mid_gang_leaves_no_half_bound_gang(
    gpu_cluster: Cluster, pair: list[OperatorProcess], namespace: str, stage: str
) -> None:
    wait_until(lambda: sum(leads(p) for p in pair) == 1, 30, "a leader")
    leader = next(p for p in pair if leads(p))
    standby = next(p for p in pair if p is not leader)
    gpu_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=gang("g"))

    def progress() -> tuple[int, int]:
        items = pods(gpu_cluster, namespace)
        planned = sum("egpu.io/plan" in p["metadata"].get("annotations", {}) for p in items)
        bound = sum(bool(p["spec"].get("nodeName")) for p in items)
        return planned, bound

    if stage == "plan":  # some plans recorded, not all, nothing bound
        wait_until(lambda: 1 <= progress()[0] < 4, 60, "the plan half written")
    else:
        wait_until(lambda: 1 <= progress()[1] < 4, 60, "the gang half bound")
    leader.kill()
    killed_at = time.monotonic()
    planned, bound = progress()
    assert (planned < 4) if stage == "plan" else (1 <= bound < 4), "the kill came too late"
    wait_until(lambda: leads(standby), 30, "the standby to take over")
    wait_until(lambda: progress()[1] == 4, 60, "the new leader to finish the gang")
    took = time.monotonic() - killed_at
    assert_whole_in_one_leaf(pods(gpu_cluster, namespace), 4)
    print(f"stage={stage}: gang finished {took:.1f}s after the leader was killed")
    gpu_cluster.kubectl("delete", "gpuworkload", "g", "-n", namespace)


def test_a_clean_stop_hands_over_at_once(gpu_cluster: Cluster, pair: list[OperatorProcess]) -> None:
    wait_until(lambda: sum(leads(p) for p in pair) == 1, 30, "a leader")
    leader = next(p for p in pair if leads(p))
    standby = next(p for p in pair if p is not leader)
    stopped = time.monotonic()
    leader.stop()  # SIGTERM: it gives the Lease up
    wait_until(lambda: leads(standby), 10, "the standby to lead")
    # Well inside the 4 s Lease of the tests: it did not wait for the Lease to expire.
    assert time.monotonic() - stopped < 4 + 2
