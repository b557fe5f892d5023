#!/usr/bin/env python3
"""The chaos soak: the operator under API faults, churn and SIGKILL, judged by the
API server's own objects.

    .venv/bin/python hack/soak/soak.py [--profile short|long] [--seed N] [--replicas 1|2]

A fresh local control plane starts in $EGPU_RUN_DIR (default .run/soak) with
simulated GPU nodes and the default GPUTopology. The operator (the real
`egpu-operator` console script) talks to the API server only through the fault
proxy (hack/soak/faultproxy.py), which injects 5xx, 429, cut and slow replies,
cut and expired watches, and writes applied with their reply lost. Meanwhile,
seeded: GPUWorkloads (gangs that require one leaf, single pods, elastic gangs)
are created, scaled and deleted; nodes are added, removed (and added back),
cordoned and faulted; foreign pods (kube-scheduler's, or bound with nodeName)
and bare egpu-scheduler pods come and go; and the leader (of two replicas, by
/leaderz) is lost: SIGKILLed at random or frozen by the proxy mid plan write or
mid gang bind, cut off from the API server, or only its Lease requests stalled;
a killed one is replaced at once. Every sample, the invariants of
hack/soak/invariants.py are checked against the API server; at the end the
faults stop, the cluster is left quiet, and the eventual ones are judged.
docs/soak.md describes it all.

Output: each violation, then one JSON line: operations, faults injected,
leader losses, violations, time from a loss to the next bind by another
process (p50/p99), duration. Exit status 1 when there were violations.
Events (operations, kills, violations) go to $EGPU_RUN_DIR/soak-events.jsonl,
the operators' logs to $EGPU_RUN_DIR/operator-*.log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO / "hack"))

from egpu.kube.client import ApiError, Credentials, KubeClient  # noqa: E402
from egpu.sim.nodes import ClusterShape, create_nodes, node_manifests  # noqa: E402
from soak.invariants import (  # noqa: E402
    FAULT_LABEL,
    GPU,
    Sample,
    Tracker,
    Violation,
    bind_time,
    check_leaders,
    created,
    free_room,
    key_of,
    name_of,
    node_of,
)

RUN_DIR = Path(os.environ.get("EGPU_RUN_DIR", REPO / ".run" / "soak"))
BIN = Path(sys.executable).parent
MODEL = "NVIDIA-H100-80GB-HBM3"
NAMESPACES = ("soak-a", "soak-b")
# Longer than the operator's default Lease (15 s): a standby must take over meanwhile.
PARTITION_S = 20.0
# The leader's Lease requests alone held this long (longer than the Lease).
STALL_S = 25.0
LEASE_PATH = "/apis/coordination.k8s.io/"
# The operator's default Lease (--lease-namespace, --lease-name).
LEASE_OBJECT = f"{LEASE_PATH}v1/namespaces/default/leases/egpu-operator"
# Binds by two live processes this close together: two leaders (a leader stops acting at
# its renew deadline, 10 s, before a standby may take the 15 s Lease).
TWO_LEADERS_WINDOW_S = 2.0
LEAF = "egpu.io/leaf"
WORKLOADS = "/apis/egpu.io/v1alpha1"
TOPOLOGY = {
    "apiVersion": "egpu.io/v1alpha1",
    "kind": "GPUTopology",
    "metadata": {"name": "default"},
    "spec": {
        "levels": [
            {"nodeLabel": "egpu.io/block"},
            {"nodeLabel": LEAF},
            {"nodeLabel": "kubernetes.io/hostname"},
        ]
    },
}


@dataclass(frozen=True)
class Profile:
    churn_s: float
    quiet_s: float
    shape: ClusterShape
    ops_per_s: float
    kill_every_s: tuple[float, float]
    max_workloads: int
    max_foreign: int
    max_bare: int
    sample_s: float
    faults: dict[str, float]


FAULTS = {
    "error_5xx": 0.01,
    "throttle_429": 0.01,
    "slow": 0.03,
    "cut_response": 0.01,
    "lost_write": 0.01,
    "lost_bind": 0.03,
    "watch_cut": 0.3,
    "watch_gone": 0.1,
    "slow_max_s": 2.0,
    "watch_cut_max_s": 30.0,
    "hang_s": 35.0,
}
PROFILES = {
    "short": Profile(
        churn_s=120,
        quiet_s=100,
        shape=ClusterShape(blocks=2, leaves_per_block=2, nodes_per_leaf=8, name_prefix="soak"),
        ops_per_s=1.5,
        kill_every_s=(6, 12),
        max_workloads=10,
        max_foreign=6,
        max_bare=8,
        sample_s=2.0,
        faults=FAULTS,
    ),
    "long": Profile(
        churn_s=1200,
        quiet_s=150,
        shape=ClusterShape(blocks=2, leaves_per_block=4, nodes_per_leaf=8, name_prefix="soak"),
        ops_per_s=2.0,
        kill_every_s=(20, 45),
        max_workloads=20,
        max_foreign=12,
        max_bare=16,
        sample_s=3.0,
        faults=FAULTS,
    ),
}


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)  # nearest rank
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return round(ordered[index], 2)


# -- the parts ---------------------------------------------------------------------------


class Proxy:
    """The fault proxy process and its control API."""

    def __init__(self, kubeconfig: Path, seed: int, rates: dict[str, float]) -> None:
        self.log = (RUN_DIR / "faultproxy.log").open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "hack" / "soak" / "faultproxy.py"),
                "--kubeconfig",
                str(kubeconfig),
                "--seed",
                str(seed),
                "--rates",
                json.dumps(rates),
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fault proxy did not start; see {RUN_DIR / 'faultproxy.log'}")
        self.url = f"http://127.0.0.1:{json.loads(line)['control_port']}"
        self.session: aiohttp.ClientSession | None = None

    async def call(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        if self.session is None:
            self.session = aiohttp.ClientSession()
        async with self.session.request(
            method, self.url + path, json=body, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp:
            data = await resp.json()
            if resp.status >= 400:
                raise RuntimeError(f"fault proxy {method} {path}: {data}")
            return data

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Operator:
    """One `egpu-operator` process, talking through its own proxy route."""

    def __init__(self, number: int, proxy: Proxy) -> None:
        self.number = number
        self.route = f"op-{number}"
        self.proxy = proxy
        self.health_port, self.metrics_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = RUN_DIR / f"operator-{number}.log"
        self.started_at = 0.0
        self.ended_at: float | None = None  # killed, or found dead
        self.killed = False

    async def start(self) -> None:
        port = (await self.proxy.call("POST", "/routes", {"name": self.route}))["port"]
        self.spawn(port)

    def spawn(self, port: int) -> None:
        kubeconfig = RUN_DIR / f"operator-{self.number}.kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: soak-proxy, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
            "users: [{name: soak, user: {}}]\n"
            "contexts: [{name: soak, context: {cluster: soak-proxy, user: soak}}]\n"
            "current-context: soak\n"
        )
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "EGPU_LEDGER_AUDIT_SECONDS": os.environ.get("EGPU_LEDGER_AUDIT_SECONDS", "5"),
            # The Lease holder's identity starts with it: the soak tells the processes apart.
            "POD_NAME": self.route,
        }
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(BIN / "egpu-operator"),
                    "--kubeconfig",
                    str(kubeconfig),
                    "--bind-address",
                    "127.0.0.1",
                    "--health-port",
                    str(self.health_port),
                    "--metrics-port",
                    str(self.metrics_port),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.started_at = time.time()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def get(self, port: int, path: str) -> tuple[int, str] | None:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    f"http://127.0.0.1:{port}{path}", timeout=aiohttp.ClientTimeout(total=3)
                ) as resp,
            ):
                return resp.status, await resp.text()
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def healthy(self) -> bool:
        answer = await self.get(self.health_port, "/healthz")
        return answer is not None and answer[0] == 200

    async def ready(self) -> bool | None:
        """Leader or not by /leaderz; None when the operator serves no /leaderz."""
        answer = await self.get(self.health_port, "/leaderz")
        if answer is None:
            return False
        if answer[0] == 404:
            return None
        return answer[0] == 200

    async def metric(self, name: str) -> float | None:
        answer = await self.get(self.metrics_port, "/metrics")
        if answer is None or answer[0] != 200:
            return None
        values = [
            float(line.split()[-1])
            for line in answer[1].splitlines()
            if line.split("{")[0].split(" ")[0] == name
        ]
        return max(values) if values else None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.killed = True
            self.ended_at = time.time()
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# -- what gets created -------------------------------------------------------------------


def container(gpus: int) -> dict[str, Any]:
    requests: dict[str, str] = {"cpu": "500m", "memory": "1Gi"}
    limits: dict[str, str] = {}
    if gpus:
        requests[GPU] = limits[GPU] = str(gpus)
    return {
        "name": "main",
        "image": "registry.local/soak:latest",
        "resources": {"requests": requests, "limits": limits},
    }


def workload_body(name: str, kind: str, rng: random.Random) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "gpuModel": MODEL,
        "template": {"spec": {"containers": [container(0)]}},
    }
    if kind == "gang":
        spec |= {
            "replicas": rng.randint(2, 4),
            "gpusPerPod": rng.choice([2, 4, 8]),
            "gang": {"policy": "AllOrNothing", "timeout": "20s"},
            "topology": {"topologyName": "default", "required": LEAF},
        }
    elif kind == "single":
        spec |= {
            "replicas": rng.randint(1, 3),
            "gpusPerPod": rng.choice([1, 2]),
            "gang": {"policy": "None"},
        }
    else:  # elastic
        spec |= {
            "replicas": rng.randint(2, 4),
            "minReplicas": 2,
            "maxReplicas": 6,
            "gpusPerPod": rng.choice([1, 2]),
            "gang": {"policy": "AllOrNothing", "minMembers": 2, "timeout": "20s"},
            "topology": {"topologyName": "default", "preferred": LEAF},
        }
    return {
        "apiVersion": "egpu.io/v1alpha1",
        "kind": "GPUWorkload",
        "metadata": {"name": name, "labels": {"egpu.io/soak": kind}},
        "spec": spec,
    }


def pod_body(name: str, gpus: int, role: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"egpu.io/soak": role}},
        "spec": {"containers": [container(gpus)], "terminationGracePeriodSeconds": 0, **spec},
    }


def node_body(live: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    """A node to create from a live one (the same one again, or a sibling in its leaf)."""
    meta = live["metadata"]
    labels = dict(meta.get("labels") or {})
    labels.pop(FAULT_LABEL, None)
    name = name or str(meta["name"])
    labels["kubernetes.io/hostname"] = name
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith("node.")
    }
    status = live.get("status") or {}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {"providerID": f"kwok://{name}"},
        "status": {
            "allocatable": copy.deepcopy(status.get("allocatable")),
            "capacity": copy.deepcopy(status.get("capacity")),
        },
    }


# -- the soak ----------------------------------------------------------------------------


@dataclass
class Kill:
    at: float
    mode: str
    reached: bool
    route: str
    detail: dict[str, Any] = field(default_factory=dict)


class Soak:
    def __init__(self, profile: Profile, seed: int, replicas: int) -> None:
        self.profile = profile
        self.seed = seed
        self.replicas = replicas
        self.rng = random.Random(seed)  # the churn
        # The kills, apart: a seed gives the same kills however the churn interleaves.
        self.kill_rng = random.Random(seed ^ 0x5EED)
        self.modes: list[str] = []
        self.tracker = Tracker()
        self.ops: Counter[str] = Counter()
        self.op_errors: Counter[str] = Counter()
        self.kills: list[Kill] = []
        self.violations: list[tuple[float, Violation]] = []
        self.exits: list[dict[str, Any]] = []
        self.operators: list[Operator] = []
        self.started = time.time()
        self.names = Counter[str]()
        self.sample: Sample | None = None
        self.removed: dict[str, dict[str, Any]] = {}
        self.foreign: set[str] = set()
        self.bare: set[str] = set()
        self.audit_seen = False
        self.audit_values: list[float] = []
        self.events = (RUN_DIR / "soak-events.jsonl").open("w")
        self.client: KubeClient
        self.proxy: Proxy
        self.lock = asyncio.Lock()  # kills and restarts one at a time
        self.lease_holders: list[tuple[float, str | None]] = []

    def event(self, what: str, **data: Any) -> None:
        now = time.time()
        clock = time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        record = {"t": round(now - self.started, 2), "utc": clock, "event": what, **data}
        self.events.write(json.dumps(record) + "\n")
        self.events.flush()

    # -- set-up ------------------------------------------------------------------------

    async def setup(self) -> None:
        kubeconfig = RUN_DIR / "kubeconfig"
        self.client = KubeClient(Credentials.load(str(kubeconfig)))
        await self.client.create(f"{WORKLOADS}/gputopologies", TOPOLOGY)
        for ns in NAMESPACES:
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            await self.client.create("/api/v1/namespaces", body)
        await asyncio.to_thread(create_nodes, self.profile.shape, str(kubeconfig))
        want = {n["metadata"]["name"] for n in node_manifests(self.profile.shape)}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            nodes, _ = await self.client.list_all("/api/v1/nodes")
            ready = {
                name_of(n)
                for n in nodes
                if any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (n.get("status") or {}).get("conditions") or []
                )
            }
            accounts = [
                await self.client.list_all(f"/api/v1/namespaces/{ns}/serviceaccounts")
                for ns in NAMESPACES
            ]
            if want <= ready and all(items for items, _ in accounts):
                break
            await asyncio.sleep(1)
        else:
            raise RuntimeError("simulated nodes or service accounts not ready after 120s")
        self.proxy = Proxy(kubeconfig, self.seed, self.profile.faults)
        for _ in range(self.replicas):
            await self.start_operator()

    async def start_operator(self) -> Operator:
        op = Operator(len(self.operators) + 1, self.proxy)
        self.operators.append(op)
        await op.start()
        self.event("operator-start", route=op.route)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and op.alive():
            if await op.healthy():
                return op
            await asyncio.sleep(0.5)
        if not op.alive():
            op.killed, op.ended_at = True, time.time()  # noted once, here
            self.note_exit(op)
        else:
            log(f"{op.route} not healthy after 120s")
        return op

    def note_exit(self, op: Operator) -> None:
        code = op.proc.returncode if op.proc else None
        tail = op.log_path.read_text(errors="replace").splitlines()[-60:]
        lost = any("leadership lost" in line for line in tail)
        why = "it lost the Lease" if lost else f"crash: {tail[-1][:300] if tail else '?'}"
        self.exits.append({"route": op.route, "code": code, "why": why})
        self.event("operator-exit", route=op.route, code=code, why=why, tail=tail[-12:])
        log(f"{op.route} exited on its own with {code}: {why}")

    def live_operators(self) -> list[Operator]:
        return [op for op in self.operators if op.alive()]

    async def leader(self) -> Operator | None:
        live = self.live_operators()
        if len(live) <= 1:
            return live[0] if live else None
        for _ in range(60):
            answers = [await op.ready() for op in live]
            if None in answers:
                raise RuntimeError("several replicas but the operator serves no /leaderz")
            leaders = [op for op, ready in zip(live, answers, strict=True) if ready]
            if len(leaders) == 1:
                return leaders[0]
            await asyncio.sleep(0.5)
        log("no single leader among the replicas after 30s")
        return None

    # -- churn ---------------------------------------------------------------------------

    def name(self, prefix: str) -> str:
        self.names[prefix] += 1
        return f"{prefix}-{self.names[prefix]}"

    def our_workloads(self) -> list[dict[str, Any]]:
        return [
            w
            for w in (self.sample.workloads if self.sample else [])
            if not w["metadata"].get("deletionTimestamp")
        ]

    async def create_workload(
        self, kind: str | None = None, prefix: str | None = None, rng: random.Random | None = None
    ) -> None:
        rng = rng or self.rng
        kind = kind or rng.choice(["gang", "gang", "single", "elastic"])
        ns = rng.choice(NAMESPACES)
        body = workload_body(self.name(prefix or kind), kind, rng)
        if prefix == "kill":  # enough members for the proxy to stop it part-way
            body["spec"]["replicas"] = 4
        await self.client.create(f"{WORKLOADS}/namespaces/{ns}/gpuworkloads", body)
        self.event(
            "create-workload", workload=f"{ns}/{body['metadata']['name']}", spec=body["spec"]
        )

    async def scale_workload(self) -> None:
        wl = self.rng.choice(self.our_workloads())
        meta, spec = wl["metadata"], wl["spec"]
        gang = (meta.get("labels") or {}).get("egpu.io/soak") == "gang"
        low = int(spec.get("minReplicas") or (2 if gang else 1))
        high = int(spec.get("maxReplicas") or (4 if gang else 3))
        replicas = self.rng.randint(low, high)
        path = f"{WORKLOADS}/namespaces/{meta['namespace']}/gpuworkloads/{meta['name']}/scale"
        self.tracker.scaled(str(meta["uid"]), replicas, time.time())
        await self.client.patch(path, {"spec": {"replicas": replicas}})
        self.event("scale-workload", workload=f"{meta['namespace']}/{meta['name']}", to=replicas)

    async def delete_workload(self) -> None:
        wl = self.rng.choice(self.our_workloads())
        meta = wl["metadata"]
        await self.client.delete(
            f"{WORKLOADS}/namespaces/{meta['namespace']}/gpuworkloads/{meta['name']}"
        )
        self.event("delete-workload", workload=f"{meta['namespace']}/{meta['name']}")

    def nodes(self) -> list[dict[str, Any]]:
        return list(self.sample.nodes if self.sample else [])

    async def add_node(self) -> None:
        sibling = self.rng.choice(self.nodes())
        body = node_body(sibling, self.name(f"soak-x-{sibling['metadata']['labels'][LEAF]}"))
        await self.client.create("/api/v1/nodes", body)
        self.event("add-node", node=body["metadata"]["name"], leaf=body["metadata"]["labels"][LEAF])

    async def remove_node(self) -> None:
        node = self.rng.choice(self.nodes())
        name = name_of(node)
        self.removed[name] = node_body(node)
        self.tracker.node_deleted(name, time.time())
        await self.client.delete(f"/api/v1/nodes/{name}")
        pods = [key_of(p) for p in (self.sample.pods if self.sample else []) if node_of(p) == name]
        self.event("remove-node", node=name, pods=pods)

    async def readd_node(self) -> None:
        name = self.rng.choice(sorted(self.removed))
        await self.client.create("/api/v1/nodes", self.removed.pop(name))
        self.event("readd-node", node=name)

    async def cordon(self) -> None:
        node = self.rng.choice(self.nodes())
        to = not (node.get("spec") or {}).get("unschedulable", False)
        await self.client.patch(f"/api/v1/nodes/{name_of(node)}", {"spec": {"unschedulable": to}})
        self.event("cordon" if to else "uncordon", node=name_of(node))

    async def fault(self) -> None:
        node = self.rng.choice(self.nodes())
        faulted = FAULT_LABEL in (node["metadata"].get("labels") or {})
        value = None if faulted else "GPUFallenOffBus"
        patch = {"metadata": {"labels": {FAULT_LABEL: value}}}
        await self.client.patch(f"/api/v1/nodes/{name_of(node)}", patch)
        self.event("heal" if faulted else "fault", node=name_of(node))

    async def create_pod(
        self, role: str, gpus: int, rng: random.Random | None = None, **spec: Any
    ) -> str:
        ns = (rng or self.rng).choice(NAMESPACES)
        body = pod_body(self.name(role), gpus, role, **spec)
        key = f"{ns}/{body['metadata']['name']}"
        self.tracker.created_unowned(key)
        await self.client.create(f"/api/v1/namespaces/{ns}/pods", body)
        (self.bare if role == "bare" else self.foreign).add(key)
        self.event("create-pod", pod=key, role=role, gpus=gpus, spec=spec)
        return key

    async def foreign_scheduled(self) -> None:
        selector = {"nvidia.com/gpu.product": MODEL}
        await self.create_pod("foreign", self.rng.randint(1, 4), nodeSelector=selector)

    async def foreign_bound(self) -> None:
        gpus = self.rng.randint(1, 4)
        sample = self.sample
        rooms = [r for r in free_room(sample) if r.gpus >= gpus] if sample else []
        if not rooms:
            return
        await self.create_pod("direct", gpus, nodeName=self.rng.choice(rooms).name)

    async def bare_pod(self) -> None:
        await self.create_pod("bare", self.rng.randint(1, 2), schedulerName="egpu-scheduler")

    async def delete_pod(self, pool: set[str]) -> None:
        key = self.rng.choice(sorted(pool))
        pool.discard(key)
        self.tracker.deleting(key)
        ns, name = key.split("/")
        with contextlib.suppress(ApiError):
            await self.client.request(
                "DELETE", f"/api/v1/namespaces/{ns}/pods/{name}", body={"gracePeriodSeconds": 0}
            )
        self.event("delete-pod", pod=key)

    def choices(self) -> list[tuple[str, float]]:
        p = self.profile
        workloads = len(self.our_workloads())
        nodes = self.nodes()
        off = sum(
            1
            for n in nodes
            if (n.get("spec") or {}).get("unschedulable")
            or FAULT_LABEL in (n["metadata"].get("labels") or {})
        )
        shape_nodes = p.shape.node_count
        return [
            ("create-workload", 4.0 if workloads < p.max_workloads else 0.0),
            ("scale-workload", 3.0 if workloads else 0.0),
            ("delete-workload", 2.0 if workloads > p.max_workloads // 2 else 0.3),
            ("add-node", 0.4 if len(nodes) < shape_nodes * 1.25 else 0.0),
            ("remove-node", 0.6 if len(self.removed) < shape_nodes // 8 else 0.0),
            ("readd-node", 0.8 if self.removed else 0.0),
            ("cordon", 0.8 if off < shape_nodes // 5 else 0.2),
            ("fault", 0.8 if off < shape_nodes // 5 else 0.2),
            ("foreign-scheduled", 1.0 if len(self.foreign) < p.max_foreign else 0.0),
            ("foreign-bound", 0.7 if len(self.foreign) < p.max_foreign else 0.0),
            ("delete-foreign", 1.2 if self.foreign else 0.0),
            ("bare-pod", 1.5 if len(self.bare) < p.max_bare else 0.0),
            ("delete-bare", 1.2 if self.bare else 0.0),
        ]

    async def operation(self, op: str) -> None:
        actions = {
            "create-workload": self.create_workload,
            "scale-workload": self.scale_workload,
            "delete-workload": self.delete_workload,
            "add-node": self.add_node,
            "remove-node": self.remove_node,
            "readd-node": self.readd_node,
            "cordon": self.cordon,
            "fault": self.fault,
            "foreign-scheduled": self.foreign_scheduled,
            "foreign-bound": self.foreign_bound,
            "delete-foreign": lambda: self.delete_pod(self.foreign),
            "bare-pod": self.bare_pod,
            "delete-bare": lambda: self.delete_pod(self.bare),
        }
        try:
            await actions[op]()
            self.ops[op] += 1
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            self.op_errors[op] += 1
            self.event("operation-failed", op=op, error=str(exc))

    async def churn(self, until: float) -> None:
        while time.time() < until:
            await asyncio.sleep(self.rng.expovariate(self.profile.ops_per_s))
            if self.sample is None:
                continue
            options = [(op, w) for op, w in self.choices() if w > 0]
            op = self.rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]
            await self.operation(op)

    # -- kills -------------------------------------------------------------------------

    async def killer(self, until: float) -> None:
        low, high = self.profile.kill_every_s
        while True:
            await asyncio.sleep(self.kill_rng.uniform(low, high))
            if time.time() >= until:
                return
            await self.kill_leader()

    def next_mode(self) -> str:
        """How the leader goes next: every mode once per round, in a seeded order."""
        if not self.modes:
            self.modes = ["random", "plan-write", "gang-bind"]
            if self.replicas > 1:
                self.modes += ["partition", "lease-stall"]
            self.kill_rng.shuffle(self.modes)
        return self.modes.pop()

    async def kill_leader(self) -> None:
        async with self.lock:
            leader = await self.leader()
            if leader is None:
                return
            mode = self.next_mode()
            if mode == "partition":
                await self.partition(leader)
                return
            if mode == "lease-stall":
                await self.stall_lease(leader)
                return
            detail: dict[str, Any] = {}
            reached = True
            if mode != "random":
                after = self.kill_rng.randint(1, 3)
                await self.proxy.call(
                    "POST", "/arm", {"route": leader.route, "kind": mode, "after": after}
                )
                await self.create_workload("gang", prefix="kill", rng=self.kill_rng)
                fired = (await self.proxy.call("GET", "/trigger?timeout=30", timeout=40))["fired"]
                reached = fired is not None
                detail = fired or {"after": after}
                if not reached:
                    await self.proxy.call("DELETE", "/arm")
            at = time.time()
            leader.kill()
            await self.proxy.call("DELETE", f"/routes/{leader.route}")
            kill = Kill(at=at, mode=mode, reached=reached, route=leader.route, detail=detail)
            self.kills.append(kill)
            self.event("kill", route=leader.route, mode=mode, reached=reached, detail=detail)
            log(f"killed {leader.route} ({mode}{'' if reached else ', not reached'})")
            await self.start_operator()
            with contextlib.suppress(ApiError, aiohttp.ClientError, TimeoutError):
                await self.create_pod(
                    "bare", 1, self.kill_rng, schedulerName="egpu-scheduler"
                )  # a probe

    async def partition(self, leader: Operator) -> None:
        """Cut the leader off the API server (its requests held, then dropped) for longer
        than the Lease lasts: a standby must take over, and the old leader stop acting."""
        at = time.time()
        await self.proxy.call("POST", f"/routes/{leader.route}/freeze")
        self.kills.append(Kill(at=at, mode="partition", reached=True, route=leader.route))
        self.event("partition", route=leader.route, seconds=PARTITION_S)
        log(f"partitioned {leader.route} for {PARTITION_S:.0f}s")
        with contextlib.suppress(ApiError, aiohttp.ClientError, TimeoutError):
            await self.create_pod(
                "bare", 1, self.kill_rng, schedulerName="egpu-scheduler"
            )  # a probe
        await asyncio.sleep(PARTITION_S)
        with contextlib.suppress(RuntimeError):  # gone meanwhile: it exited
            await self.proxy.call("POST", f"/routes/{leader.route}/thaw")
        self.event("thaw", route=leader.route)

    async def stall_lease(self, leader: Operator) -> None:
        """Hold only the leader's Lease requests, longer than the Lease lasts, while the
        rest of its API calls go through: once a standby has taken the Lease, the old
        leader must have stopped binding (two-leaders), though its renewal still hangs."""
        at = time.time()
        body = {"path_prefix": LEASE_PATH}
        await self.proxy.call("POST", f"/routes/{leader.route}/freeze", body)
        self.kills.append(Kill(at=at, mode="lease-stall", reached=True, route=leader.route))
        self.event("lease-stall", route=leader.route, seconds=STALL_S)
        log(f"stalled the Lease requests of {leader.route} for {STALL_S:.0f}s")
        await asyncio.sleep(STALL_S / 2)
        for _ in range(4):  # work for whoever leads now
            with contextlib.suppress(ApiError, aiohttp.ClientError, TimeoutError):
                await self.create_pod("bare", 1, self.kill_rng, schedulerName="egpu-scheduler")
            await asyncio.sleep(STALL_S / 10)
        await asyncio.sleep(STALL_S / 2 - 4 * STALL_S / 10)
        with contextlib.suppress(RuntimeError):
            await self.proxy.call("POST", f"/routes/{leader.route}/thaw")
        self.event("thaw", route=leader.route)

    async def watch_exits(self) -> None:
        """An operator that dies on its own (not killed by the soak) is noted and restarted."""
        while True:
            await asyncio.sleep(2)
            async with self.lock:
                for op in list(self.operators):
                    if op.proc is not None and not op.alive() and not op.killed:
                        op.killed = True  # noted once
                        op.ended_at = time.time()
                        self.note_exit(op)
                        await self.proxy.call("DELETE", f"/routes/{op.route}")
                        await self.start_operator()

    # -- sampling ------------------------------------------------------------------------

    async def take_sample(self) -> Sample:
        await self.read_lease()
        pods, _ = await self.client.list_all("/api/v1/pods")
        nodes, _ = await self.client.list_all("/api/v1/nodes")
        workloads, _ = await self.client.list_all(f"{WORKLOADS}/gpuworkloads")
        return Sample(pods=pods, nodes=nodes, workloads=workloads, now=time.time())

    async def read_lease(self) -> None:
        """Who holds the operator's Lease, by the API server: (time, route or None)."""
        try:
            lease = await self.client.get(LEASE_OBJECT)
        except ApiError as exc:
            if exc.not_found:
                return
            raise
        holder = str((lease.get("spec") or {}).get("holderIdentity") or "")
        route = next((op.route for op in self.operators if holder.startswith(op.route + "_")), None)
        self.lease_holders.append((time.time(), route))

    async def report(self, found: list[Violation], sample: Sample | None) -> None:
        """Print and record each violation, with what the pods involved looked like and
        which operator process bound them (the proxy's log of bindings)."""
        when = sample.now if sample else time.time()
        binds: list[list[Any]] | None = None
        for v in found:
            self.violations.append((when, v))
            log(f"VIOLATION {v.kind}: {v.message}")
            context: dict[str, Any] = {}
            if v.pods and sample is not None:
                if binds is None:
                    binds = await self.proxy.call("GET", "/binds?since=0")
                pods = {key_of(p): p for p in sample.pods}
                for key in v.pods:
                    context[key] = self.pod_facts(pods.get(key), key, binds)
            self.event("violation", kind=v.kind, key=v.key, message=v.message, pods=context)

    def pod_facts(self, pod: dict[str, Any] | None, key: str, binds: list[list[Any]]) -> Any:
        bound_by = [
            [round(t - self.started, 2), route] for t, route, pod_key in binds if pod_key == key
        ]
        if pod is None:
            return {"gone": True, "bound_by": bound_by}
        meta = pod["metadata"]
        owners = [r.get("name") for r in meta.get("ownerReferences") or []]
        return {
            "uid": meta.get("uid"),
            "node": node_of(pod),
            "phase": (pod.get("status") or {}).get("phase"),
            "deleting": bool(meta.get("deletionTimestamp")),
            "created": round(created(pod) - self.started, 1),
            "bound": round(bind_time(pod) - self.started, 1) if node_of(pod) else None,
            "owner": owners,
            "annotations": {
                k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith("egpu.io/")
            },
            "bound_by": bound_by,
            # The whole object, to replay a ledger rebuild offline.
            "object": {
                "metadata": {k: v for k, v in meta.items() if k != "managedFields"},
                "spec": pod.get("spec"),
                "status": pod.get("status"),
            },
        }

    async def check_audit(self) -> None:
        leader = (
            await self.leader() if self.replicas > 1 else next(iter(self.live_operators()), None)
        )
        if leader is None:
            return
        audits = await leader.metric("egpu_ledger_audits_total")
        value = await leader.metric("egpu_ledger_audit_mismatches")
        if value is None or not audits:
            return
        self.audit_seen = True
        self.audit_values.append(value)
        if value > 0:
            v = Violation(
                "ledger-audit",
                f"ledger-audit/{leader.route}/{len(self.audit_values)}",
                f"{leader.route} reports egpu_ledger_audit_mismatches={value:g}: its "
                "incremental ledger differs from a rebuild",
            )
            await self.report(self.tracker.new([v], time.time()), None)

    async def sampler(self) -> None:
        count = 0
        while True:
            try:
                sample = await self.take_sample()
            except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
                log(f"sample failed: {exc}")
                await asyncio.sleep(1)
                continue
            self.sample = sample
            await self.report(self.tracker.observe(sample), sample)
            count += 1
            if count % 3 == 0:
                await self.check_audit()
            await asyncio.sleep(self.profile.sample_s)

    # -- the run -------------------------------------------------------------------------

    async def quiet(self) -> list[Violation]:
        """Faults off, nodes healed and uncordoned; wait until the eventual rules hold."""
        await self.proxy.call("PUT", "/faults", {})
        for node in self.nodes():
            labels = node["metadata"].get("labels") or {}
            if FAULT_LABEL in labels or (node.get("spec") or {}).get("unschedulable"):
                patch = {
                    "metadata": {"labels": {FAULT_LABEL: None}},
                    "spec": {"unschedulable": False},
                }
                with contextlib.suppress(ApiError):
                    await self.client.patch(f"/api/v1/nodes/{name_of(node)}", patch)
        self.event("quiet")
        deadline = time.time() + self.profile.quiet_s
        settled = 0
        pending: list[Violation] = []
        while time.time() < deadline:
            await asyncio.sleep(self.profile.sample_s)
            if self.sample is None:
                continue
            pending = self.tracker.eventual(self.sample)
            settled = settled + 1 if not pending else 0
            if settled >= 2:
                log("settled")
                return []
        return pending

    async def run(self) -> int:
        await self.setup()
        churn_end = time.time() + self.profile.churn_s
        log(f"churn for {self.profile.churn_s:.0f}s; seed {self.seed}")
        sampler = asyncio.create_task(self.sampler())
        exits = asyncio.create_task(self.watch_exits())
        try:
            await asyncio.gather(self.churn(churn_end), self.killer(churn_end))
            log("quiet: faults off")
            unsettled = await self.quiet()
            if self.sample is not None:
                await self.report(self.tracker.new(unsettled, self.sample.now), self.sample)
            await self.check_audit()
        finally:
            sampler.cancel()
            exits.cancel()
            await asyncio.gather(sampler, exits, return_exceptions=True)
        return await self.summary()

    async def summary(self) -> int:
        stats = await self.proxy.call("GET", "/stats")
        binds = await self.proxy.call("GET", "/binds?since=0")
        takeover = {
            "kill": self.takeovers(binds, ("random", "plan-write", "gang-bind")),
            "partition": self.takeovers(binds, ("partition",)),
            "lease-stall": self.takeovers(binds, ("lease-stall",)),
        }
        await self.report(self.two_leaders(binds), self.sample)
        for when, v in self.violations:
            print(f"VIOLATION {v.kind} (t+{when - self.started:.0f}s): {v.message}")
        for note in self.tracker.notes[:10]:
            print(f"note: {note}")
        kills = Counter(
            k.mode if k.reached else f"{k.mode} (not reached)"
            for k in self.kills
            if k.mode not in ("partition", "lease-stall")
        )
        result = {
            "seed": self.seed,
            "replicas": self.replicas,
            "nodes": self.profile.shape.node_count,
            "operations": {"total": sum(self.ops.values()), **dict(sorted(self.ops.items()))},
            "operation_errors": dict(self.op_errors),
            "faults_injected": {
                "total": sum(v for k, v in stats["injected"].items() if ":" not in k),
                **dict(sorted(stats["injected"].items())),
            },
            "requests": stats["requests"],
            "leader_kills": {"total": sum(kills.values()), **dict(sorted(kills.items()))},
            "leader_partitions": sum(1 for k in self.kills if k.mode == "partition"),
            "leader_lease_stalls": sum(1 for k in self.kills if k.mode == "lease-stall"),
            "operator_exits": self.exits,
            "violations": len(self.violations),
            "violations_by_kind": dict(Counter(v.kind for _, v in self.violations)),
            "ledger_audit": "checked" if self.audit_seen else "not checked (metric absent)",
            "time_to_new_leader_s": takeover["kill"],
            "time_to_new_leader_after_partition_s": takeover["partition"],
            "time_to_new_leader_after_lease_stall_s": takeover["lease-stall"],
            "scheduler_races_noted": len(self.tracker.notes),
            "duration_s": round(time.time() - self.started, 1),
        }
        print(json.dumps(result), flush=True)
        return 1 if self.violations else 0

    def takeovers(self, binds: list[list[Any]], modes: tuple[str, ...]) -> dict[str, Any]:
        """From each loss of a leader (of these modes) to the next bind by another process;
        a loss followed by the next one before any bind is `interrupted`, not a sample."""
        losses = sorted(self.kills, key=lambda k: k.at)
        times: list[float] = []
        interrupted = missing = 0
        for i, kill in enumerate(losses):
            if kill.mode not in modes:
                continue
            after = [t for t, route, _ in binds if t > kill.at and route != kill.route]
            following = losses[i + 1].at if i + 1 < len(losses) else float("inf")
            if after and min(after) < following:
                times.append(min(after) - kill.at)
            elif following < float("inf") and (not after or min(after) >= following):
                interrupted += 1
            else:
                missing += 1
        return {
            "p50": percentile(times, 50),
            "p99": percentile(times, 99),
            "max": round(max(times), 2) if times else None,
            "samples": len(times),
            "interrupted": interrupted,
            "without_a_later_bind": missing,
        }

    def two_leaders(self, binds: list[list[Any]]) -> list[Violation]:
        lives = {op.route: (op.started_at, op.ended_at or float("inf")) for op in self.operators}
        cut = [(k.route, k.at, k.at + PARTITION_S) for k in self.kills if k.mode == "partition"]
        found = check_leaders(
            [(t, route, pod) for t, route, pod in binds],
            lives,
            cut,
            self.lease_holders,
            TWO_LEADERS_WINDOW_S,
            self.started,
        )
        return self.tracker.new(found, time.time())

    async def close(self) -> None:
        for op in self.operators:
            op.stop()
        with contextlib.suppress(Exception):
            await self.proxy.close()
        with contextlib.suppress(Exception):
            await self.client.close()
        self.events.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=os.environ.get("EGPU_SOAK_PROFILE", "short"),
        help="short (~3 min, 32 nodes; make test) or long (~25 min, 64 nodes); "
        "env EGPU_SOAK_PROFILE",
    )
    p.add_argument("--seed", type=int, default=None, help="default: $EGPU_SOAK_SEED or random")
    p.add_argument(
        "--replicas",
        type=int,
        default=int(os.environ.get("EGPU_SOAK_REPLICAS", "2")),
        help="operator replicas (the leader, found by /leaderz, is killed or cut off; "
        "1: kill, then restart); env EGPU_SOAK_REPLICAS",
    )
    p.add_argument("--churn-seconds", type=float, default=None, help="override the profile's")
    p.add_argument("--keep-cluster", action="store_true", help="leave the control plane up")
    args = p.parse_args(argv)
    seed = args.seed
    if seed is None:
        seed = int(os.environ.get("EGPU_SOAK_SEED") or random.SystemRandom().randrange(1 << 30))
    profile = PROFILES[args.profile]
    if args.churn_seconds is not None:
        profile = dataclasses.replace(profile, churn_s=args.churn_seconds)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    for old in [*RUN_DIR.glob("operator-*"), RUN_DIR / "faultproxy.log"]:
        old.unlink(missing_ok=True)  # the logs of an earlier run
    env = {**os.environ, "EGPU_RUN_DIR": str(RUN_DIR)}
    localcluster = [sys.executable, str(REPO / "hack" / "localcluster.py")]
    log(f"seed {seed}, profile {args.profile}, {args.replicas} operator replica(s); {RUN_DIR}")
    try:
        subprocess.run(
            [*localcluster, "up", "--fresh"], env=env, check=True, stdout=subprocess.DEVNULL
        )
        install_crds()
        return asyncio.run(run_soak(Soak(profile, seed, args.replicas)))
    finally:
        if not args.keep_cluster:
            subprocess.run([*localcluster, "down"], env=env, check=False)


def install_crds() -> None:
    env = {**os.environ, "KUBECONFIG": str(RUN_DIR / "kubeconfig")}
    kubectl = str(BIN / "kubectl")
    crds = ["apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds")]
    subprocess.run([kubectl, *crds], env=env, check=True, capture_output=True)
    wait = ["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]
    subprocess.run([kubectl, *wait], env=env, check=True, capture_output=True)


async def run_soak(soak: Soak) -> int:
    try:
        return await soak.run()
    finally:
        await soak.close()


if __name__ == "__main__":
    sys.exit(main())
