"""Resize policy Move: when a pod cannot grow in place, move it or wait."""

from __future__ import annotations

from dataclasses import dataclass

from egpu.domain.placement import PlacementResult, Unschedulable


@dataclass(frozen=True, slots=True)
class MoveOrWait:
    """`target` is the node to recreate the pod on; None: wait, because `why`."""

    target: str | None
    why: str = ""


def move_or_wait(answer: PlacementResult, node: str) -> MoveOrWait:
    """The placement engine's answer for a copy of the pod at its new size, inside the
    pod's domain: move there, unless no node has room or only the pod's own node has
    (it would not fit there either: that is why it moves)."""
    if isinstance(answer, Unschedulable):
        return MoveOrWait(None, answer.message)
    target = answer.assignments[0].node
    if target == node:
        return MoveOrWait(None, "only its own node")
    return MoveOrWait(target)
