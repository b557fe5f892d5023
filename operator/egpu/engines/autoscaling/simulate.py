"""A small discrete, fluid simulation of one inference service driven by `decide`.

Pure: time advances only through the arguments. Requests are a fluid: each tick
`offered_rps x dt` arrive, ready replicas complete up to `slots / service_time`
requests per second each, and the rest waits in one FIFO queue in front of the
service (the router). Replicas become ready `cold_start_s` after they are asked
for, or `warm_start_s` after a warm standby is promoted. Meant for unit tests of
whole-loop behaviour (flash crowds, tidal days) and for the autoscaling benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from egpu.domain.labels import StartPath
from egpu.engines.autoscaling.decide import decider
from egpu.engines.autoscaling.model import (
    DailyLoadHistory,
    Decision,
    MetricKind,
    MetricSample,
    MetricWindow,
    ScalerMemory,
    ScalerState,
    ScalingPolicy,
    ServiceStats,
)
from egpu.engines.autoscaling.tide import TideProfile, empty_profile, observe
from egpu.engines.inference.start_paths import CACHED, COLD, decide_on_path, recorded


@dataclass(frozen=True)
class ServiceModel:
    """How one replica behaves. `tokens_per_request` only feeds the TokensPerSecond metric."""

    service_time_s: float = 1.0
    slots_per_replica: int = 8
    cold_start_s: float = 60.0
    warm_start_s: float = 2.0
    # A new pod on a node that holds its image and model (the Cached start path): its
    # time to ready there. None: every new pod takes cold_start_s.
    cached_start_s: float | None = None
    tokens_per_request: float = 200.0

    def start_s(self, cached: bool) -> float:
        if cached and self.cached_start_s is not None:
            return self.cached_start_s
        return self.cold_start_s

    @property
    def replica_rps(self) -> float:
        return self.slots_per_replica / self.service_time_s

    def stats(self) -> ServiceStats:
        return ServiceStats(self.service_time_s, self.replica_rps)


@dataclass(frozen=True)
class SimState:
    """Ready-at times of serving and warm replicas (ready once <= time), and the queue."""

    time: float
    serving: tuple[float, ...] = ()
    warm: tuple[float, ...] = ()
    queue: float = 0.0

    def ready(self) -> int:
        return sum(1 for t in self.serving if t <= self.time)


@dataclass(frozen=True)
class Tick:
    """What one tick looked like from outside."""

    time: float
    offered_rps: float
    served_rps: float
    queue: float
    in_flight: float
    latency_s: float
    ready: int
    serving: int
    warm: int


def step(
    state: SimState, offered_rps: float, dt: float, model: ServiceModel
) -> tuple[SimState, Tick]:
    """Advance the fluid queue by dt with the replicas ready at the start of the tick."""
    ready = state.ready()
    capacity_rps = ready * model.replica_rps
    arrived = max(0.0, offered_rps) * dt
    served = min(state.queue + arrived, capacity_rps * dt)
    queue = state.queue + arrived - served
    served_rps = served / dt
    # Little's law for the requests in service, plus those queued at the router.
    in_flight = served_rps * model.service_time_s + queue
    latency = model.service_time_s + (queue / capacity_rps if capacity_rps > 0 else math.inf)
    after = replace(state, time=state.time + dt, queue=queue)
    tick = Tick(
        time=state.time,
        offered_rps=offered_rps,
        served_rps=served_rps,
        queue=queue,
        in_flight=in_flight,
        latency_s=latency,
        ready=ready,
        serving=len(state.serving),
        warm=len(state.warm),
    )
    return after, tick


def metric_value(tick: Tick, metric: MetricKind, model: ServiceModel) -> float:
    """The sample a metrics reader would report for this tick."""
    if metric is MetricKind.QUEUE_LENGTH:
        return tick.queue
    if metric is MetricKind.TOKENS_PER_SECOND:
        return tick.served_rps * model.tokens_per_request
    if metric is MetricKind.GPU_UTILIZATION:
        return tick.served_rps * model.service_time_s / model.slots_per_replica
    return tick.in_flight


def apply_decision(
    state: SimState,
    decision: Decision,
    model: ServiceModel,
    cached_pods: int = 0,
    started: Callable[[bool, float], None] | None = None,
) -> SimState:
    """Make the decision true: promote warm first, start new pods, trim, refill the pool.

    New pods start on the Cached path while fewer than `cached_pods` pods live (the
    binder fills the nodes holding the artefacts first; the newest pods go first on the
    way down, so the pods on them are the ones kept); `started(cached, seconds)` hears
    of each new pod's path and time to ready, as the controller measures them."""
    now = state.time
    serving = sorted(state.serving)
    warm = sorted(state.warm)
    want = decision.serving_replicas

    def start() -> float:
        cached = len(serving) + len(warm) < cached_pods
        seconds = model.start_s(cached)
        if started is not None:
            started(cached, seconds)
        return now + seconds

    for _ in range(min(decision.promotions, len(warm), max(0, want - len(serving)))):
        loaded_at = warm.pop(0)
        serving.append(max(loaded_at, now) + model.warm_start_s)
    while len(serving) < want:
        serving.append(start())
    serving.sort()
    demoted = 0
    while len(serving) > want:
        gone = serving.pop()  # the newest (least ready) goes first
        if demoted < decision.demotions and gone <= now:
            warm.append(gone)
            demoted += 1
    while len(warm) < decision.warm_replicas:
        warm.append(start())
    warm.sort()
    del warm[decision.warm_replicas :]
    return replace(state, serving=tuple(serving), warm=tuple(warm))


@dataclass(frozen=True)
class SimConfig:
    tick_s: float = 1.0
    decision_interval_s: float = 2.0
    max_pods: int | None = None  # cluster room for this service's pods; None = unlimited
    # Pods of this service the nodes holding its artefacts can take (with
    # ServiceModel.cached_start_s): new pods start Cached up to it, then Cold.
    cached_pods: int = 0
    # Plan each decision with the time to ready of the path its new pods get, measured
    # per path (the controller's start paths); False: with the p90 over all pods, as a
    # controller that measures one path would.
    plan_start_paths: bool = True


@dataclass
class SimRun:
    ticks: list[Tick] = field(default_factory=list)
    decisions: list[tuple[float, Decision]] = field(default_factory=list)

    def replica_seconds(self, tick_s: float) -> float:
        """Pods held (serving, starting and warm) x time: the GPU cost."""
        return sum((t.serving + t.warm) * tick_s for t in self.ticks)

    def slo_attainment(self, latency_target_s: float) -> float:
        """Share of offered requests whose (fluid) latency met the target."""
        offered = sum(t.offered_rps for t in self.ticks)
        if offered == 0:
            return 1.0
        met = sum(t.offered_rps for t in self.ticks if t.latency_s <= latency_target_s)
        return met / offered


def run(
    policy: ScalingPolicy,
    offered_rps: Sequence[float],
    model: ServiceModel,
    config: SimConfig = SimConfig(),
    *,
    start: float = 0.0,
    initial_serving: int = 1,
    history: DailyLoadHistory | None = None,
) -> SimRun:
    """Drive the service through a trace of offered load, one value per tick."""
    sim = SimState(time=start, serving=(start,) * initial_serving)
    memory = ScalerMemory()
    samples: list[MetricSample] = []
    result = SimRun()
    next_decision = start
    keep_s = policy.stable_window_s + config.tick_s
    tide: TideProfile | None = None if policy.tide is None else empty_profile(policy.tide)
    ready_times: dict[StartPath, tuple[float, ...]] = {}
    starting: list[tuple[float, StartPath, float]] = []  # (ready at, path, seconds)

    def measure(cached: bool, seconds: float) -> None:
        path = CACHED if cached and config.plan_start_paths else COLD
        starting.append((sim.time + seconds, path, seconds))

    for load in offered_rps:
        sim, tick = step(sim, load, config.tick_s, model)
        result.ticks.append(tick)
        for _, path, seconds in [s for s in starting if s[0] <= sim.time]:
            ready_times = recorded(ready_times, path, seconds)  # measured once Ready
        starting[:] = [s for s in starting if s[0] > sim.time]
        value = metric_value(tick, policy.metric, model)
        samples.append(MetricSample(sim.time, value, tick.ready, load, tick.queue))
        if tide is not None and policy.tide is not None:
            # What the controller records: the arrival rate for LatencySLO, else the metric.
            demand = load if policy.metric is MetricKind.LATENCY_SLO else value
            tide = observe(tide, policy.tide, sim.time, demand)
        samples = [s for s in samples if s.timestamp > sim.time - keep_s]
        if sim.time + 1e-9 < next_decision:
            continue
        next_decision = sim.time + config.decision_interval_s
        state = ScalerState(len(sim.serving), sim.ready(), len(sim.warm), memory)
        free = None
        if config.max_pods is not None:
            free = max(0, config.max_pods - len(sim.serving) - len(sim.warm))
        decide_with = decider(
            policy,
            MetricWindow(tuple(samples), model.stats()),
            state,
            sim.time,
            free,
            history,
            tide,
        )

        if model.cached_start_s is None:
            decision = decide_with(None)
        else:
            live = len(sim.serving) + len(sim.warm)
            _, decision = decide_on_path(
                decide_with,
                ready_times,
                config.plan_start_paths,
                max(0, config.cached_pods - live),
                live,
            )
        memory = decision.memory
        result.decisions.append((sim.time, decision))
        sim = apply_decision(sim, decision, model, config.cached_pods, measure)
    return result


def step_load(base: float, peak: float, at_tick: int, ticks: int) -> list[float]:
    """A flash crowd: `base` until `at_tick`, then `peak` (reached within one tick)."""
    return [base if i < at_tick else peak for i in range(ticks)]


def first_tick_with_capacity(
    ticks: Iterable[Tick], needed_rps: float, model: ServiceModel, after: float
) -> float | None:
    """Time of the first tick at or after `after` whose ready replicas carry `needed_rps`."""
    for tick in ticks:
        if tick.time >= after and tick.ready * model.replica_rps >= needed_rps:
            return tick.time
    return None
