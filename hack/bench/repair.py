#!/usr/bin/env python3
"""Self-healing, end to end, on the local control plane: a compressed fault trace under
running gangs; detection and recovery times; effective training time.

    .venv/bin/python hack/bench/repair.py [--blocks 4 --leaves 10 --nodes 25]
        [--gangs 200] [--faults 40] [--trace 180] [--agents 10]

A fresh control plane (its own run directory) gets blocks x leaves x nodes simulated
nodes of 8 GPUs, the operator, and `--gangs` GPUWorkloads of 4 pods x 8 GPUs (each gang
required under one leaf; half ReplaceMember, half RestartGang). `--agents` simulated
agent processes (`egpu agent --simulate`, 2 s polls) each serve an equal share of the
nodes, every node on its own clock as the DaemonSet's agent on it would be (a real
cluster runs one agent per node; fewer processes, because every one of them shares
this machine's cores with the control plane). Once every gang runs,
`--faults` faults are played within `--trace` seconds, each on a GPU (or the node) of a
different running gang, of these kinds: XID 79 (fallen off the bus), a GPU lost, a new
uncorrectable ECC error, a row-remap failure, a GSP error (XID 119), NVLink recovery
errors, an NVLink down, overheating, NVML down on the node, stalled telemetry, a node
deleted, a node lost (made NotReady: `egpu.io/sim-fault`, kept so to the end; the
operator runs with EGPU_NODE_LOST_AFTER `--node-lost-after`, 10 s) and a hung job (its
workload gets `progressAnnotation` and `hangTimeout` `--hang-timeout`, 10 s, at the
fault's time and its pods never report progress: the job stopped then; taken off again
once the repair is seen, so the restarted job is not hung again). Shares: Llama 3's 30.1
% "faulty GPU" go to XID 79 / lost GPU, its 17.2 % "HBM3" to ECC / row remap, the rest
is spread evenly over the other kinds.

Per fault, from its injection (wall clock): `detect` when the bench's watch sees the
node's gpu-health report name the GPU (split into: until the agent's reading that found
it, its `checkedAt`; and from that reading until the bench saw it written;
`detect_in_a_reading` leaves out the kinds found only after a set time, 10 s each:
stalled telemetry, a lost node, a hang; `detect_written` ends when the API server took
the report, from the node's managedFields, to the second: what the bench's own watch
adds under load is left out) (for a
deleted node: the deletion; for a lost node
or a hang, which no agent reports: the repair controller deleting a member of the gang,
so it includes the grace or the timeout), `fence` when its unhealthy-gpus annotation
does (lost nodes and hangs: at detection, nothing is fenced), `recover` when the gang
has all its members Running again, at least one of them new, none on a fenced GPU or the
lost node.

Effective training time (ETT) is modelled on the measured recoveries: the trace stands
for D days of Llama 3's rate (419 interruptions in 54 days on 16,384 GPUs, scaled to the
GPUs the gangs hold); every fault costs its gang the work since its last checkpoint
(uniform within `--checkpoint-every`, default 30 min) plus the measured recovery.
Without the repair controller nothing replaces a failed member (restart policy Never, no
one intervenes in the model): the gang is down from its first fault to the end of the
trace. Also: pods lost (a gang short of members at the end) and duplicated (a rank
twice, a GPU given twice). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "operator"))

from egpu.controllers.common import parse_time  # noqa: E402
from egpu.kube.client import ApiError, Credentials, KubeClient  # noqa: E402
from egpu.sim.nodes import ClusterShape, create_nodes, node_manifests  # noqa: E402

RUN_DIR = Path(os.environ.get("EGPU_RUN_DIR", REPO / ".run" / "bench-repair"))
ENV = {**os.environ, "EGPU_RUN_DIR": str(RUN_DIR)}
LOCALCLUSTER = [sys.executable, str(REPO / "hack" / "localcluster.py")]
KUBECTL = str(Path(sys.executable).parent / "kubectl")
NAMESPACE = "bench-repair"
POD_GPUS, GANG_PODS = 8, 4
LLAMA3_PER_GPU_DAY = 419 / (54 * 16384)
KINDS = [  # (kind, share)
    ("xid=79", 0.301 / 2),
    ("lost", 0.301 / 2),
    ("dbe", 0.172 / 2),
    ("remap-failure", 0.172 / 2),
]
OTHER = ["xid=119", "nvlink-recovery=5", "nvlink-down", "temp=97", "nvml-down", "stall", "node"]
OTHER += ["notready", "hang"]
NOT_REPORTED = ("node", "notready", "hang")  # no agent injection: the bench acts itself
# found only once a set time has passed: stalled telemetry (the agent's --stall-after),
# a lost node (EGPU_NODE_LOST_AFTER), a hang (hangTimeout); all 10 s here
AFTER_A_TIMEOUT = ("stall", "notready", "hang")
FAULT_LABEL = "egpu.io/sim-fault"
PROGRESS = "bench.egpu.io/step"
KINDS += [(k, (1 - 0.301 - 0.172) / len(OTHER)) for k in OTHER]


def workload(name: str, policy: str) -> dict[str, Any]:
    return {
        "apiVersion": "egpu.io/v1alpha1",
        "kind": "GPUWorkload",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": GANG_PODS,
            "gpusPerPod": POD_GPUS,
            "gang": {"policy": "AllOrNothing"},
            "topology": {"topologyName": "default", "required": "egpu.io/leaf"},
            "repair": {"policy": policy, "maxRestarts": 5, "gracePeriod": "1s"},
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "trainer",
                            "image": "registry.local/egpu/trainer:latest",
                            "resources": {"requests": {"cpu": "4", "memory": "16Gi"}},
                        }
                    ]
                }
            },
        },
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def kinds_of(f: Fault) -> str:
    return f.kind.split("=")[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def quantiles(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    if len(values) == 1:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return round(cuts[49], 2), round(cuts[98], 2)


def live(pod: dict[str, Any]) -> bool:
    return not pod["metadata"].get("deletionTimestamp")


def ready(pod: dict[str, Any]) -> bool:
    """Bound and Running. (Not the Ready condition: under load the simulated nodes can
    miss a lease renewal, and the controller manager's NotReady mark on their pods is
    never lifted by KWOK.)"""
    return (
        live(pod)
        and bool(pod["spec"].get("nodeName"))
        and (pod.get("status") or {}).get("phase") == "Running"
    )


def gpus_of(pod: dict[str, Any]) -> set[tuple[str, int]]:
    text = (pod["metadata"].get("annotations") or {}).get("egpu.io/gpu-ids") or ""
    node = pod["spec"].get("nodeName") or ""
    return {(node, int(i)) for i in text.split(",") if i.strip().isdigit()}


class Fault:
    def __init__(self, gang: str, node: str, gpu: int, kind: str, at: float, uids: set[str]):
        self.gang, self.node, self.gpu, self.kind, self.at = gang, node, gpu, kind, at
        self.uids = uids  # the gang's member UIDs before
        self.detect: float | None = None
        self.reading: float | None = None  # checkedAt of the agent's report naming it
        self.written: float | None = None  # when the API server took that report
        self.fence: float | None = None
        self.recover: float | None = None


def written_at(node: dict[str, Any], annotation: str, seen: float) -> float | None:
    """When the API server took the last write of `annotation` on the node: the time of
    the managedFields entry owning it, whole seconds rounded down, so one second is
    added (an upper bound, never later than the bench saw it)."""
    times = [
        e.get("time")
        for e in node["metadata"].get("managedFields") or []
        if f'"f:{annotation}"' in json.dumps(e.get("fieldsV1") or {})
    ]
    stamps = [parse_time(t) for t in times if isinstance(t, str)]
    known = [t for t in stamps if t is not None]
    return min(max(known) + 1, seen) if known else None


class Watch:
    """Nodes and the bench's pods, watched from their own thread; checks each fault.
    An event checks only the faults of its node or its pod's gang (a full check on
    every event of 1,000 nodes made the bench's own watch lag under load)."""

    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self.nodes: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self.gone: set[str] = set()
        self.fenced: dict[str, set[int]] = {}  # node -> its egpu.io/unhealthy-gpus
        self.gangs: dict[str, dict[str, dict[str, Any]]] = {}  # gang -> pod name -> pod

    def node_event(self, name: str, node: dict[str, Any] | None, at: float) -> None:
        if node is None:
            self.fenced.pop(name, None)
        else:
            text = (node["metadata"].get("annotations") or {}).get("egpu.io/unhealthy-gpus")
            self.fenced[name] = {int(i) for i in (text or "").split(",") if i.strip().isdigit()}
        for f in self.faults:
            if f.node == name:
                self.check_fault(f, at)

    def pod_event(self, pod: dict[str, Any], deleted: bool, at: float) -> None:
        gang = str((pod["metadata"].get("labels") or {}).get("egpu.io/workload"))
        pods = self.gangs.setdefault(gang, {})
        if deleted or not live(pod):
            pods.pop(pod["metadata"]["name"], None)
        else:
            pods[pod["metadata"]["name"]] = pod
        for f in self.faults:
            if f.gang == gang:
                self.check_fault(f, at)

    def check(self, at: float) -> None:
        """Everything afresh (after a list)."""
        self.fenced = {}
        for name, node in self.nodes.items():
            text = (node["metadata"].get("annotations") or {}).get("egpu.io/unhealthy-gpus")
            self.fenced[name] = {int(i) for i in (text or "").split(",") if i.strip().isdigit()}
        self.gangs = {}
        for p in self.pods.values():
            if live(p):
                label = str((p["metadata"].get("labels") or {}).get("egpu.io/workload"))
                self.gangs.setdefault(label, {})[p["metadata"]["name"]] = p
        for f in self.faults:
            self.check_fault(f, at)

    def check_fault(self, f: Fault, at: float) -> None:
        if at < f.at:
            return
        node = self.nodes.get(f.node)
        gang = list(self.gangs.get(f.gang, {}).values())
        if f.detect is None:
            if f.kind == "node":
                if f.node in self.gone:
                    f.detect = f.fence = at
            elif f.kind in ("notready", "hang"):
                if f.uids - {p["metadata"]["uid"] for p in gang}:  # a member taken away
                    f.detect = f.fence = at
            elif node is not None:
                text = (node["metadata"].get("annotations") or {}).get("egpu.io/gpu-health")
                report = json.loads(text) if text else {}
                if str(f.gpu) in report.get("unhealthy", {}):
                    f.detect = at
                    checked = report.get("checkedAt")
                    f.reading = checked if isinstance(checked, int | float) else None
                    f.written = written_at(node, "egpu.io/gpu-health", at)
        if f.fence is None and f.gpu in self.fenced.get(f.node, set()):
            f.fence = at
        if f.fence is not None and f.recover is None:
            lost = {g.node for g in self.faults if g.kind == "notready" and g.at <= at}
            if (
                len(gang) == GANG_PODS
                and all(ready(p) for p in gang)
                and any(p["metadata"]["uid"] not in f.uids for p in gang)
                and not any(
                    {i for _, i in gpus_of(p)} & self.fenced.get(p["spec"].get("nodeName"), set())
                    for p in gang
                )
                and not any(p["spec"].get("nodeName") in self.gone | lost for p in gang)
            ):
                f.recover = at

    def start(self) -> None:
        self.stopped = False

        def watch() -> None:
            try:
                asyncio.run(self._run())
            except Exception:
                if not self.stopped:  # a watch cut by the cluster going down is expected
                    raise

        threading.Thread(target=watch, daemon=True).start()

    async def _run(self) -> None:
        async with KubeClient(Credentials.load(self.kubeconfig)) as client:
            await asyncio.gather(
                self._watch(client, "/api/v1/nodes", self.nodes),
                self._watch(client, f"/api/v1/namespaces/{NAMESPACE}/pods", self.pods),
            )

    async def _watch(self, client: KubeClient, path: str, store: dict[str, Any]) -> None:
        while True:
            items, rv = await client.list_all(path)
            with self.lock:
                store.clear()
                store.update({o["metadata"]["name"]: o for o in items})
                self.check(time.time())
            try:
                async for event in client.watch(path, rv):
                    obj = event.get("object") or {}
                    name = obj.get("metadata", {}).get("name")
                    kind = event.get("type")
                    if kind not in ("ADDED", "MODIFIED", "DELETED"):
                        continue
                    with self.lock:
                        at = time.time()
                        if kind == "DELETED":
                            store.pop(name, None)
                            if store is self.nodes:
                                self.gone.add(name)
                        else:
                            store[name] = obj
                        if store is self.nodes:
                            self.node_event(name, None if kind == "DELETED" else obj, at)
                        else:
                            self.pod_event(obj, kind == "DELETED", at)
            except ApiError as exc:
                if exc.status != 410:
                    raise


async def set_hang_timeout(client: KubeClient, gang: str, timeout: str | None) -> None:
    repair = {"progressAnnotation": PROGRESS if timeout else None, "hangTimeout": timeout}
    await client.patch(
        f"/apis/egpu.io/v1alpha1/namespaces/{NAMESPACE}/gpuworkloads/{gang}",
        {"spec": {"repair": repair}},
    )


async def inject(client: KubeClient, f: Fault, hang_timeout: str) -> None:
    """The faults no agent reports: a node deleted, a node lost, a job hung."""
    if f.kind == "node":
        await client.delete(f"/api/v1/nodes/{f.node}")
    elif f.kind == "notready":
        await client.patch(
            f"/api/v1/nodes/{f.node}", {"metadata": {"labels": {FAULT_LABEL: "BenchNodeLost"}}}
        )
    elif f.kind == "hang":
        await set_hang_timeout(client, f.gang, hang_timeout)


def kubectl(kubeconfig: str, *args: str) -> None:
    subprocess.run(
        [KUBECTL, *args], env={**ENV, "KUBECONFIG": kubeconfig}, check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip


def start(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)


def start_operator(kubeconfig: str, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    argv = [str(Path(sys.executable).parent / "egpu-operator"), "--kubeconfig", kubeconfig]
    argv += ["--bind-address", "127.0.0.1", "--health-port", str(free_port())]
    argv += ["--metrics-port", str(free_port()), "--log-level", "INFO", "--no-leader-elect"]
    return start(argv, logs / "operator.log", env)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        return await measure(args, procs)
    finally:  # also when the gangs never start: no operator left behind
        stop(procs)


async def measure(args: argparse.Namespace, procs: list[subprocess.Popen[bytes]]) -> dict[str, Any]:
    kubeconfig = str(RUN_DIR / "kubeconfig")
    shape = ClusterShape(
        blocks=args.blocks, leaves_per_block=args.leaves, nodes_per_leaf=args.nodes,
        gpus_per_node=POD_GPUS, nvlink_group_size=4, name_prefix="br",
    )  # fmt: skip
    create_nodes(shape, kubeconfig=kubeconfig, workers=16)
    names = [n["metadata"]["name"] for n in node_manifests(shape)]
    kubectl(kubeconfig, "apply", "--server-side", "-f", str(REPO / "crds"))
    kubectl(kubeconfig, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    topology = {
        "apiVersion": "egpu.io/v1alpha1",
        "kind": "GPUTopology",
        "metadata": {"name": "default"},
        "spec": {
            "levels": [
                {"name": "block", "nodeLabel": "egpu.io/block"},
                {"name": "leaf", "nodeLabel": "egpu.io/leaf"},
                {"name": "node", "nodeLabel": "kubernetes.io/hostname"},
            ]
        },
    }
    logs = RUN_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    async with KubeClient(Credentials.load(kubeconfig)) as client:
        await client.create("/apis/egpu.io/v1alpha1/gputopologies", topology)
        await client.create(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        )
        for _ in range(100):
            try:
                await client.get(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default")
                break
            except ApiError:
                await asyncio.sleep(0.2)
        operator_env = {
            **ENV, "EGPU_REPAIR_INTERVAL": "1s", "EGPU_REPAIR_BACKOFF": "5s",
            "EGPU_LEADER_ELECT": "false", "EGPU_NODE_LOST_AFTER": args.node_lost_after,
        }  # fmt: skip
        procs.append(start_operator(kubeconfig, operator_env, logs))
        t0 = time.monotonic()
        for g in range(args.gangs):
            policy = "ReplaceMember" if g % 2 == 0 else "RestartGang"
            await client.create(
                f"/apis/egpu.io/v1alpha1/namespaces/{NAMESPACE}/gpuworkloads",
                workload(f"g{g:03d}", policy),
            )
        path = f"/api/v1/namespaces/{NAMESPACE}/pods"
        while True:
            items, _ = await client.list_all(path)
            if sum(1 for p in items if ready(p)) >= args.gangs * GANG_PODS:
                break
            if time.monotonic() - t0 > args.timeout:
                bound = sum(1 for p in items if p["spec"].get("nodeName"))
                raise RuntimeError(
                    f"the gangs did not all start: {len(items)} pods, {bound} bound, "
                    f"{sum(1 for p in items if ready(p))} ready"
                )
            await asyncio.sleep(2)
        print(f"{args.gangs} gangs running after {time.monotonic() - t0:.1f}s", flush=True)

        rng = random.Random(args.seed)
        by_gang: dict[str, list[dict[str, Any]]] = {}
        for p in items:
            by_gang.setdefault(p["metadata"]["labels"]["egpu.io/workload"], []).append(p)
        victims = rng.sample(sorted(by_gang), args.faults)
        chosen = [(k, w) for k, w in KINDS if not args.kinds or k in args.kinds.split(",")]
        kinds = rng.choices([k for k, _ in chosen], [w for _, w in chosen], k=args.faults)
        # the trace starts once the agent has read every node at least once (a counter
        # fault before its first reading has no baseline to grow from)
        epoch = time.time() + args.warmup
        faults: list[Fault] = []
        injects: list[str] = []
        used_nodes: set[str] = set()
        for gang, kind in zip(victims, kinds, strict=True):
            pods = sorted(by_gang[gang], key=lambda p: p["metadata"]["name"])
            pod = rng.choice([p for p in pods if p["spec"]["nodeName"] not in used_nodes] or pods)
            node = pod["spec"]["nodeName"]
            used_nodes.add(node)
            gpu = rng.choice(sorted(g for _, g in gpus_of(pod)))
            at = rng.uniform(0, args.trace)
            uids = {p["metadata"]["uid"] for p in pods}
            faults.append(Fault(gang, node, gpu, kind, epoch + at, uids))
            if kind not in NOT_REPORTED:
                scope = "*" if kind == "nvml-down" else str(gpu)
                injects.append(f"{at:.2f}:{node}:{scope}:{kind}")
        watch = Watch(kubeconfig)
        watch.faults = faults
        watch.start()
        agent = [str(Path(sys.executable).parent / "egpu"), "--kubeconfig", kubeconfig, "agent"]
        agent += ["--simulate", "--interval", "2s", "--heartbeat", "300s", "--stall-after", "10s"]
        agent += ["--quiet-period", "1h", "--metrics-port", "0", "--epoch", str(epoch)]
        shards = max(1, min(args.agents, len(names)))
        for k in range(shards):
            mine = names[k::shards]  # each process a share of the nodes, as a DaemonSet
            argv = agent + [a for n in mine for a in ("--node", n)]
            argv += [a for i in injects if i.split(":")[1] in mine for a in ("--inject", i)]
            procs.append(start(argv, logs / f"agent-{k}.log", ENV))

        def reported() -> int:
            with watch.lock:
                return sum(
                    1
                    for n in watch.nodes.values()
                    if "egpu.io/gpu-health" in (n["metadata"].get("annotations") or {})
                )

        while time.time() < epoch + args.trace:
            if reported() >= len(names):
                break
            await asyncio.sleep(1)
        agent_ready = time.time()
        print(f"agent reported every node {agent_ready - epoch:+.1f}s from the trace start")
        try:
            acted = sorted((f for f in faults if f.kind in NOT_REPORTED), key=lambda f: f.at)
            deadline = epoch + args.trace + args.settle
            cleared: set[str] = set()
            while time.time() < deadline:
                while acted and acted[0].at <= time.time():
                    await inject(client, acted.pop(0), args.hang_timeout)
                for f in faults:  # a hang repaired: the restarted job reports no hang
                    if f.kind == "hang" and f.detect is not None and f.gang not in cleared:
                        cleared.add(f.gang)
                        await set_hang_timeout(client, f.gang, None)
                if not acted and all(f.recover is not None for f in faults):
                    break
                wait = min(1.0, acted[0].at - time.time()) if acted else 1.0
                await asyncio.sleep(max(0.0, wait))
            await asyncio.sleep(2)
            items, _ = await client.list_all(path)
            watch.stopped = True
        finally:
            stop(procs)

    # -- figures ---------------------------------------------------------------------
    detect = [f.detect - f.at for f in faults if f.detect is not None]
    by_agent = [f for f in faults if f.kind not in NOT_REPORTED and f.detect is not None]
    at_once = [f.detect - f.at for f in by_agent if kinds_of(f) not in AFTER_A_TIMEOUT]
    to_reading = [f.reading - f.at for f in by_agent if f.reading is not None]
    reading_to_seen = [f.detect - f.reading for f in by_agent if f.reading is not None]
    reading_to_written = [
        f.written - f.reading for f in by_agent if f.reading is not None and f.written is not None
    ]
    written_to_seen = [f.detect - f.written for f in by_agent if f.written is not None]
    detect_written = [f.written - f.at for f in by_agent if f.written is not None]
    fence_after = [f.fence - f.detect for f in by_agent if f.fence is not None]
    recover = [f.recover - f.at for f in faults if f.recover is not None]
    kinds_all = {kinds_of(f) for f in faults}
    kinds_found = {kinds_of(f) for f in faults if f.detect is not None}
    alive = [p for p in items if live(p)]
    lost = duplicated = 0
    seen_gpu: set[tuple[str, int]] = set()
    for gang in by_gang:
        ranks = [
            p["metadata"]["labels"]["egpu.io/rank"]
            for p in alive
            if p["metadata"]["labels"]["egpu.io/workload"] == gang
        ]
        lost += max(0, GANG_PODS - len(set(ranks)))
        duplicated += len(ranks) - len(set(ranks))
    for p in alive:
        for g in gpus_of(p):
            duplicated += g in seen_gpu
            seen_gpu.add(g)
    # ETT model
    gpus = args.gangs * GANG_PODS * POD_GPUS
    days = args.faults / (LLAMA3_PER_GPU_DAY * gpus)
    horizon = days * 86400
    gang_gpus = GANG_PODS * POD_GPUS
    allocated = gpus * horizon
    lost_with = 0.0
    lost_without = 0.0
    for f in faults:
        since_ckpt = rng.uniform(0, args.checkpoint_every)
        recovery = (f.recover - f.at) if f.recover is not None else horizon
        lost_with += gang_gpus * (since_ckpt + recovery)
        position = (f.at - epoch) / args.trace * horizon  # where in the modelled days
        lost_without += gang_gpus * (since_ckpt + horizon - position)
    result = {
        "bench": "repair",
        "date": time.strftime("%Y-%m-%d"),
        "nodes": len(names),
        "gangs": args.gangs,
        "gpus_allocated": gpus,
        "faults": len(faults),
        "trace_s": args.trace,
        "modelled_days": round(days, 2),
        "detected": len(detect),
        "recovered": len(recover),
        "detect_p50_s": quantiles(detect)[0],
        "detect_p99_s": quantiles(detect)[1],
        "detect_by_agent_p50_s": quantiles([f.detect - f.at for f in by_agent])[0],
        "detect_by_agent_p99_s": quantiles([f.detect - f.at for f in by_agent])[1],
        "detect_written_by_agent_p50_s": quantiles(detect_written)[0],
        "detect_written_by_agent_p99_s": quantiles(detect_written)[1],
        "detect_in_a_reading_p50_s": quantiles(at_once)[0],
        "detect_in_a_reading_p99_s": quantiles(at_once)[1],
        "detect_split_p50_p99_s": {
            "fault_to_agent_reading": quantiles(to_reading),
            "agent_reading_to_seen_written": quantiles(reading_to_seen),
            "agent_reading_to_written": quantiles(reading_to_written),
            "written_to_seen_by_the_bench": quantiles(written_to_seen),
            "seen_to_fenced": quantiles(fence_after),
        },
        "recover_p50_s": quantiles(recover)[0],
        "recover_p99_s": quantiles(recover)[1],
        "sim_start_delay_s": int(ENV.get("EGPU_SIM_READY_DELAY_MS", "1000")) / 1000,
        "kinds_detected": f"{len(kinds_found)}/{len(kinds_all)}",
        "kinds_missed": sorted(kinds_all - kinds_found),
        "ett_with_repair": round(1 - lost_with / allocated, 4),
        "ett_without_repair": round(1 - lost_without / allocated, 4),
        "checkpoint_every_s": args.checkpoint_every,
        "node_lost_after": args.node_lost_after,
        "hang_timeout": args.hang_timeout,
        "faults_by_kind": {
            k: sum(1 for f in faults if kinds_of(f) == k) for k in sorted(kinds_all)
        },
        "detect_s": sorted((kinds_of(f), _round(f.detect - f.at)) for f in by_agent),
        "detect_by_kind_p50_s": {
            kind: _round(
                quantiles([f.detect - f.at for f in faults if f.detect and kinds_of(f) == kind])[0]
            )
            for kind in sorted(kinds_all)
        },
        "pods_lost": lost,
        "pods_duplicated": duplicated,
        "agent_processes": shards,
        "agent_ready_before_trace_s": round(epoch - agent_ready, 1),
        "faults_before_agent_ready": sum(1 for f in faults if f.at < agent_ready),
        "unrecovered": sorted(f"{f.gang}:{f.kind}" for f in faults if f.recover is None),
    }
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--leaves", type=int, default=10, help="leaves per block")
    p.add_argument("--nodes", type=int, default=25, help="nodes per leaf")
    p.add_argument("--gangs", type=int, default=200)
    p.add_argument("--faults", type=int, default=40)
    p.add_argument("--trace", type=float, default=180.0, help="seconds the faults are played in")
    p.add_argument("--settle", type=float, default=120.0, help="seconds to wait for recoveries")
    p.add_argument("--checkpoint-every", type=float, default=1800.0)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--warmup", type=float, default=90.0, help="seconds before the trace starts")
    p.add_argument("--node-lost-after", default="10s", help="the operator's EGPU_NODE_LOST_AFTER")
    p.add_argument("--hang-timeout", default="10s", help="hangTimeout of a hung job")
    p.add_argument("--kinds", default="", help="only these fault kinds (comma-separated)")
    p.add_argument("--agents", type=int, default=10, help="simulated agent processes")
    args = p.parse_args()
    subprocess.run([*LOCALCLUSTER, "up", "--fresh"], env=ENV, check=True, stdout=subprocess.DEVNULL)
    try:
        result = asyncio.run(run(args))
    finally:
        subprocess.run([*LOCALCLUSTER, "down"], env=ENV, check=False, stdout=subprocess.DEVNULL)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
