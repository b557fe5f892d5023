"""GPUInferenceService on the local control plane, with a real Prometheus server.

The traffic simulator (`egpu.sim.traffic`) offers load to the service's Ready pods
and exports per-pod and router series; hack/prometheus.sh runs the Debian package's
Prometheus, scraping it every second; the operator reads Prometheus. Windows are
seconds long so the whole module runs in about two minutes.

Prometheus is required: when it cannot be installed or started these tests FAIL with
the reason (they do not skip).
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from egpu.sim.nodes import ClusterShape
from harness import REPO, RUN_DIR, Cluster, OperatorProcess, add_gpu_nodes, wait_until

pytestmark = pytest.mark.e2e

MODEL = "NVIDIA-A10G"  # only these test nodes have it: other tests' nodes stay out of the way
SHAPE = ClusterShape(
    blocks=1,
    leaves_per_block=1,
    nodes_per_leaf=3,
    gpus_per_node=8,
    gpu_models=(MODEL,),
    name_prefix="inf-e2e",
    domain_prefix="inf-e2e-",
)
SMALL_MODEL = "NVIDIA-T4"  # one node with two GPUs: room for two pods, not three
SMALL = ClusterShape(
    blocks=1,
    leaves_per_block=1,
    nodes_per_leaf=1,
    gpus_per_node=2,
    nvlink_group_size=2,
    gpu_models=(SMALL_MODEL,),
    name_prefix="inf-e2e-small",
    domain_prefix="inf-e2e-small-",
)
# Two nodes of two GPUs; the first holds the start-path test's model files.
CACHE_MODEL = "NVIDIA-L4"
CACHE = ClusterShape(
    blocks=1,
    leaves_per_block=1,
    nodes_per_leaf=2,
    gpus_per_node=2,
    nvlink_group_size=2,
    gpu_models=(CACHE_MODEL,),
    name_prefix="inf-e2e-cache",
    domain_prefix="inf-e2e-cache-",
)
CACHED_NODE = "inf-e2e-cache-b0-l0-n000"
PROMETHEUS = REPO / "hack" / "prometheus.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    cluster: Cluster
    prometheus_url: str
    sim_port: int
    workdir: Path


@pytest.fixture(scope="module")
def gpu_cluster(operator: OperatorProcess) -> Cluster:
    add_gpu_nodes(operator.cluster, SHAPE, SMALL, CACHE)
    return operator.cluster


@pytest.fixture(scope="module")
def stack(gpu_cluster: Cluster) -> Iterator[Stack]:
    """A real Prometheus scraping the simulator's port (the simulator starts per test)."""
    workdir = RUN_DIR / "inference-e2e"
    workdir.mkdir(parents=True, exist_ok=True)
    sim_port, prom_port = free_port(), free_port()
    proc = subprocess.run(
        [
            "bash",
            str(PROMETHEUS),
            "start",
            str(workdir / "prometheus"),
            str(prom_port),
            f"127.0.0.1:{sim_port}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(
            "a real Prometheus is required for the autoscaling e2e tests and could not be "
            f"installed or started by hack/prometheus.sh:\n{proc.stderr[-3000:]}",
            pytrace=False,
        )
    yield Stack(gpu_cluster, f"http://127.0.0.1:{prom_port}", sim_port, workdir)
    subprocess.run(["bash", str(PROMETHEUS), "stop", str(workdir / "prometheus")], check=False)


class Traffic:
    """The simulator as a subprocess, on a trace that starts at a known wall time."""

    def __init__(self, stack: Stack, namespace: str, name: str, levels: list[list[float]]) -> None:
        self.start_at = time.time() + 2.0
        self.out = stack.workdir / f"{namespace}-{name}.json"
        config = {
            "start_at": self.start_at,
            "tick_s": 0.25,
            "services": [
                {
                    "namespace": namespace,
                    "name": name,
                    "service_time_s": 1.0,
                    "slots": 4,
                    "latency_target_s": 2.0,
                    "trace": {"kind": "steps", "levels": levels},
                }
            ],
        }
        path = stack.workdir / f"{namespace}-{name}-sim.json"
        path.write_text(json.dumps(config))
        self.log = (stack.workdir / f"{namespace}-{name}-sim.log").open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "egpu.sim.traffic",
                "--config",
                str(path),
                "--out",
                str(self.out),
                "--port",
                str(stack.sim_port),
                "--kubeconfig",
                stack.cluster.kubeconfig,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def at(self, t: float) -> float:
        """Wall time of trace second t."""
        return self.start_at + t

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()

    def stop(self) -> dict[str, Any]:
        """Stop it (it writes its results on SIGTERM) and read the results."""
        self.close()
        return dict(json.loads(self.out.read_text())["services"][0])


def service(
    name: str,
    stack: Stack,
    namespace: str,
    *,
    min_replicas: int,
    behavior: dict[str, Any],
    warm: int = 0,
    warm_max: int | None = None,
    warm_extra: dict[str, Any] | None = None,
    ready_after: str = "2s",
    tide: dict[str, Any] | None = None,
    model: str = MODEL,
    max_replicas: int = 12,
    startup: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> str:
    selector = f'namespace="{namespace}",service="{name}"'
    return json.dumps(
        {
            "apiVersion": "egpu.io/v1alpha1",
            "kind": "GPUInferenceService",
            "metadata": {"name": name},
            "spec": {
                "gpusPerPod": 1,
                "gpuModel": model,
                "minReplicas": min_replicas,
                "maxReplicas": max_replicas,
                "scaling": {
                    "metric": "Concurrency",
                    "target": 3,
                    "source": {
                        "prometheus": {
                            "url": stack.prometheus_url,
                            "query": f"sum(egpu_inflight_requests{{{selector}}})",
                            "queuedQuery": f"sum(egpu_router_queue_length{{{selector}}})",
                        }
                    },
                },
                "behavior": behavior,
                "warmPool": {
                    "size": warm,
                    **({} if warm_max is None else {"maxSize": warm_max}),
                    **(warm_extra or {}),
                },
                **({} if tide is None else {"tide": tide}),
                **({} if startup is None else {"startup": startup}),
                "template": {
                    "metadata": {
                        "annotations": {
                            "egpu.io/sim-ready-after": ready_after,
                            **(annotations or {}),
                        }
                    },
                    "spec": {
                        "containers": [
                            {
                                "name": "server",
                                "image": "registry.local/egpu/sim:latest",
                                "ports": [{"containerPort": 8080}],
                                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                            }
                        ]
                    },
                },
            },
        }
    )


def status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "gpuinferenceservice", name, "-n", namespace, "-o", "json").stdout
    return dict(json.loads(out).get("status") or {})


def condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions") or [] if c["type"] == type_), {})


def serving_pods(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    out = cluster.kubectl(
        "get",
        "pods",
        "-n",
        namespace,
        "-l",
        f"egpu.io/inference-service={name},egpu.io/role=serving",
        "-o",
        "json",
    ).stdout
    return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]


def record(
    cluster: Cluster, namespace: str, name: str, until: float
) -> list[tuple[float, dict[str, Any]]]:
    """The status, sampled until wall time `until`."""
    seen = []
    while time.time() < until:
        seen.append((time.time(), status(cluster, namespace, name)))
        time.sleep(0.2)
    return seen


PANIC_WINDOW_S = 2.0
STABILIZATION_S = 6.0
# Between the load and a decision: one Prometheus scrape (1s), one operator scrape
# (0.5s), the status write and this test's poll.
PIPELINE_SLACK_S = 2.5
# The operator's idle clock starts at its last reading that showed demand, which can
# come up to one of its scrapes (0.5s) before the load stopped when Prometheus (1s
# scrapes) took the simulator's zero right after it; with the simulator's tick
# (0.25s) and room for a late scrape on top.
LAST_DEMAND_SLACK_S = 1.25


def test_flash_crowd_scales_up_in_the_panic_window_and_down_after_stabilisation(
    stack: Stack, namespace: str
) -> None:
    cluster = stack.cluster
    behavior = {
        "stableWindow": "8s",
        "panicWindow": f"{PANIC_WINDOW_S:g}s",
        "scrapeInterval": "500ms",
        "scaleDown": {"stabilizationWindow": f"{STABILIZATION_S:g}s"},
    }
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=service("chat", stack, namespace, min_replicas=1, behavior=behavior),
    )
    # The load starts once the first replica is ready: requests queued behind a cold start
    # are a backlog the autoscaler rightly sizes for, and on a loaded machine that start-up
    # recommendation could still be held when the crowd comes.
    wait_until(
        lambda: status(cluster, namespace, "chat").get("readyReplicas") == 1,
        60,
        "one ready replica",
    )
    # x20 at t=16 (2 -> 40 requests/s: 40 in flight need 14 replicas at 3 each), back at t=32.
    traffic = Traffic(stack, namespace, "chat", [[0, 2], [16, 40], [32, 2], [56, 2]])
    try:
        before = record(cluster, namespace, "chat", traffic.at(15.5))
        # Base load needs one replica (two at most while its first seconds are remembered).
        base = before[-1][1]["desiredReplicas"]
        assert base <= 2, before[-1][1].get("lastDecision")
        seen = record(cluster, namespace, "chat", traffic.at(54))
        result = traffic.stop()
    finally:
        traffic.close()

    jump, drop = traffic.at(16), traffic.at(32)
    first_up = next(t for t, st in seen if t >= jump and st.get("desiredReplicas", 0) > base)
    panic = [
        st["lastDecision"] for _, st in seen if st.get("lastDecision", {}).get("reason") == "Panic"
    ]
    assert panic, "no Panic decision on a x20 flash crowd"
    assert first_up - jump <= PANIC_WINDOW_S + PIPELINE_SLACK_S, (
        f"scaled up {first_up - jump:.1f}s after the jump"
    )
    peak = max(st.get("desiredReplicas", 0) for t, st in seen if t < drop)
    assert peak >= 10, f"peak {peak}: 40 requests/s need 10 replicas of 4"
    # Back down: not before the stabilisation window after the load fell, then to base.
    falls = [
        t
        for (t0, a), (t, b) in itertools.pairwise(seen)
        if t0 >= drop and b.get("desiredReplicas", 0) < a.get("desiredReplicas", 0)
    ]
    assert falls, "never scaled down after the crowd left"
    assert falls[0] - drop >= STABILIZATION_S - 0.5, f"scaled down {falls[0] - drop:.1f}s after"
    assert seen[-1][1]["desiredReplicas"] <= 2, seen[-1][1].get("lastDecision")
    # The simulator saw the capacity arrive: ready replicas carried the crowd within seconds.
    (lag,) = result["capacity_lag_s"]
    assert lag is not None and lag < 15, result["capacity_lag_s"]
    events = cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    reasons = {e["reason"] for e in json.loads(events)["items"]}
    assert {"PanicScaledUp", "ScaledDown"} <= reasons, reasons


def test_scale_to_zero_after_idle_and_wake_on_the_first_request(
    stack: Stack, namespace: str
) -> None:
    cluster = stack.cluster
    behavior = {
        "stableWindow": "4s",
        "panicWindow": "1s",
        "scrapeInterval": "500ms",
        "scaleDown": {"stabilizationWindow": "3s"},
        "scaleToZeroAfter": "5s",
    }
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=service("idle", stack, namespace, min_replicas=0, behavior=behavior),
    )
    # Load, silence from t=8, a single trickle from t=28.
    traffic = Traffic(stack, namespace, "idle", [[0, 2], [8, 0], [28, 1], [40, 1]])
    try:
        wait_until(
            lambda: status(cluster, namespace, "idle").get("readyReplicas", 0) >= 1,
            traffic.at(8) - time.time(),
            "a replica while there is load",
        )
        wait_until(
            lambda: (
                status(cluster, namespace, "idle").get("desiredReplicas") == 0
                and not serving_pods(cluster, namespace, "idle")
            ),
            traffic.at(26) - time.time(),
            "scale to zero after the idle period",
        )
        zero_at = time.time()
        assert zero_at >= traffic.at(8) + 5 - LAST_DEMAND_SLACK_S, (
            f"scaled to zero {zero_at - traffic.at(8):.2f}s after the load stopped, "
            "before the idle period"
        )
        st = status(cluster, namespace, "idle")
        assert st["lastDecision"]["reason"] in ("ScaleToZero", "Hold"), st["lastDecision"]
        wait_until(lambda: time.time() >= traffic.at(28), 30, "the first request")
        wait_until(
            lambda: status(cluster, namespace, "idle").get("readyReplicas", 0) >= 1,
            15,
            "a replica woken by the first request",
        )
        woke_in = time.time() - traffic.at(28)
        time.sleep(max(0.0, traffic.at(36) - time.time()))
        result = traffic.stop()
    finally:
        traffic.close()
    assert woke_in < 10, f"woke {woke_in:.1f}s after the first request"
    # The requests held at the router while at zero were served once the replica came.
    assert result["timeline"][-1]["queue"] == 0, result["timeline"][-4:]
    events = cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    reasons = {e["reason"] for e in json.loads(events)["items"]}
    assert {"ScaledToZero", "Woke"} <= reasons, reasons


COLD_START_S = 8.0


def test_a_second_crowd_finds_the_capacity_the_first_taught(stack: Stack, namespace: str) -> None:
    """No pool by hand (size 0, ceiling 12): the first crowd waits the cold start, the
    pool then learns its size, and the second crowd is served by promoted warm pods."""
    cluster = stack.cluster
    behavior = {
        "stableWindow": "8s",
        "panicWindow": "2s",
        "scrapeInterval": "500ms",
        "scaleDown": {"stabilizationWindow": "6s"},
    }
    body = service(
        "recur",
        stack,
        namespace,
        min_replicas=1,
        behavior=behavior,
        warm=0,
        warm_max=12,
        ready_after=f"{COLD_START_S:g}s",
    )
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=body)
    # No load until the first replica is ready (requests queued at a service still
    # starting would be a panic of their own), then two x20 crowds (2 -> 40 requests/s:
    # 10 ready replicas carry them), 36 s apart.
    levels = [[0, 0], [12, 2], [30, 40], [44, 2], [80, 40], [92, 2], [96, 2]]
    traffic = Traffic(stack, namespace, "recur", levels)

    def learned(st: dict[str, Any]) -> bool:
        return st.get("warmReplicas", 0) >= 5 and st.get("readyReplicas", 0) <= 2

    try:
        time.sleep(max(0.0, traffic.at(26) - time.time()))
        before = status(cluster, namespace, "recur")
        # Base load: one replica (two while the start-up is still remembered), no pool.
        assert before.get("readyReplicas", 0) <= 2, before.get("lastDecision")
        assert before.get("warmReplicas", 0) == 0, before
        time.sleep(max(0.0, traffic.at(46) - time.time()))
        # After the first crowd, before the second: serving back down, capacity kept warm.
        wait_until(
            lambda: learned(status(cluster, namespace, "recur")),
            traffic.at(78) - time.time(),
            "the first crowd's capacity kept warm before the second",
        )
        between = status(cluster, namespace, "recur")
        time.sleep(max(0.0, traffic.at(94) - time.time()))
        result = traffic.stop()
    finally:
        traffic.close()

    decision = between.get("lastDecision", {})
    assert between.get("readyReplicas", 0) + between.get("warmReplicas", 0) >= 10, between
    assert decision.get("warmReplicas", 0) >= 5, decision
    assert "1 crowd seen" in decision.get("message", ""), decision
    assert len(between.get("scaler", {}).get("bursts", [])) == 1, between.get("scaler")
    _, first, second = result["capacity_lag_s"]  # the base load, then the two crowds
    # The first crowd found no spare capacity: new pods had to start cold.
    assert first is not None and first >= COLD_START_S, result["capacity_lag_s"]
    # The second found it warm: carried before any new pod could have started.
    assert second is not None and second < COLD_START_S, result["capacity_lag_s"]


def test_a_gpu_hour_budget_cuts_the_pool_a_crowd_taught(stack: Stack, namespace: str) -> None:
    """A budget of 0.02 GPU-hours (72 GPU-seconds) for the learned pods, a crowd
    remembered 30 s: after the crowd the pool keeps only the pods the rest pays for
    until the crowd is forgotten, says so, and counts what they held in the status."""
    cluster = stack.cluster
    behavior = {
        "stableWindow": "8s",
        "panicWindow": "2s",
        "scrapeInterval": "500ms",
        "scaleDown": {"stabilizationWindow": "6s"},
    }
    budget = {"burstMemory": "30s", "budget": {"gpuHours": 0.02, "window": "1h"}}
    body = service(
        "budget",
        stack,
        namespace,
        min_replicas=1,
        behavior=behavior,
        warm=0,
        warm_max=12,
        warm_extra=budget,
        ready_after=f"{COLD_START_S:g}s",
    )
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=body)
    # As above: one x20 crowd once the first replica is ready.
    levels = [[0, 0], [12, 2], [30, 40], [44, 2], [90, 2]]
    traffic = Traffic(stack, namespace, "budget", levels)

    seen: list[dict[str, Any]] = []
    cut_to = re.compile(r"warm pool cut to (\d+), (\d+) of (\d+) learned")

    def cut() -> bool:
        st = status(cluster, namespace, "budget")
        message = st.get("lastDecision", {}).get("message", "")
        if cut_to.search(message) and st.get("scaler", {}).get("warmBudgetSlices"):
            seen.append(st)
            return True
        return False

    try:
        wait_until(
            cut,
            traffic.at(88) - time.time(),
            "the learned pool cut by its GPU-hour budget, the spend in the status",
        )
    finally:
        traffic.close()

    after = seen[-1]
    decision = after["lastDecision"]
    found = cut_to.search(decision["message"])
    assert found is not None, decision
    pool, kept, learned = (int(g) for g in found.groups())
    # Fewer than the crowd taught, and what the decision asked for (the floor is 0).
    assert kept < learned and pool == kept == decision.get("warmReplicas"), decision
    assert "of 0.02 left for 1h" in decision["message"], decision
    spent = sum(s["gpuSeconds"] for s in after["scaler"]["warmBudgetSlices"])
    # Paced, it never spends much beyond the budget (pods being deleted still count).
    assert 0 < spent <= 72.0 * 1.1, after["scaler"]


TIDE_PERIOD_S = 40.0
TIDE_COLD_START_S = 4.0


def test_a_learned_tide_scales_ahead_of_its_rise_and_lets_go_with_its_ebb(
    stack: Stack, namespace: str
) -> None:
    """A load that repeats every 40 s (`tide.period`): the first rise waits the cold
    start; the second finds capacity asked for ahead of it (the profile learned the
    first; reacting alone it would have let them go 20 s after the first fall), and
    after it the replicas go with the learned ebb, not 20 s later."""
    cluster = stack.cluster
    behavior = {
        "stableWindow": "8s",
        "panicWindow": "2s",
        "scrapeInterval": "500ms",
        "scaleDown": {"stabilizationWindow": "20s"},
    }
    body = service(
        "tide",
        stack,
        namespace,
        min_replicas=1,
        behavior=behavior,
        ready_after=f"{TIDE_COLD_START_S:g}s",
        tide={"period": f"{TIDE_PERIOD_S:g}s", "buckets": 40},
    )
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=body)
    # Two cycles: 2 requests/s, a rise to 24 (8 replicas at 3 each) for 12 s, back.
    rise, fall = 16.0, 28.0
    second_rise, second_fall = rise + TIDE_PERIOD_S, fall + TIDE_PERIOD_S
    levels = [[0, 0], [8, 2], [rise, 24], [fall, 2], [second_rise, 24], [second_fall, 2], [84, 2]]
    traffic = Traffic(stack, namespace, "tide", levels)
    try:
        time.sleep(max(0.0, traffic.at(second_rise - 12) - time.time()))
        ahead = record(cluster, namespace, "tide", traffic.at(second_rise))
        time.sleep(max(0.0, traffic.at(second_fall + 10) - time.time()))
        after = status(cluster, namespace, "tide")
        time.sleep(max(0.0, traffic.at(82) - time.time()))
        result = traffic.stop()
    finally:
        traffic.close()

    # Before the second rise, at 2 requests/s: scaled up on the profile's word.
    tidal = [st for _, st in ahead if (st.get("lastDecision") or {}).get("reason") == "Tide"]
    assert tidal, [st.get("lastDecision") for _, st in ahead[-3:]]
    assert max(st.get("desiredReplicas", 0) for st in tidal) >= 6, tidal[-1].get("lastDecision")
    assert "ahead of the learned rise" in " ".join(
        (st.get("lastDecision") or {}).get("message", "") for st in tidal
    )
    _, first, second = result["capacity_lag_s"]  # the base load, then the two rises
    assert first is not None and first >= TIDE_COLD_START_S, result["capacity_lag_s"]
    assert second is not None and second < TIDE_COLD_START_S, result["capacity_lag_s"]
    # 10 s after the second fall: down with the ebb (the 20 s stabilisation would hold).
    assert after.get("desiredReplicas", 99) <= 3, after.get("lastDecision")


def manual_service(name: str) -> str:
    """A service sized through the scale subresource (its metric is never read)."""
    return json.dumps(
        {
            "apiVersion": "egpu.io/v1alpha1",
            "kind": "GPUInferenceService",
            "metadata": {"name": name},
            "spec": {
                "gpusPerPod": 1,
                "gpuModel": SMALL_MODEL,
                "minReplicas": 1,
                "maxReplicas": 4,
                "replicas": 1,
                "scaling": {
                    "metric": "Concurrency",
                    "target": 3,
                    "source": {"podMetrics": {"port": 8080}},
                },
                "template": {
                    "metadata": {"annotations": {"egpu.io/sim-ready-after": "1s"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "server",
                                "image": "registry.local/egpu/sim:1",
                                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                            }
                        ]
                    },
                },
            },
        }
    )


def test_scale_subresource_capacity_limit_and_rolling_update(stack: Stack, namespace: str) -> None:
    cluster = stack.cluster
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manual_service("fixed"))
    wait_until(
        lambda: status(cluster, namespace, "fixed").get("readyReplicas") == 1, 30, "one replica"
    )
    # Two GPUs, three replicas wanted: the status says so instead of hanging.
    cluster.kubectl("scale", "-n", namespace, "gpuinferenceservice/fixed", "--replicas=3")

    def limited() -> bool:
        st = status(cluster, namespace, "fixed")
        return condition(st, "CapacityLimited").get("status") == "True"

    wait_until(limited, 30, "CapacityLimited=True with three pods wanted on two GPUs")
    st = status(cluster, namespace, "fixed")
    assert (st["desiredReplicas"], st["replicas"]) == (3, 3)
    assert "waiting for a GPU" in condition(st, "CapacityLimited")["message"]
    assert condition(st, "ScalingActive")["reason"] == "ReplicasSetExternally"
    wait_until(lambda: status(cluster, namespace, "fixed").get("readyReplicas") == 2, 30, "2 ready")

    cluster.kubectl("scale", "-n", namespace, "gpuinferenceservice/fixed", "--replicas=1")
    wait_until(lambda: not limited(), 30, "CapacityLimited=False after scaling down")
    wait_until(lambda: len(serving_pods(cluster, namespace, "fixed")) == 1, 30, "one pod left")
    (old,) = serving_pods(cluster, namespace, "fixed")

    # A template change rolls out without the ready count ever dropping below one.
    cluster.kubectl(
        "patch",
        "-n",
        namespace,
        "gpuinferenceservice/fixed",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"template": {"metadata": {"labels": {"release": "2"}}}}}),
    )
    deadline = time.time() + 40
    while time.time() < deadline:
        pods = serving_pods(cluster, namespace, "fixed")
        ready = [
            p
            for p in pods
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
        ]
        assert ready, "no ready serving pod during the rollout"
        if [p["metadata"]["labels"].get("release") for p in ready] == ["2"] and len(pods) == 1:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the rollout did not finish")
    (new,) = serving_pods(cluster, namespace, "fixed")
    assert new["metadata"]["name"] != old["metadata"]["name"]
    svc = json.loads(
        cluster.kubectl("get", "service", "fixed", "-n", namespace, "-o", "json").stdout
    )
    assert svc["spec"]["selector"] == {
        "egpu.io/inference-service": "fixed",
        "egpu.io/role": "serving",
    }


def test_pods_start_where_the_model_is_cached_and_each_path_is_measured(
    stack: Stack, namespace: str
) -> None:
    """Three pods, room for two on the node that holds the model: two start Cached (1 s in
    the simulation), the third Cold (6 s); the status keeps both times, and with the
    cached node full the next pods are planned Cold."""
    cluster = stack.cluster
    cluster.kubectl(
        "annotate", "node", CACHED_NODE, "--overwrite", "egpu.io/cached-artefacts=models/chat@r1"
    )
    behavior = {"stableWindow": "8s", "panicWindow": "2s", "scrapeInterval": "500ms"}
    cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=service(
            "cached",
            stack,
            namespace,
            min_replicas=3,
            max_replicas=4,
            behavior=behavior,
            ready_after="6s",
            model=CACHE_MODEL,
            startup={"artefacts": ["models/chat@r1"]},
            annotations={"egpu.io/sim-ready-after-cached": "1s"},
        ),
    )

    def measured() -> bool:
        paths = (status(cluster, namespace, "cached").get("scaler") or {}).get("startPaths")
        return {p["path"] for p in paths or []} >= {"Cached", "Cold"}

    wait_until(measured, 90, "both start paths measured in status.scaler.startPaths")
    pods = serving_pods(cluster, namespace, "cached")
    assert len(pods) == 3
    for pod in pods:
        annotations = pod["metadata"]["annotations"]
        assert annotations["egpu.io/artefacts"] == "models/chat@r1"
        on_cached = pod["spec"]["nodeName"] == CACHED_NODE
        assert annotations["egpu.io/start-path"] == ("Cached" if on_cached else "Cold"), pod
    assert sum(p["spec"]["nodeName"] == CACHED_NODE for p in pods) == 2
    st = status(cluster, namespace, "cached")
    times = {p["path"]: p["timeToReadySeconds"] for p in st["scaler"]["startPaths"]}
    assert times["Cached"] < 6.0 <= times["Cold"], times
    wait_until(
        lambda: (
            "new pods start Cold"
            in (status(cluster, namespace, "cached").get("lastDecision") or {}).get("message", "")
        ),
        30,
        "the next pods planned on the Cold path (the cached node is full)",
    )
