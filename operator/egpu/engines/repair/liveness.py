"""Faults that no GPU reading shows: a node that stopped answering, a job that stopped
making progress.

- A node whose Ready condition has not been True for `grace_s` (False: the kubelet
  says so; Unknown: the node controller lost its heartbeat) is lost: every GPU on it
  is faulty and its members are repaired. A node with no Ready condition yet (still
  registering) is not judged.
- A member whose progress annotation has not changed for the hang timeout is hung. The
  clock starts when the member is first seen running with a value (or without one:
  a job that never reports progress hangs too). A clock still for half the timeout is
  recorded on the member, and a new leader carries a recorded clock on while the value
  is the same, so a failover delays a hang by at most half the timeout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Readiness:
    """A Node's Ready condition: its status ("True", "False", "Unknown") and since when."""

    status: str | None  # None: no Ready condition
    since: float | None  # lastTransitionTime; None: unknown (judged from when first seen)


def lost_nodes(
    nodes: Mapping[str, Readiness],
    first_seen_not_ready: Mapping[str, float],
    now: float,
    grace_s: float,
) -> frozenset[str]:
    """Nodes not Ready for longer than `grace_s`. `first_seen_not_ready` stands in for a
    transition time the Node does not give."""
    lost = set()
    for name, ready in nodes.items():
        if ready.status is None or ready.status == "True":
            continue
        since = ready.since if ready.since is not None else first_seen_not_ready.get(name, now)
        if now - since >= grace_s:
            lost.add(name)
    return frozenset(lost)


@dataclass(frozen=True, slots=True)
class Progress:
    """The last progress value seen of one member, and when it was first seen."""

    value: str | None
    since: float


def track_progress(
    seen: Mapping[str, Progress],
    running: Mapping[str, str | None],
    now: float,
    recorded: Mapping[str, Progress] | None = None,
) -> dict[str, Progress]:
    """The progress clocks after this pass: `running` maps the UID of each running
    member to its progress annotation. A changed value restarts the clock; members that
    stopped running are forgotten. `recorded`: clocks recorded on members (by an
    earlier leader), carried on for a member not seen yet whose value is the same."""
    out = {}
    for uid, value in running.items():
        before = seen.get(uid)
        if before is None and recorded is not None and uid in recorded:
            kept = recorded[uid]
            before = Progress(kept.value, min(kept.since, now)) if kept.value == value else None
        out[uid] = before if before is not None and before.value == value else Progress(value, now)
    return out


def clocks_to_record(
    clocks: Mapping[str, Progress],
    recorded: Mapping[str, Progress],
    timeout_s: float,
    now: float,
) -> dict[str, Progress]:
    """The clocks to record on their members: still for half the timeout or more and
    not recorded so yet (a member making progress is never written to)."""
    return {
        uid: p
        for uid, p in clocks.items()
        if now - p.since >= timeout_s / 2 and recorded.get(uid) != p
    }


def hung_members(progress: Mapping[str, Progress], timeout_s: float, now: float) -> frozenset[str]:
    """UIDs of the members that reported no new progress for `timeout_s`."""
    return frozenset(uid for uid, p in progress.items() if now - p.since >= timeout_s)


def stalled_for(progress: Mapping[str, Progress], uids: Sequence[str], now: float) -> float:
    """How long the longest-stalled of `uids` has shown no progress."""
    return max((now - progress[u].since for u in uids if u in progress), default=0.0)
