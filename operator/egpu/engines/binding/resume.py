"""What a (new) leader makes of plans that an earlier one recorded and did not finish.

A plan names how many pods it placed. If every one of them carries it, the plan is
whole: its pods are bound where it says (their reservations still hold). If the
recording was cut short, the plan is dropped and its pods placed again with the rest,
so a gang that must share one domain never ends up split across two.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container
from dataclasses import dataclass

from egpu.domain.placement import PodAssignment
from egpu.domain.pod import PodFacts
from egpu.engines.binding.gangs import Gang


@dataclass(frozen=True, slots=True)
class Resume:
    resumed: list[tuple[PodFacts, PodAssignment]]  # bind these where their plan says
    stale: list[str]  # pod keys whose recorded plan is to be dropped
    fresh: list[PodFacts]  # place these now


def split_resumable(gang: Gang, held: Container[str]) -> Resume:
    """`held`: pods whose recorded plan the ledger holds (it still fits)."""
    recorded = Counter(p.plan.plan_id for p in (*gang.pending, *gang.bound) if p.plan)
    resumed: list[tuple[PodFacts, PodAssignment]] = []
    stale: list[str] = []
    fresh: list[PodFacts] = []
    for pod in gang.pending:
        plan = pod.plan
        whole = plan is not None and recorded[plan.plan_id] == plan.size
        if plan is not None and whole and pod.key in held:
            resumed.append(
                (
                    pod,
                    PodAssignment(
                        rank=pod.rank if pod.rank is not None else 0,
                        node=plan.node,
                        gpu_indices=plan.gpu_indices,
                        domain=dict(plan.domain),
                        cpu_millis=pod.demand.cpu_millis,
                        memory_bytes=pod.demand.memory_bytes,
                    ),
                )
            )
            continue
        if plan is not None and not whole:
            stale.append(pod.key)
        fresh.append(pod)
    return Resume(resumed, stale, fresh)
