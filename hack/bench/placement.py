"""Placement engine benchmark: decision time at 15,000 nodes, and placement quality.

    .venv/bin/python hack/bench/placement.py            # 15 x 25 x 40 nodes x 8 GPUs
    .venv/bin/python hack/bench/placement.py --quick    # a small smoke run (seconds)
    .venv/bin/python hack/bench/placement.py --cases-only   # the scored cases alone

(0) Scored cases with a known best answer (`placement_cases.py`): per case pass or
    fail and a score from 0 to 1 (1 is the best answer); wiring before count,
    spreading inside NVLink groups, the fragmentation tie-break, spanning the fewest
    domains at every level, one GPU model per gang.

(a) Fill the cluster to half with a seeded mix of gangs, then time the decision
    (`place_gang`, no reserve) for one gang of 128 pods x 8 GPUs over many trials,
    with a small churn step (untimed) between trials so no two decide on the same
    state. Ledger build time and manifest parsing are reported separately.
(b) A seeded churn trace of gangs of 1..512 GPUs arriving and leaving, run twice on
    the same trace: through the engine, and through a naive first-fit baseline
    (pods on the first node by name with room, no topology). Gangs that do not fit
    are dropped, not queued. Reported for both:
    - smallest_domain_pct: placed gangs whose pods all sit in one domain of the
      smallest level at which ANY domain had room for the whole gang at that moment
      (checked by the bench's own counts, not the engine's);
    - ideal_domain_pct: the same against the smallest level that could hold the gang
      in an empty cluster (what fragmentation costs);
    - stranded_gpus: at the end, free GPUs on nodes with fewer free GPUs than one
      whole node has, i.e. free but unusable by the next 8-GPU pod;
    - nvlink_split_pods_pct: placed pods no larger than an NVLink group whose GPUs
      span more than one group (lower is better).
(c) Filters: the cluster of (a), every node then tainted `nvidia.com/gpu=present:
    NoSchedule` and 1% also `gpu=broken:NoSchedule`; the decision for the gang of (a)
    timed when it tolerates the common taint (the broken nodes are refused), and when
    it also asks for the last three blocks by required node affinity (every node is
    visited; most are refused).
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "operator"))

from egpu.domain.gang import GangRequest
from egpu.domain.node import Node, node_from_kubernetes
from egpu.domain.placement import Placement
from egpu.domain.scheduling import NodeConstraints, Requirement, SelectorTerm, Taint, Toleration
from egpu.domain.topology import Topology
from egpu.engines.placement import ClusterLedger, place_gang
from egpu.engines.placement.tree import natural_key
from egpu.sim.nodes import ClusterShape, node_manifests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from placement_cases import run_cases  # a module beside this script

# Gang sizes in GPUs and how often each arrives (small jobs are common, big ones rare).
SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
WEIGHTS = (14, 10, 10, 16, 12, 10, 10, 8, 6, 4)
CPU_PER_GPU = 4000  # millicores; a whole node's pods use 32 of its 128 cores
MEM_PER_GPU = 64 * 2**30  # a whole node's pods use 512Gi of its 2048Gi


@dataclass(frozen=True)
class Gang:
    gang_id: str
    pods: int
    gpus: int
    arrive: float
    stay: float

    def request(self) -> GangRequest:
        return GangRequest(
            self.gang_id,
            self.pods,
            self.gpus,
            cpu_millis_per_pod=CPU_PER_GPU * self.gpus,
            memory_bytes_per_pod=MEM_PER_GPU * self.gpus,
        )


def random_gang(rng: random.Random, gpus_per_node: int) -> tuple[int, int]:
    """(pods, GPUs per pod) for a random gang size."""
    size = rng.choices(SIZES, WEIGHTS)[0]
    if size < gpus_per_node:
        return (size, 1) if rng.random() < 0.3 else (1, size)
    if rng.random() < 0.2:
        half = gpus_per_node // 2
        return size // half, half
    return size // gpus_per_node, gpus_per_node


def build_nodes(shape: ClusterShape) -> list[Node]:
    return [
        node_from_kubernetes(
            m["metadata"]["name"],
            m["metadata"]["labels"],
            m["metadata"]["annotations"],
            m["status"]["allocatable"],
        )
        for m in node_manifests(shape)
    ]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


# -- the bench's own bookkeeping: free GPUs per node and pod capacity per domain ---------


class Counts:
    """Free GPUs per node, and for each pod size the pods each leaf/block could take.

    Kept by the bench from the assignments alone, to judge placements independently
    of the engine's indexes. CPU and memory never bind in this trace (see CPU_PER_GPU).
    """

    def __init__(self, nodes: list[Node], gpus_per_node: int) -> None:
        self.gpus_per_node = gpus_per_node
        self.pod_sizes = sorted({g for g in (1, 2, 4, gpus_per_node) if g <= gpus_per_node})
        self.leaf_of = {n.name: n.labels["egpu.io/leaf"] for n in nodes}
        self.block_of = {n.name: n.labels["egpu.io/block"] for n in nodes}
        self.free = {n.name: gpus_per_node for n in nodes}
        self.hist = [0] * (gpus_per_node + 1)
        self.hist[gpus_per_node] = len(nodes)
        self.leaf: dict[int, dict[str, int]] = {}
        self.block: dict[int, dict[str, int]] = {}
        self.cluster: dict[int, int] = {}
        for g in self.pod_sizes:
            per_node = gpus_per_node // g
            self.leaf[g] = {}
            self.block[g] = {}
            for n in nodes:
                leaf, block = self.leaf_of[n.name], self.block_of[n.name]
                self.leaf[g][leaf] = self.leaf[g].get(leaf, 0) + per_node
                self.block[g][block] = self.block[g].get(block, 0) + per_node
            self.cluster[g] = per_node * len(nodes)

    def change(self, node: str, delta: int) -> None:
        old = self.free[node]
        new = old + delta
        assert 0 <= new <= self.gpus_per_node, (node, old, delta)
        self.free[node] = new
        self.hist[old] -= 1
        self.hist[new] += 1
        leaf, block = self.leaf_of[node], self.block_of[node]
        for g in self.pod_sizes:
            diff = new // g - old // g
            if diff:
                self.leaf[g][leaf] += diff
                self.block[g][block] += diff
                self.cluster[g] += diff

    def smallest_feasible(self, pods: int, gpus: int) -> str | None:
        if any(self.hist[k] for k in range(pods * gpus, self.gpus_per_node + 1)):
            return "node"
        if max(self.leaf[gpus].values()) >= pods:
            return "leaf"
        if max(self.block[gpus].values()) >= pods:
            return "block"
        if self.cluster[gpus] >= pods:
            return "cluster"
        return None

    def level_of(self, nodes: list[str]) -> str:
        if len(set(nodes)) == 1:
            return "node"
        if len({self.leaf_of[n] for n in nodes}) == 1:
            return "leaf"
        if len({self.block_of[n] for n in nodes}) == 1:
            return "block"
        return "cluster"

    def stranded(self) -> int:
        return sum(k * self.hist[k] for k in range(self.gpus_per_node))


def ideal_level(shape: ClusterShape, pods: int, gpus: int) -> str:
    per_node = shape.gpus_per_node // gpus
    if pods <= per_node:
        return "node"
    if pods <= per_node * shape.nodes_per_leaf:
        return "leaf"
    if pods <= per_node * shape.nodes_per_leaf * shape.leaves_per_block:
        return "block"
    return "cluster"


# -- schedulers under test: decide where a gang goes, or None ---------------------------

Placer = Callable[[Gang], list[tuple[str, tuple[int, ...]]] | None]


class EngineScheduler:
    def __init__(self, nodes: list[Node]) -> None:
        self.ledger = ClusterLedger(Topology(), nodes)
        self.decide_ms: list[float] = []
        self.decide_cpu_ms: list[float] = []
        self.refuse_ms: list[float] = []
        self.record = True

    def place(self, gang: Gang) -> list[tuple[str, tuple[int, ...]]] | None:
        start, cpu_start = time.perf_counter(), time.process_time()
        result = place_gang(self.ledger, gang.request())
        elapsed = (time.perf_counter() - start) * 1000
        cpu = (time.process_time() - cpu_start) * 1000
        if not isinstance(result, Placement):
            if self.record:
                self.refuse_ms.append(elapsed)
            return None
        if self.record:
            self.decide_ms.append(elapsed)
            self.decide_cpu_ms.append(cpu)
        self.ledger.reserve(result)
        return [(a.node, a.gpu_indices) for a in result.assignments]

    def release(self, gang: Gang) -> None:
        self.ledger.release_gang(gang.gang_id)


class FirstFitScheduler:
    """Each pod on the first node (by name) with enough free GPUs; lowest GPU indices."""

    def __init__(self, nodes: list[Node]) -> None:
        self.order = [n.name for n in nodes]  # node_manifests yields them in name order
        self.free = {n.name: (1 << n.gpu_count) - 1 for n in nodes}
        self.held: dict[str, list[tuple[str, int]]] = {}

    def place(self, gang: Gang) -> list[tuple[str, tuple[int, ...]]] | None:
        chosen: list[tuple[str, int]] = []
        trial: dict[str, int] = {}
        position = 0
        for _ in range(gang.pods):
            while position < len(self.order):
                name = self.order[position]
                mask = trial.get(name, self.free[name])
                if mask.bit_count() >= gang.gpus:
                    take = 0
                    for _ in range(gang.gpus):
                        bit = (mask & ~take) & -(mask & ~take)
                        take |= bit
                    trial[name] = mask & ~take
                    chosen.append((name, take))
                    break
                position += 1
            else:
                return None
        self.free.update(trial)
        self.held[gang.gang_id] = chosen
        return [
            (name, tuple(i for i in range(take.bit_length()) if take >> i & 1))
            for name, take in chosen
        ]

    def release(self, gang: Gang) -> None:
        for name, take in self.held.pop(gang.gang_id):
            self.free[name] |= take


# -- (a) decision time ---------------------------------------------------------------------


class GcWatch:
    """Time spent in the garbage collector, by generation, while installed."""

    def __init__(self) -> None:
        self.started = 0.0
        self.ms = 0.0
        self.full = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.ms += (time.perf_counter() - self.started) * 1000
            self.full += info["generation"] == 2


def top_up(
    ledger: ClusterLedger, rng: random.Random, gpus_per_node: int, prefix: str, placed: list[str]
) -> None:
    """Place random gangs until half the GPUs are used, never overshooting by a node."""
    half = ledger.domain_stats(()).nodes * gpus_per_node / 2
    misses = 0
    while ledger.free_gpus() > half and misses < 50:
        pods, gpus = random_gang(rng, gpus_per_node)
        if pods * gpus > ledger.free_gpus() - half + gpus_per_node:
            misses += 1
            continue
        gang = Gang(f"{prefix}{len(placed)}-{misses}", pods, gpus, 0.0, 0.0)
        result = place_gang(ledger, gang.request())
        if not isinstance(result, Placement):
            misses += 1
            continue
        ledger.reserve(result)
        placed.append(gang.gang_id)


def decision_time(
    args: argparse.Namespace, shape: ClusterShape, nodes: list[Node]
) -> dict[str, float]:
    rng = random.Random(args.seed)
    start = time.perf_counter()
    ledger = ClusterLedger(Topology(), nodes)
    build_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    placed: list[str] = []
    top_up(ledger, rng, shape.gpus_per_node, "fill", placed)
    fill_s = time.perf_counter() - start
    filled = len(placed)
    big = GangRequest(
        "big",
        args.gang_pods,
        shape.gpus_per_node,
        cpu_millis_per_pod=CPU_PER_GPU * shape.gpus_per_node,
        memory_bytes_per_pod=MEM_PER_GPU * shape.gpus_per_node,
    )
    times: list[float] = []
    cpu_times: list[float] = []
    gc_watch = GcWatch()
    gc_ms: list[float] = []
    if args.gc_freeze:
        gc.collect()
        gc.freeze()  # what a long-running operator can do once its ledger is built
    reserve_ms: list[float] = []
    levels: dict[str, int] = {}
    refused = 0
    for trial in range(args.trials):
        # Untimed churn so every trial decides on a slightly different cluster.
        for _ in range(2):
            ledger.release_gang(placed.pop(rng.randrange(len(placed))))
        top_up(ledger, rng, shape.gpus_per_node, f"t{trial}-", placed)
        gc_watch.ms = 0.0
        gc.callbacks.append(gc_watch)
        cpu_start = time.process_time()
        start = time.perf_counter()
        decision = place_gang(ledger, big)
        times.append((time.perf_counter() - start) * 1000)
        cpu_times.append((time.process_time() - cpu_start) * 1000)
        gc.callbacks.remove(gc_watch)
        gc_ms.append(gc_watch.ms)
        if not isinstance(decision, Placement):
            refused += 1
            continue
        levels[decision.level] = levels.get(decision.level, 0) + 1
        if trial % 10 == 0:
            start = time.perf_counter()
            ledger.reserve(decision)
            ledger.release_gang("big")
            reserve_ms.append((time.perf_counter() - start) * 1000)
    problems = ledger.verify()
    if problems:
        raise SystemExit(f"ledger indexes drifted: {problems[:3]}")
    print(
        f"(a) ledger build {build_ms:.0f} ms for {len(nodes)} nodes; filled to half in "
        f"{fill_s:.1f} s ({filled} gangs)"
    )
    print(
        f"    {args.gang_pods} pods x {shape.gpus_per_node} GPUs, {args.trials} trials: "
        f"p50 {percentile(times, 50):.2f} ms, p99 {percentile(times, 99):.2f} ms, "
        f"max {max(times):.2f} ms; levels {levels}, refused {refused}; "
        f"reserve+release p50 {percentile(reserve_ms, 50):.2f} ms"
    )
    print(
        f"    CPU time of the decision p50 {percentile(cpu_times, 50):.2f} ms, p99 "
        f"{percentile(cpu_times, 99):.2f} ms (wall minus waiting for a core); garbage "
        f"collector inside decisions: max {max(gc_ms):.2f} ms, {gc_watch.full} full "
        f"collections{' (gc.freeze() applied)' if args.gc_freeze else ''}"
    )
    return {
        "p50_ms": round(percentile(times, 50), 3),
        "p99_ms": round(percentile(times, 99), 3),
        "max_ms": round(max(times), 3),
        "p50_cpu_ms": round(percentile(cpu_times, 50), 3),
        "p99_cpu_ms": round(percentile(cpu_times, 99), 3),
        "gc_max_ms": round(max(gc_ms), 3),
        "big_gang_refused": refused,
        "build_ms": round(build_ms, 1),
        "reserve_release_ms": round(percentile(reserve_ms, 50), 3),
    }


# -- (c) filters ---------------------------------------------------------------------------------


def filtered_decisions(
    args: argparse.Namespace, shape: ClusterShape, nodes: list[Node]
) -> dict[str, float]:
    rng = random.Random(args.seed + 2)
    ledger = ClusterLedger(Topology(), nodes)
    placed: list[str] = []
    top_up(ledger, rng, shape.gpus_per_node, "fill", placed)
    common = Taint("nvidia.com/gpu", "present", "NoSchedule")
    broken = Taint("gpu", "broken", "NoSchedule")
    for i, node in enumerate(nodes):
        ledger.update_node(replace(node, taints=(common, broken) if i % 100 == 0 else (common,)))
    tolerate = NodeConstraints(tolerations=(Toleration("nvidia.com/gpu", "Exists"),))
    blocks = tuple(sorted({n.labels["egpu.io/block"] for n in nodes}, key=natural_key)[-3:])
    select = replace(
        tolerate,
        required=(SelectorTerm(expressions=(Requirement("egpu.io/block", "In", blocks),)),),
    )
    out: dict[str, float] = {}
    if args.gc_freeze:
        gc.collect()
        gc.freeze()
    for name, ask in (("tolerated", tolerate), ("affinity", select)):
        big = GangRequest(
            "big",
            args.gang_pods,
            shape.gpus_per_node,
            cpu_millis_per_pod=CPU_PER_GPU * shape.gpus_per_node,
            memory_bytes_per_pod=MEM_PER_GPU * shape.gpus_per_node,
            constraints=(ask,),
        )
        times: list[float] = []
        refused = 0
        for _ in range(max(1, args.trials // 4)):
            start = time.perf_counter()
            decision = place_gang(ledger, big)
            times.append((time.perf_counter() - start) * 1000)
            refused += not isinstance(decision, Placement)
        print(
            f"(c) {name:9s}: p50 {percentile(times, 50):.2f} ms, p99 "
            f"{percentile(times, 99):.2f} ms over {len(times)} trials; refused {refused}"
        )
        out[f"{name}_p50_ms"] = round(percentile(times, 50), 3)
        out[f"{name}_p99_ms"] = round(percentile(times, 99), 3)
    problems = ledger.verify()
    if problems:
        raise SystemExit(f"ledger indexes drifted: {problems[:3]}")
    return out


# -- (b) churn trace ----------------------------------------------------------------------------


def make_trace(args: argparse.Namespace, shape: ClusterShape) -> list[Gang]:
    rng = random.Random(args.seed + 1)
    mean_size = sum(s * w for s, w in zip(SIZES, WEIGHTS, strict=True)) / sum(WEIGHTS)
    rate = args.load * shape.gpu_count / mean_size  # arrivals per mean stay (stay = 1.0)
    gangs: list[Gang] = []
    now = 0.0
    for serial in range(args.arrivals):
        now += rng.expovariate(rate)
        pods, gpus = random_gang(rng, shape.gpus_per_node)
        gangs.append(Gang(f"g{serial}", pods, gpus, now, rng.expovariate(1.0)))
    return gangs


@dataclass
class TraceResult:
    placed: int = 0
    rejected: int = 0
    smallest: int = 0
    ideal: int = 0
    stranded_end: int = 0
    stranded_sum: int = 0
    samples: int = 0
    used_sum: int = 0
    seconds: float = 0.0
    small_pods: int = 0  # scored pods no larger than an NVLink group
    split_pods: int = 0  # ... whose GPUs span more than one group

    def pct(self, count: int) -> float:
        return round(100 * count / self.placed, 2) if self.placed else 0.0


def run_trace(
    trace: list[Gang],
    shape: ClusterShape,
    nodes: list[Node],
    scheduler: EngineScheduler | FirstFitScheduler,
    warmup: int,
) -> TraceResult:
    """Play the trace; the first `warmup` arrivals fill the cluster and are not scored."""
    counts = Counts(nodes, shape.gpus_per_node)
    out = TraceResult()
    leaving: list[tuple[float, int, Gang, list[tuple[str, tuple[int, ...]]]]] = []
    start = time.perf_counter()
    for serial, gang in enumerate(trace):
        while leaving and leaving[0][0] <= gang.arrive:
            _, _, gone, pods = heapq.heappop(leaving)
            scheduler.release(gone)
            for node, gpus in pods:
                counts.change(node, len(gpus))
        scored = serial >= warmup
        if isinstance(scheduler, EngineScheduler):
            scheduler.record = scored
        feasible = counts.smallest_feasible(gang.pods, gang.gpus)
        got = scheduler.place(gang)
        if got is None:
            out.rejected += scored
        else:
            assert len(got) == gang.pods
            level = counts.level_of([node for node, _ in got])
            if scored:
                out.placed += 1
                out.smallest += level == feasible
                out.ideal += level == ideal_level(shape, gang.pods, gang.gpus)
                group = shape.nvlink_group_size
                if gang.gpus <= group < shape.gpus_per_node:
                    out.small_pods += len(got)
                    out.split_pods += sum(len({g // group for g in gpus}) > 1 for _, gpus in got)
            for node, gpus in got:
                counts.change(node, -len(gpus))
            heapq.heappush(leaving, (gang.arrive + gang.stay, serial, gang, got))
        if scored:
            out.stranded_sum += counts.stranded()
            out.samples += 1
            out.used_sum += shape.gpu_count - sum(k * c for k, c in enumerate(counts.hist))
    out.seconds = time.perf_counter() - start
    out.stranded_end = counts.stranded()
    if isinstance(scheduler, EngineScheduler):
        assert scheduler.ledger.stranded_gpus(shape.gpus_per_node) == out.stranded_end
    return out


def split_pct(r: TraceResult) -> float:
    return round(100 * r.split_pods / r.small_pods, 2) if r.small_pods else 0.0


def churn(args: argparse.Namespace, shape: ClusterShape, nodes: list[Node]) -> dict[str, float]:
    trace = make_trace(args, shape)
    warmup = int(len(trace) * args.warmup)
    engine = EngineScheduler(nodes)
    ours = run_trace(trace, shape, nodes, engine, warmup)
    base = run_trace(trace, shape, nodes, FirstFitScheduler(nodes), warmup)
    print(
        f"(b) {len(trace)} gangs at offered load {args.load}, first {warmup} not scored; "
        f"mean GPUs in use {100 * ours.used_sum / max(1, ours.samples) / shape.gpu_count:.1f}%"
    )
    for name, r in (("engine", ours), ("first-fit", base)):
        print(
            f"(b) {name:9s}: {r.placed} placed, {r.rejected} rejected; smallest feasible "
            f"domain {r.pct(r.smallest)}%, ideal domain {r.pct(r.ideal)}%; stranded GPUs "
            f"at end {r.stranded_end} (mean {r.stranded_sum / max(1, r.samples):.0f}); "
            f"pods split across NVLink groups {split_pct(r)}%; {r.seconds:.1f} s"
        )
    print(
        f"    engine decisions: placed p50 {percentile(engine.decide_ms, 50):.2f} ms, "
        f"p99 {percentile(engine.decide_ms, 99):.2f} ms (CPU time p50 "
        f"{percentile(engine.decide_cpu_ms, 50):.2f} ms, p99 "
        f"{percentile(engine.decide_cpu_ms, 99):.2f} ms); refused p50 "
        f"{percentile(engine.refuse_ms, 50):.2f} ms, p99 {percentile(engine.refuse_ms, 99):.2f} ms"
    )
    return {
        "smallest_domain_pct": ours.pct(ours.smallest),
        "stranded_gpus": ours.stranded_end,
        "ideal_domain_pct": ours.pct(ours.ideal),
        "stranded_gpus_mean": round(ours.stranded_sum / max(1, ours.samples), 1),
        "nvlink_split_pods_pct": split_pct(ours),
        "placed": ours.placed,
        "rejected": ours.rejected,
        "churn_p50_ms": round(percentile(engine.decide_ms, 50), 3),
        "churn_p99_ms": round(percentile(engine.decide_ms, 99), 3),
        "churn_p99_cpu_ms": round(percentile(engine.decide_cpu_ms, 99), 3),
        "refused_p99_ms": round(percentile(engine.refuse_ms, 99), 3),
        "baseline_smallest_domain_pct": base.pct(base.smallest),
        "baseline_stranded_gpus": base.stranded_end,
        "baseline_ideal_domain_pct": base.pct(base.ideal),
        "baseline_stranded_gpus_mean": round(base.stranded_sum / max(1, base.samples), 1),
        "baseline_nvlink_split_pods_pct": split_pct(base),
        "baseline_placed": base.placed,
        "baseline_rejected": base.rejected,
    }


def scored_cases() -> dict[str, object]:
    outcomes = run_cases()
    for o in outcomes:
        verdict = "pass" if o.passed else "FAIL"
        print(f"(0) {verdict} {o.score:5.3f}  {o.case.name:42s} [{o.case.point}] {o.note}")
    passed = sum(o.passed for o in outcomes)
    mean = sum(o.score for o in outcomes) / len(outcomes)
    print(f"(0) cases: {passed} of {len(outcomes)} at the best answer, mean score {mean:.3f}")
    return {
        "cases_passed": passed,
        "cases_total": len(outcomes),
        "cases_score": round(mean, 3),
        "cases_failed": [o.case.name for o in outcomes if not o.passed],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run for smoke tests")
    parser.add_argument(
        "--cases-only", action="store_true", help="only the scored cases with a known best answer"
    )
    parser.add_argument("--blocks", type=int, default=15)
    parser.add_argument("--leaves", type=int, default=25, help="leaves per block")
    parser.add_argument("--nodes", type=int, default=40, help="nodes per leaf")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs per node")
    parser.add_argument("--gang-pods", type=int, default=128, help="pods of the timed gang")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--arrivals", type=int, default=10000, help="gangs in the churn trace")
    parser.add_argument("--load", type=float, default=1.0, help="offered GPU load of the trace")
    parser.add_argument(
        "--warmup", type=float, default=0.4, help="share of the trace that only fills the cluster"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--gc-freeze", action="store_true", help="gc.freeze() before the timed decisions"
    )
    args = parser.parse_args(argv)
    report: dict[str, object] = scored_cases()
    if args.cases_only:
        print(json.dumps(report, sort_keys=False))
        return
    if args.quick:
        args.blocks, args.leaves, args.nodes = 2, 4, 8
        args.gang_pods, args.trials, args.arrivals = 16, 30, 300
    shape = ClusterShape(
        blocks=args.blocks,
        leaves_per_block=args.leaves,
        nodes_per_leaf=args.nodes,
        gpus_per_node=args.gpus,
        nvlink_group_size=args.gpus // 2 if args.gpus % 2 == 0 else args.gpus,
    )
    start = time.perf_counter()
    nodes = build_nodes(shape)
    parse_ms = (time.perf_counter() - start) * 1000
    print(
        f"cluster: {args.blocks} blocks x {args.leaves} leaves x {args.nodes} nodes x "
        f"{args.gpus} GPUs = {shape.node_count} nodes, {shape.gpu_count} GPUs "
        f"(parsed from manifests in {parse_ms:.0f} ms)"
    )
    report.update(decision_time(args, shape, nodes))
    report.update(churn(args, shape, nodes))
    report.update(filtered_decisions(args, shape, nodes))
    report.update(
        nodes=shape.node_count,
        gpus=shape.gpu_count,
        gang_gpus=args.gang_pods * args.gpus,
        parse_ms=round(parse_ms, 1),
        seed=args.seed,
        python=sys.version.split()[0],
    )
    print(json.dumps(report, sort_keys=False))


if __name__ == "__main__":
    main()
