"""Placement cases with a known best answer, scored: how close the engine comes.

Each case builds a small cluster, asks for one gang and scores the placement from
0 (worst) to 1 (the best answer); it passes at 1. The score is measured from the
assignments alone (GPUs per NVLink group, whole nodes left, domains used), never
from the engine's own indexes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from egpu.domain.gang import GangRequest
from egpu.domain.gpu import Interconnect
from egpu.domain.node import Node
from egpu.domain.placement import Placement
from egpu.domain.topology import Topology
from egpu.engines.placement import ClusterLedger, place_gang

BLOCK, LEAF, HOST = "egpu.io/block", "egpu.io/leaf", "kubernetes.io/hostname"
TWO_GROUPS = ((0, 1, 2, 3), (4, 5, 6, 7))
PAIRS = ((0, 1), (2, 3), (4, 5), (6, 7))
NUMA_HALVES = (0, 0, 0, 0, 1, 1, 1, 1)
FULL = tuple(range(8))


def node(
    name: str,
    leaf: str = "b0-l0",
    used: Iterable[int] = (),
    groups: Sequence[Sequence[int]] = TWO_GROUPS,
    model: str = "H100",
) -> Node:
    return Node(
        name=name,
        labels={BLOCK: leaf.split("-")[0], LEAF: leaf, HOST: name},
        cpu_millis=128_000,
        memory_bytes=2048 * 2**30,
        gpu_count=8,
        gpu_model=model,
        interconnect=Interconnect(tuple(tuple(g) for g in groups), NUMA_HALVES),
        used_gpus=frozenset(used),
    )


Score = Callable[[Placement, list[Node]], float]


@dataclass(frozen=True)
class Case:
    name: str
    point: str  # which rule it checks
    nodes: Callable[[], list[Node]]
    gang: GangRequest
    score: Score


def _group_of(gpu: int, groups: Sequence[Sequence[int]]) -> int:
    return next(i for i, g in enumerate(groups) if gpu in g)


def kept_in_groups(groups: Sequence[Sequence[int]] = TWO_GROUPS) -> Score:
    """Share of pods whose GPUs sit in one NVLink group."""

    def score(p: Placement, _: list[Node]) -> float:
        kept = sum(len({_group_of(g, groups) for g in a.gpu_indices}) == 1 for a in p.assignments)
        return kept / len(p.assignments)

    return score


def kept_in_numa(p: Placement, _: list[Node]) -> float:
    kept = sum(len({NUMA_HALVES[g] for g in a.gpu_indices}) == 1 for a in p.assignments)
    return kept / len(p.assignments)


def _taken(p: Placement) -> dict[str, set[int]]:
    taken: dict[str, set[int]] = {}
    for a in p.assignments:
        taken.setdefault(a.node, set()).update(a.gpu_indices)
    return taken


def whole_nodes_left(best: int) -> Score:
    """Whole free nodes left after the placement, against the best answer's count."""

    def score(p: Placement, nodes: list[Node]) -> float:
        taken = _taken(p)
        left = sum(1 for n in nodes if not n.used_gpus and n.name not in taken)
        return min(1.0, left / best)

    return score


def whole_groups_left(best: int) -> Score:
    def score(p: Placement, nodes: list[Node]) -> float:
        taken = _taken(p)
        left = 0
        for n in nodes:
            busy = set(n.used_gpus) | taken.get(n.name, set())
            left += sum(1 for g in TWO_GROUPS if not busy & set(g))
        return min(1.0, left / best)

    return score


def fewest(label: str, best: int) -> Score:
    """The best answer's count of distinct domains at a level over the count used."""

    def score(p: Placement, _: list[Node]) -> float:
        return best / len({a.domain[label] for a in p.assignments})

    return score


def both(*scores: Score) -> Score:
    def score(p: Placement, nodes: list[Node]) -> float:
        total = 1.0
        for s in scores:
            total *= s(p, nodes)
        return total

    return score


def untouched(label: str, keep: set[str]) -> Score:
    """Share of the named domains the placement leaves alone (the tightest set
    leaves the roomy ones for the next gang)."""

    def score(p: Placement, _: list[Node]) -> float:
        used = {a.domain[label] for a in p.assignments}
        return len(keep - used) / len(keep)

    return score


CASES = [
    Case(
        "nvlink-group-over-tighter-node",
        "1 wiring before count",
        lambda: [node("n0", used=(0, 1, 4, 5)), node("n1", used=(0, 1, 2))],
        GangRequest("g", 1, 4),
        kept_in_groups(),
    ),
    Case(
        "nvlink-group-beyond-300-tighter-nodes",
        "1 wiring before count",
        lambda: [
            node("a", used=(0, 1, 4, 5)),
            *(node(f"b{i}", used=(0, 1, 4)) for i in range(300)),
            node("z", used=(0, 1)),
        ],
        GangRequest("g", 1, 4),
        kept_in_groups(),
    ),
    Case(
        "numa-node-over-tighter-node",
        "1 wiring before count",
        lambda: [
            node("n0", used=(0, 1, 2, 4, 5), groups=PAIRS),
            node("n1", used=(4, 5, 6, 7), groups=PAIRS),
        ],
        GangRequest("g", 1, 3),
        kept_in_numa,
    ),
    Case(
        "whole-group-kept-among-equal-nodes",
        "1 wiring before count",
        lambda: [node("n0", used=(4, 5, 6, 7)), node("n1", used=(0, 1, 4, 5))],
        GangRequest("g", 1, 2),
        whole_groups_left(1),
    ),
    Case(
        "spread-over-nodes-in-groups",
        "2 spreading keeps groups",
        lambda: [
            node("a0", used=(0, 1, 4, 5)),
            node("a1", used=(0, 1, 4, 5)),
            node("b0", used=(0, 1, 2, 3)),
            node("b1", used=(0, 1, 2, 3)),
        ],
        GangRequest("g", 2, 4),
        kept_in_groups(),
    ),
    Case(
        "leaf-that-keeps-groups-over-tighter-leaf",
        "2 spreading keeps groups",
        lambda: [
            node("l0-n0", "b0-l0", used=(0, 1, 4, 5)),
            node("l0-n1", "b0-l0", used=(0, 1, 4, 5)),
            node("l1-n0", "b0-l1", used=(0, 1, 2, 3)),
            node("l1-n1", "b0-l1", used=(0, 1, 2)),
        ],
        GangRequest("g", 2, 4),
        kept_in_groups(),
    ),
    Case(
        "tied-leaves-keep-whole-nodes",
        "3 fragmentation tie-break",
        lambda: [
            node("l0-n0", "b0-l0"),
            node("l0-n1", "b0-l0"),
            node("l0-n2", "b0-l0", used=FULL),
            node("l0-n3", "b0-l0", used=FULL),
            *(node(f"l1-n{i}", "b0-l1", used=(0, 1, 2, 3)) for i in range(4)),
        ],
        GangRequest("g", 4, 4),
        whole_nodes_left(2),
    ),
    Case(
        "tied-leaves-keep-whole-groups",
        "3 fragmentation tie-break",
        lambda: [
            *(node(f"l0-n{i}", "b0-l0", used=(4, 5, 6, 7)) for i in range(2)),
            *(node(f"l1-n{i}", "b0-l1", used=(0, 1, 4, 5)) for i in range(2)),
        ],
        GangRequest("g", 4, 2),
        whole_groups_left(2),
    ),
    Case(
        "span-blocks-fewest-leaves",
        "4 spanning minimises every level",
        lambda: [
            *(node(f"b0-l{leaf}-n{i}", f"b0-l{leaf}") for leaf in range(5) for i in range(2)),
            *(node(f"b1-l0-n{i}", "b1-l0") for i in range(8)),
            *(node(f"b2-l0-n{i}", "b2-l0") for i in range(6)),
        ],
        GangRequest("g", 14, 8),
        both(fewest(BLOCK, 2), fewest(LEAF, 2)),
    ),
    Case(
        "span-leaves-tightest-set",
        "4 spanning minimises every level",
        lambda: [
            node(f"{leaf}-n{i}", leaf)
            for leaf, count in {"b0-l0": 5, "b0-l1": 4, "b0-l2": 3, "b0-l3": 3}.items()
            for i in range(count)
        ],
        GangRequest("g", 6, 8),
        both(fewest(LEAF, 2), untouched(LEAF, {"b0-l0", "b0-l1"})),
    ),
]


def one_model(p: Placement, nodes: list[Node]) -> float:
    """1 when every pod got the same GPU model, else the share on the commonest."""
    model_of = {n.name: n.gpu_model for n in nodes}
    counts: dict[str | None, int] = {}
    for a in p.assignments:
        counts[model_of[a.node]] = counts.get(model_of[a.node], 0) + 1
    return max(counts.values()) / len(p.assignments)


H200, H100 = "NVIDIA-H200-141GB-HBM3e", "NVIDIA-H100-80GB-HBM3"
CASES += [
    Case(
        "one-gpu-model-per-gang",
        "5 one GPU model per gang",
        lambda: [
            node("n0", model=H200),
            node("n1", model=H200),
            *(node(f"n{i}", model=H100) for i in range(2, 6)),
        ],
        GangRequest("g", 3, 8),
        one_model,
    ),
    Case(
        "gfd-product-matches-short-selector",
        "5 one GPU model per gang",
        lambda: [node("n0", model=H100), node("n1", model=H200), node("n2", model=H200)],
        GangRequest("g", 2, 8, gpu_model="h200"),
        lambda p, nodes: float(all(a.node in {"n1", "n2"} for a in p.assignments)),
    ),
]


@dataclass(frozen=True)
class Outcome:
    case: Case
    score: float
    note: str

    @property
    def passed(self) -> bool:
        return self.score >= 1.0


def run_case(case: Case) -> Outcome:
    nodes = case.nodes()
    result = place_gang(ClusterLedger(Topology(), nodes), case.gang)
    if not isinstance(result, Placement):
        return Outcome(case, 0.0, f"refused: {result.message}")
    if len(result.assignments) != case.gang.pod_count:
        return Outcome(case, 0.0, f"{len(result.assignments)} of {case.gang.pod_count} pods")
    where = sorted({a.node for a in result.assignments})
    shown = ", ".join(where[:4]) + (" ..." if len(where) > 4 else "")
    return Outcome(case, round(case.score(result, nodes), 3), shown)


def run_cases() -> list[Outcome]:
    return [run_case(case) for case in CASES]
