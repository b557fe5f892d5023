"""What to do with a GPUWorkload whose members sit on fenced GPUs (or lost nodes).

- `ReplaceMember`: delete only the affected members; the workload controller creates
  them again (same names, same ranks) and the binder places them inside the domain of
  the members still running, never on a fenced GPU.
- `RestartGang`: delete every member together; the gang is placed again whole.
- `Shrink` (elastic): drop lost members the gang's domain has no room for, farthest
  from the rest first, down to `minReplicas`; replace the others; grow back when room
  returns (`egpu.engines.repair.elastic`).
- `None`: report the fault, touch nothing.

A hung member (no progress for the hang timeout, `egpu.engines.repair.liveness`) is a
fault too: `RestartGang` restarts the gang, the other policies replace the hung
members; all resume from the last checkpoint.

Every repair spends one of `maxRestarts`; repairs are spaced by a doubling backoff.
The pods get SIGTERM and their grace period to checkpoint; the replacements get the
last checkpoint the members reported (the workload's checkpoint annotation) as their
resume point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from egpu.engines.repair.elastic import farthest_first
from egpu.engines.repair.liveness import Progress

# A member a repair (or a growth) created that has found no node this long has no room
# where it must go: ReplaceMember restarts the gang elsewhere, a grown-back rank is
# dropped again.
NO_ROOM_AFTER_S = 30.0
# After grown-back ranks found no room: the wait before growing again (the controller
# passes its EGPU_REPAIR_BACKOFF_MAX, whose default this is).
GROW_RETRY_AFTER_S = 300.0


class Action(StrEnum):
    NOTHING = "Nothing"
    REPORT = "Report"  # policy None: a condition and an Event, nothing deleted
    WAIT = "Wait"  # backoff: repair later
    REPLACE = "ReplaceMember"
    RESTART = "RestartGang"
    GIVE_UP = "GiveUp"  # retry budget spent: the workload is Failed
    WATCH = "Watch"  # members on GPUs at risk: moved at their next checkpoint
    MOVE = "Move"  # members on GPUs at risk just checkpointed: moved off now
    SHRINK = "Shrink"  # elastic: lost members dropped (not recreated) while no room
    GROW = "Grow"  # elastic: dropped ranks come back, room having returned


@dataclass(frozen=True, slots=True)
class MemberState:
    name: str
    rank: int
    uid: str
    node: str | None
    gpu_ids: tuple[int, ...] = ()
    deleting: bool = False
    finished: bool = False
    checkpoint: str | None = None
    pending_since: float | None = None  # when an unbound member was created
    domain: tuple[tuple[str, str], ...] = ()  # (topology level, value) where it is bound
    running: bool = False  # phase Running: its progress is watched
    progress: str | None = None  # its progress annotation (hang detection)
    progress_seen: Progress | None = None  # a hang clock recorded on it by a leader


@dataclass(frozen=True, slots=True)
class RepairRecord:
    """Kept on the workload (annotation egpu.io/repair), so a new leader knows it."""

    restarts: int = 0
    last_repair: float | None = None
    resume_from: str | None = None
    dropped: tuple[int, ...] = ()  # elastic: ranks shrunk away, not recreated until grown
    grown: tuple[int, ...] = ()  # elastic: ranks the last growth brought back
    grown_at: float | None = None  # when
    grow_failed_at: float | None = None  # when grown-back ranks found no room after all


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float = 10.0
    max_s: float = 300.0

    def delay(self, restarts: int) -> float:
        if restarts <= 0:
            return 0.0
        return float(min(self.max_s, self.base_s * 2 ** (restarts - 1)))


@dataclass(frozen=True, slots=True)
class RepairDecision:
    action: Action
    delete: tuple[str, ...] = ()  # member names
    affected: tuple[str, ...] = ()
    record: RepairRecord = RepairRecord()
    reason: str = ""
    message: str = ""
    retry_in: float | None = None


def affected_members(
    members: Sequence[MemberState],
    fenced: Mapping[str, frozenset[int]],
    lost_nodes: frozenset[str],
    asked: frozenset[str] = frozenset(),
) -> list[MemberState]:
    """Live members on a fenced GPU or a lost node. A member whose GPU ids are unknown
    counts as affected when its node has any fenced GPU (it cannot be ruled out).
    `asked`: UIDs already being deleted by an earlier repair."""
    out = []
    for m in members:
        if m.deleting or m.finished or m.node is None or m.uid in asked:
            continue
        bad = fenced.get(m.node, frozenset())
        if m.node in lost_nodes or (bad and (not m.gpu_ids or bad & set(m.gpu_ids))):
            out.append(m)
    return out


def resume_point(members: Sequence[MemberState], fallback: str | None) -> str | None:
    """The last checkpoint the members reported: rank 0's, else the lowest rank's."""
    for m in sorted(members, key=lambda m: m.rank):
        if m.checkpoint:
            return m.checkpoint
    return fallback


def _stuck_replacement(
    members: Sequence[MemberState], record: RepairRecord, now: float, after_s: float
) -> str | None:
    """A member created by the last repair that still has no node `after_s` later: its
    domain has no room left (ReplaceMember keeps it inside the running members')."""
    if record.last_repair is None:
        return None
    for m in sorted(members, key=lambda m: m.rank):
        if (
            m.node is None
            and not m.deleting
            and m.pending_since is not None
            and m.pending_since >= record.last_repair - 1
            and now - m.pending_since >= after_s
        ):
            return m.name
    return None


def _restart(
    members: Sequence[MemberState],
    asked: frozenset[str],
    max_restarts: int,
    record: RepairRecord,
    now: float,
    reason: str,
    why: str,
) -> RepairDecision:
    resume = resume_point(members, record.resume_from)
    new = RepairRecord(record.restarts + 1, now, resume, record.dropped)
    everyone = tuple(
        sorted(m.name for m in members if not m.deleting and not m.finished and m.uid not in asked)
    )
    return RepairDecision(
        Action.RESTART,
        delete=everyone,
        record=new,
        reason=reason,
        message=f"repair {new.restarts}/{max_restarts}: restarting all {len(everyone)} "
        f"members together elsewhere ({why})",
    )


def _where(
    m: MemberState,
    fenced: Mapping[str, frozenset[int]],
    lost: frozenset[str],
    hung: frozenset[str] = frozenset(),
) -> str:
    if m.uid in hung and not (m.node in lost or fenced.get(m.node or "")):
        return f"{m.name} on {m.node} hung (no progress)"
    if m.node in lost:
        return f"{m.name} on lost node {m.node}"
    bad = sorted(fenced.get(m.node or "", frozenset()) & set(m.gpu_ids)) or "?"
    return f"{m.name} on {m.node} GPU {bad}"


def decide_repair(
    policy: str,
    max_restarts: int,
    members: Sequence[MemberState],
    fenced: Mapping[str, frozenset[int]],
    lost_nodes: frozenset[str],
    record: RepairRecord,
    now: float,
    backoff: Backoff = Backoff(),
    asked: frozenset[str] = frozenset(),
    breaker_open: bool = False,
    escalate_after_s: float = NO_ROOM_AFTER_S,
    min_members: int | None = None,
    room: int = 0,
    hung: frozenset[str] = frozenset(),
) -> RepairDecision:
    """`min_members` and `room` (members the gang's domain has room for now) are for
    `Shrink`; `hung`: UIDs of members that stopped making progress."""
    faulty = affected_members(members, fenced, lost_nodes, asked)
    seen = {m.uid for m in faulty}
    stalled = [m for m in _live(members, asked) if m.node and m.uid in hung and m.uid not in seen]
    hit = faulty + stalled
    if not hit:
        stuck = _stuck_replacement(members, record, now, escalate_after_s)
        if (
            policy == "ReplaceMember"
            and stuck
            and not breaker_open
            and record.restarts < max_restarts
        ):
            why = f"{stuck} waited {escalate_after_s:.0f}s for room in the gang's domain"
            return _restart(members, asked, max_restarts, record, now, "GangRestartedNoRoom", why)
        return RepairDecision(Action.NOTHING, record=record)
    names = tuple(sorted(m.name for m in hit))
    where = "; ".join(
        _where(m, fenced, lost_nodes, hung) for m in sorted(hit, key=lambda m: m.rank)
    )
    only_hung = not faulty
    if policy == "None":
        return RepairDecision(
            Action.REPORT,
            affected=names,
            record=record,
            reason="Hung" if only_hung else "MemberOnUnhealthyGPU",
            message=f"repair policy None: {where}",
        )
    if breaker_open:
        return RepairDecision(
            Action.WAIT,
            affected=names,
            record=record,
            reason="RepairsPaused",
            message=f"the fencing circuit breaker is open; not repairing: {where}",
        )
    if record.restarts >= max_restarts:
        return RepairDecision(
            Action.GIVE_UP,
            affected=names,
            record=record,
            reason="RetryBudgetExhausted",
            message=f"{record.restarts} repairs of {max_restarts} allowed are spent: {where}",
        )
    if record.last_repair is not None:
        ready_at = record.last_repair + backoff.delay(record.restarts)
        if now < ready_at:
            return RepairDecision(
                Action.WAIT,
                affected=names,
                record=record,
                reason="RepairBackoff",
                message=f"next repair in {ready_at - now:.0f}s: {where}",
                retry_in=ready_at - now,
            )
    resume = resume_point(members, record.resume_from)
    new_record = RepairRecord(record.restarts + 1, now, resume, record.dropped)
    count = f"repair {new_record.restarts}/{max_restarts}"
    suffix = f", resuming from {resume}" if resume else ""
    if policy == "Shrink" and not only_hung:
        shrunk = _shrink(members, faulty, stalled, asked, min_members, room)
        if shrunk is not None:
            drop, kept = shrunk
            live = _live(members, asked)
            text = ", ".join(m.name for m in drop)
            replaced = f"; replacing {', '.join(m.name for m in kept)}" if kept else ""
            return RepairDecision(
                Action.SHRINK,
                delete=names,
                affected=names,
                record=replace(
                    new_record, dropped=tuple(sorted({*record.dropped, *(m.rank for m in drop)}))
                ),
                reason="Shrunk",
                message=f"{count}: shrinking from {len(live)} to {len(live) - len(drop)} "
                f"members, dropping {text} (no room in the gang's domain; farthest from the "
                f"rest first){replaced} ({where}){suffix}",
            )
    if policy == "RestartGang":
        everyone = tuple(
            sorted(
                m.name for m in members if not m.deleting and not m.finished and m.uid not in asked
            )
        )
        return RepairDecision(
            Action.RESTART,
            delete=everyone,
            affected=names,
            record=new_record,
            reason="Hung" if only_hung else "GangRestarted",
            message=f"{count}: restarting all {len(everyone)} members together ({where}){suffix}",
        )
    return RepairDecision(
        Action.REPLACE,
        delete=names,
        affected=names,
        record=new_record,
        reason="Hung" if only_hung else "MemberReplaced",
        message=f"{count}: replacing {len(names)} member(s) ({where}){suffix}",
    )


def _live(members: Sequence[MemberState], asked: frozenset[str]) -> list[MemberState]:
    return [m for m in members if not m.deleting and not m.finished and m.uid not in asked]


def _shrink(
    members: Sequence[MemberState],
    faulty: Sequence[MemberState],
    stalled: Sequence[MemberState],
    asked: frozenset[str],
    min_members: int | None,
    room: int,
) -> tuple[list[MemberState], list[MemberState]] | None:
    """(members to drop, members to replace) for `Shrink`; None: nothing to drop (at the
    minimum, or room for every lost member), a plain replacement."""
    live = _live(members, asked)
    hit = {m.uid for m in faulty} | {m.uid for m in stalled}
    rest = [m for m in live if m.uid not in hit]
    may_drop = max(0, len(live) - (min_members or len(live)))
    count = min(may_drop, max(0, len(faulty) - room))
    if count == 0:
        return None
    order = farthest_first(faulty, rest)
    return order[:count], order[count:] + list(stalled)


def decide_grow(
    wanted: int,
    record: RepairRecord,
    room: int,
    breaker_open: bool = False,
    now: float = 0.0,
    retry_after_s: float = GROW_RETRY_AFTER_S,
) -> RepairDecision:
    """An elastic workload shrunk by earlier repairs: its dropped ranks come back,
    lowest first, as far as its domain has room. Growing spends no retry budget. After
    grown-back ranks found no room after all, the next try waits `retry_after_s`."""
    dropped = tuple(r for r in record.dropped if r < wanted)
    if dropped != record.dropped and not dropped:  # scaled down below them: forget them
        return RepairDecision(
            Action.GROW,
            record=replace(record, dropped=()),
            reason="GrewBack",
            message=f"back at the wanted {wanted} members",
        )
    if not dropped:
        return RepairDecision(Action.NOTHING, record=record)
    current = wanted - len(dropped)
    held = record.grow_failed_at is not None and now < record.grow_failed_at + retry_after_s
    if breaker_open or room < 1 or held:
        when = (
            f"are tried again in {record.grow_failed_at + retry_after_s - now:.0f}s (they "
            "found no room when they last came back)"
            if held and record.grow_failed_at is not None
            else "come back when room returns in the gang's domain"
        )
        return RepairDecision(
            Action.NOTHING,
            record=record,
            reason="Shrunk",
            message=f"running {current} of {wanted} wanted members; ranks {list(dropped)} {when}",
        )
    back = tuple(sorted(dropped)[:room])
    left = tuple(r for r in dropped if r not in back)
    return RepairDecision(
        Action.GROW,
        record=replace(record, dropped=left, grown=back, grown_at=now),
        reason="GrewBack",
        message=f"room returned in the gang's domain: growing from {current} to "
        f"{current + len(back)} of {wanted} wanted members (ranks {list(back)})",
    )


def decide_regrow_stuck(
    members: Sequence[MemberState],
    record: RepairRecord,
    now: float,
    after_s: float = NO_ROOM_AFTER_S,
    retry_after_s: float = GROW_RETRY_AFTER_S,
) -> RepairDecision | None:
    """Ranks the last growth brought back that are still not placed `after_s` later
    (the room check counts GPUs only; the binder found no node for them after all):
    dropped again, their pending members deleted, and the next growth held back for
    `retry_after_s`. None: no such rank."""
    if not record.grown or record.grown_at is None:
        return None
    stuck = [
        m
        for m in members
        if m.rank in record.grown
        and m.node is None
        and not m.deleting
        and not m.finished
        and m.pending_since is not None
        and m.pending_since >= record.grown_at - 1
        and now - m.pending_since >= after_s
    ]
    if not stuck:
        return None
    ranks = sorted(m.rank for m in stuck)
    return RepairDecision(
        Action.SHRINK,
        delete=tuple(sorted(m.name for m in stuck)),
        affected=tuple(sorted(m.name for m in stuck)),
        record=replace(
            record,
            dropped=tuple(sorted({*record.dropped, *ranks})),
            grown=tuple(r for r in record.grown if r not in ranks),
            grow_failed_at=now,
        ),
        reason="GrowBackFailed",
        message=f"ranks {ranks} came back but found no room for {after_s:.0f}s (the room "
        f"check counts GPUs only): dropped again, next try in {retry_after_s:.0f}s",
    )


@dataclass(frozen=True, slots=True)
class MoveDecision:
    action: Action  # NOTHING, WATCH or MOVE
    delete: tuple[str, ...] = ()
    fence: Mapping[str, frozenset[int]] | None = None  # at-risk GPUs to fence with it
    watch: Mapping[str, str | None] | None = None  # member uid -> checkpoint when seen
    record: RepairRecord = RepairRecord()
    reason: str = ""
    message: str = ""


def decide_move(
    policy: str,
    max_restarts: int,
    members: Sequence[MemberState],
    at_risk: Mapping[str, frozenset[int]],
    watched: Mapping[str, str | None],
    record: RepairRecord,
    now: float,
    backoff: Backoff = Backoff(),
    asked: frozenset[str] = frozenset(),
    breaker_open: bool = False,
) -> MoveDecision:
    """Moving first: members on GPUs at risk are moved off at their next checkpoint,
    before the GPU fails. `watched`: member UID -> the checkpoint it had when its GPU
    was first seen at risk. A move spends the retry budget like a repair; without a
    checkpoint annotation (no way to see the next checkpoint), nothing is moved."""
    risky = affected_members(members, at_risk, frozenset(), asked)
    if not risky or policy == "None":
        return MoveDecision(Action.NOTHING, record=record)
    seen = {m.uid: watched.get(m.uid, m.checkpoint) for m in risky}
    fresh = [m for m in risky if m.uid in watched and m.checkpoint != watched[m.uid]]
    names = tuple(sorted(m.name for m in risky))
    if (
        not fresh
        or breaker_open
        or record.restarts >= max_restarts
        or (
            record.last_repair is not None
            and now < record.last_repair + backoff.delay(record.restarts)
        )
    ):
        return MoveDecision(
            Action.WATCH,
            watch=seen,
            record=record,
            reason="GPUAtRisk",
            message=f"{', '.join(names)} on GPUs at risk: moved at the next checkpoint",
        )
    fence: dict[str, frozenset[int]] = {}
    for m in risky:
        if m.node is not None:
            bad = at_risk.get(m.node, frozenset())
            fence[m.node] = fence.get(m.node, frozenset()) | (bad & set(m.gpu_ids) or bad)
    resume = resume_point(members, record.resume_from)
    new = RepairRecord(record.restarts + 1, now, resume, record.dropped)
    if policy == "RestartGang":
        delete = tuple(
            sorted(
                m.name for m in members if not m.deleting and not m.finished and m.uid not in asked
            )
        )
    else:
        delete = names
    return MoveDecision(
        Action.MOVE,
        delete=delete,
        fence=fence,
        record=new,
        reason="MovedBeforeFault",
        message=f"repair {new.restarts}/{max_restarts}: moving {', '.join(delete)} off GPUs "
        f"at risk after the checkpoint {resume}",
    )
