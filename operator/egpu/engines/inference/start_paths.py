"""Start paths: how a replica comes into service, measured apart, and the one planned for.

- Warm: a standby pod of the warm pool promoted (a relabel: seconds or less).
- Cached: a new pod on a node that already holds every artefact the service names (its
  image in the kubelet's list, its model files in the node's cache annotation).
- Cold: a new pod on any other node, or of a service that names no artefacts.

The binder marks the path of each new pod it binds; the controller measures each
path's time to ready (creation to Ready; promotion sent to promotion seen for Warm) and
keeps the recent ones. The autoscaler's lead time (headroom, backlog growth, forecast)
is the time to ready of the path its next pods get: Cached while the nodes holding the
artefacts have room for all of them, else Cold, since the last pod of a scale-up is
what the crowd waits for. Promotions need no lead time: the engine counts warm pods as
ready already.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from egpu.domain.labels import START_PATH_CACHED, START_PATH_COLD, START_PATH_WARM, StartPath
from egpu.engines.autoscaling.model import Decision

WARM: Final[StartPath] = START_PATH_WARM
CACHED: Final[StartPath] = START_PATH_CACHED
COLD: Final[StartPath] = START_PATH_COLD
PATHS: Final[tuple[StartPath, ...]] = (WARM, CACHED, COLD)

# Recent measurements kept per path: enough for a stable p90, few enough to follow a
# change (a new image, a bigger model).
SAMPLES_PER_PATH: Final = 16


def path_of(annotation: str | None) -> StartPath:
    """The path the binder marked on a new pod; unmarked (no artefacts named): Cold."""
    return CACHED if annotation == CACHED else COLD


def p90(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def recorded(
    times: Mapping[StartPath, Sequence[float]], path: StartPath, seconds: float
) -> dict[StartPath, tuple[float, ...]]:
    """`times` with one more measurement of `path`, the oldest beyond the cap dropped."""
    out = {p: tuple(v) for p, v in times.items()}
    out[path] = (*out.get(path, ()), seconds)[-SAMPLES_PER_PATH:]
    return out


@dataclass(frozen=True)
class StartPlan:
    """The path the next new pods get and its time to ready (None: nothing measured)."""

    path: StartPath
    time_to_ready_s: float | None
    cached_room: int | None  # pods of its shape the Cached nodes could take now

    @property
    def headline(self) -> str:
        return f"new pods start {self.path}"

    def describe(self) -> str:
        took = "not measured yet"
        if self.time_to_ready_s is not None:
            took = f"{self.time_to_ready_s:.3g}s"
        if self.cached_room is None:
            return f"{self.headline} ({took})"
        return (
            f"{self.headline} ({took}; room for {self.cached_room} on nodes holding the artefacts)"
        )


def plan_start(
    times: Mapping[StartPath, Sequence[float]],
    names_artefacts: bool,
    cached_room: int | None,
    new_pods: int,
) -> StartPlan:
    """The path `new_pods` new pods would get, with the time to ready to plan with.

    A path not measured yet borrows the other new-pod path's time: a first guess, which
    the first pod that takes it replaces.
    """
    cached, cold = p90(times.get(CACHED, ())), p90(times.get(COLD, ()))
    if not names_artefacts:
        return StartPlan(COLD, cold if cold is not None else cached, None)
    room = None if cached_room is None else max(0, cached_room)
    if room is not None and 0 < max(1, new_pods) <= room:
        return StartPlan(CACHED, cached if cached is not None else cold, room)
    return StartPlan(COLD, cold if cold is not None else cached, room)


def decide_on_path(
    decide_with: Callable[[float | None], Decision],
    times: Mapping[StartPath, Sequence[float]],
    names_artefacts: bool,
    cached_room: int | None,
    live_pods: int,
) -> tuple[StartPlan, Decision]:
    """Decide with the time to ready of the path the new pods get.

    `decide_with(t)` is the engine's decision planned with time to ready `t` (None: the
    policy's own). First planned with the path of the first new pod; when that decision
    starts more pods than the Cached nodes can take, the last of them start Cold and the
    crowd waits for them: decided again with the Cold path's time.
    """
    plan = plan_start(times, names_artefacts, cached_room, 1)
    decision = decide_with(plan.time_to_ready_s)
    starting = decision.serving_replicas + decision.warm_replicas - live_pods
    if starting > 1 and plan.path == CACHED:
        colder = plan_start(times, names_artefacts, cached_room, starting)
        if colder.path != plan.path:
            return colder, decide_with(colder.time_to_ready_s)
    return plan, decision


def measured_paths(
    times: Mapping[StartPath, Sequence[float]],
) -> list[tuple[StartPath, float, int]]:
    """(path, p90 seconds, samples) for each path measured, in PATHS order."""
    out = []
    for path in PATHS:
        values = times.get(path, ())
        value = p90(values)
        if value is not None:
            out.append((path, value, len(values)))
    return out
