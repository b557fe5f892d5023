"""The autoscaling decision: the rules of the sibling modules, composed in a fixed order.

1. demand from the stable and panic windows, plus headroom for growth;
2. panic (burst on the short window) or stable sizing with the tolerance band;
3. damping: scale-down stabilisation and rate, scale-up cooldown and rate;
4. scale to zero after the idle period, or wake from zero on any demand;
5. floors (minReplicas, schedule, forecast), then the maxReplicas cap;
6. warm pool (promote first, refill after), sized up to the crowds remembered
   (burst memory), and the cluster-capacity cap.

With a tide (a profile learned from earlier cycles, tide.py) that the observation
agrees with, step 2-3 outside panic size for the peak the profile expects until a
replica asked for now is ready, up and down, without the stabilisation window; a
crowd the profile expects is no reason for a learned warm pool. When the observation
departs from the profile, the reactive rules above decide as if there were none.

In panic the backlog a surge builds is drained within the latency target on top of
the arrivals (backlog.py); the drain's surplus goes once the queue has (while a
request still waits, panic keeps every replica it has).

With an error budget (budget.py), every decision first counts the requests since the
last and those expected to have missed; outside panic it sizes for the percentile the
budget's standing allows (panic, the crowds burst memory records, and a rise no
agreeing tide foresaw stay sized for the objective's). While the tide profile agrees,
it sizes ahead of the rise, so the warm pool's floor is let go when what is left of
the budget covers what the warm pods could save a surprise (their rate for a cold
start); a learned pool is kept (spending.py).

With a GPU-hour budget for the warm pool (warm_budget.py), every decision counts what
the pool held beyond its floor since the last, and the pool learned from crowds is cut
to what the budget left pays for while the crowds are remembered; the floor never is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from egpu.engines.autoscaling import limits, panic, zero
from egpu.engines.autoscaling.backlog import BacklogPlan, backlog_plan
from egpu.engines.autoscaling.bursts import (
    burst_demand,
    crowd_replicas,
    learned_capacity,
    learned_pool,
    record_burst,
    remembered,
    worth_remembering,
)
from egpu.engines.autoscaling.capacity import cap_to_capacity
from egpu.engines.autoscaling.forecast import forecast_demand
from egpu.engines.autoscaling.model import (
    Burst,
    DailyLoadHistory,
    Decision,
    Demand,
    Floors,
    MetricKind,
    MetricSample,
    MetricWindow,
    Mode,
    Reason,
    ReasonCode,
    Recommendation,
    ScalerMemory,
    ScalerState,
    ScalingPolicy,
)
from egpu.engines.autoscaling.queueing import slots_and_rate
from egpu.engines.autoscaling.schedule import schedule_floor
from egpu.engines.autoscaling.sizing import METRIC_NOUN, Sizer, ceil_replicas
from egpu.engines.autoscaling.sizing import fmt as _fmt
from egpu.engines.autoscaling.spending import budget_view, stand_in_for_warm
from egpu.engines.autoscaling.tide import TideProfile, TideReading, expected_between, read_tide
from egpu.engines.autoscaling.warm_budget import (
    SECONDS_PER_HOUR,
    WarmBudgetCut,
    WarmBudgetPolicy,
    WarmLedger,
    account_warm,
    warm_budget_cut,
)
from egpu.engines.autoscaling.warm_pool import plan_pool
from egpu.engines.autoscaling.windows import (
    demand_of,
    growth_rate,
    last_demand_time,
    newest_demand,
    samples_in,
    window_average,
)


@dataclass(frozen=True)
class DemandEstimate:
    stable: float
    panic: float
    growth_per_s: float
    projected_stable: float
    newest: float  # the newest sample's demand: what panic sizes on when it is higher

    @property
    def burst(self) -> float:
        """Panic entry and sizing: the panic window's mean, or the newest sample when
        above it. A step in load shows in full in the newest sample and only 1/n of it
        in the mean of n samples, so on the mean alone frequent reads would enter panic
        later, and a service that grows a little each read (warm replicas promoted at
        once) might never enter it. Panic never scales down, so sizing on the newest
        costs nothing when the load is falling."""
        return max(self.panic, self.newest)


def projected_demand(average: float, growth_per_s: float, lead_s: float) -> float:
    """Headroom: the load expected `lead_s` from the window's centre, when growing.

    Falling load is not projected: shrinking ahead of time is the job of stabilisation.
    """
    return average + max(0.0, growth_per_s) * lead_s


def estimate_demand(
    policy: ScalingPolicy, window: MetricWindow, now: float
) -> DemandEstimate | None:
    """Window averages, growth, and demand projected past the time a new replica needs.

    A window average describes the load half a window ago, so the lead time is
    time-to-ready plus half the window. The panic estimate is not projected: during a
    burst the metric's growth is mostly backlog piling up while replicas start, and
    projecting it forward would compound the overshoot; panic sizing reacts to the
    burst itself and never scales down.
    """
    samples = window.samples
    drain_s = max(policy.time_to_ready_s, policy.panic_window_s)

    def demand(sample: MetricSample) -> float | None:
        return demand_of(sample, policy.metric, drain_s)

    stable = window_average(samples, demand, now, policy.stable_window_s)
    if stable is None:
        return None
    burst = window_average(samples, demand, now, policy.panic_window_s)
    burst = stable if burst is None else burst
    growth = growth_rate(samples, demand, now, policy.stable_window_s)
    ready_in = policy.time_to_ready_s
    newest = newest_demand(samples, demand, now, policy.panic_window_s)
    return DemandEstimate(
        stable=stable,
        panic=burst,
        growth_per_s=growth,
        projected_stable=projected_demand(stable, growth, ready_in + policy.stable_window_s / 2),
        newest=burst if newest is None else newest,
    )


def compute_floors(
    policy: ScalingPolicy, sizer: Sizer, now: float, history: DailyLoadHistory | None
) -> Floors:
    forecast_floor = 0
    if history is not None:
        expected = forecast_demand(
            history, now, policy.time_to_ready_s, policy.timezone, policy.forecast
        )
        if expected is not None:
            forecast_floor = sizer.replicas(expected)
    return Floors(
        min_replicas=policy.min_replicas,
        schedule=schedule_floor(policy.schedule, now, policy.timezone),
        forecast=forecast_floor,
    )


@dataclass(frozen=True)
class _Step:
    replicas: int
    code: ReasonCode
    message: str


def _stable_step(
    policy: ScalingPolicy,
    sizer: Sizer,
    est: DemandEstimate,
    state: ScalerState,
    now: float,
    history: tuple[Recommendation, ...],
) -> tuple[_Step, tuple[Recommendation, ...]]:
    """Stable-window sizing, tolerance band, then the damping of each direction."""
    current = state.current_replicas
    noun = METRIC_NOUN[policy.metric]
    exact = sizer.exact(est.projected_stable)
    wanted = ceil_replicas(exact)
    seen = f"{noun} {_fmt(est.stable)} over {_fmt(policy.stable_window_s)}s"
    if est.projected_stable > est.stable:
        seen += f", growing {_fmt(est.growth_per_s)}/s -> {_fmt(est.projected_stable)} expected"
    if wanted != current and limits.within_tolerance(exact, current, policy.tolerance):
        step = _Step(
            current,
            ReasonCode.TOLERANCE,
            f"{seen} needs {_fmt(exact)} replicas, within {policy.tolerance:.0%} of {current}",
        )
        return step, limits.remember(history, current, now, policy.scale_down_stabilization_s)
    history = limits.remember(history, wanted, now, policy.scale_down_stabilization_s)
    if wanted == current:
        return _Step(current, ReasonCode.HOLD, f"{seen} needs {current} replicas"), history
    if wanted < current:
        return _damp_down(policy, wanted, current, seen, now, history), history
    return _damp_up(policy, wanted, state, seen, now), history


def _damp_down(
    policy: ScalingPolicy,
    wanted: int,
    current: int,
    seen: str,
    now: float,
    history: tuple[Recommendation, ...],
) -> _Step:
    window = policy.scale_down_stabilization_s
    highest = limits.stabilized(history, now, window)
    target, code = wanted, ReasonCode.SCALE_DOWN
    message = f"{seen} needs {wanted} replicas"
    if highest is not None and highest > wanted:
        target, code = min(highest, current), ReasonCode.STABILIZING
        message += f"; held at {target}: highest recommendation in the last {_fmt(window)}s"
    floor = limits.scale_down_limit(current, policy.scale_down_max_rate)
    if target < floor:
        target, code = floor, ReasonCode.RATE_LIMITED
        message += f"; limited to {floor} by scale-down rate {_fmt(policy.scale_down_max_rate)}x"
    return _Step(target, code, message)


def _damp_up(
    policy: ScalingPolicy, wanted: int, state: ScalerState, seen: str, now: float
) -> _Step:
    current = state.current_replicas
    message = f"{seen} needs {wanted} replicas"
    last_up = state.memory.last_scale_up_at
    # Waking from zero is never delayed by the cooldown.
    if current > 0 and limits.in_cooldown(last_up, now, policy.scale_up_cooldown_s):
        assert last_up is not None
        until = last_up + policy.scale_up_cooldown_s
        return _Step(
            current, ReasonCode.COOLDOWN, f"{message}; scale-up cooling down until t={_fmt(until)}"
        )
    ceiling = limits.scale_up_limit(current, state.ready_replicas, policy.scale_up_max_rate)
    if wanted > ceiling:
        return _Step(
            ceiling,
            ReasonCode.RATE_LIMITED,
            f"{message}; limited to {ceiling} by scale-up rate {_fmt(policy.scale_up_max_rate)}x",
        )
    return _Step(wanted, ReasonCode.SCALE_UP, message)


def tide_reading(
    policy: ScalingPolicy,
    sizer: Sizer,
    est: DemandEstimate,
    profile: TideProfile | None,
    now: float,
) -> TideReading | None:
    """The tide profile's reading against the panic window's demand (None: no tide,
    or the coming span not learned yet)."""
    if policy.tide is None or profile is None:
        return None
    # Buckets are discrete: one more of look-ahead so a rise inside the next is seen.
    lead = policy.time_to_ready_s + policy.tide.bucket_s
    slack = replica_rate(policy, sizer)
    return read_tide(profile, policy.tide, now, lead, est.panic, policy.panic_window_s, slack)


def _tide_step(
    policy: ScalingPolicy,
    sizer: Sizer,
    est: DemandEstimate,
    state: ScalerState,
    reading: TideReading,
    now: float,
    history: tuple[Recommendation, ...],
) -> tuple[_Step, tuple[Recommendation, ...]]:
    """Size for the most the profile expects before a replica asked now is ready, or
    for what is observed when that is more; down as far at once (the scale-down rate
    still applies): the profile, not a stabilisation window, says the ebb is real."""
    current = state.current_replicas
    demand = max(reading.ahead, est.panic)
    wanted = sizer.replicas(demand)
    history = limits.remember(history, wanted, now, policy.scale_down_stabilization_s)
    seen = reading.describe()
    if wanted == current:
        return _Step(current, ReasonCode.HOLD, f"{seen}: needs {current} replicas"), history
    if wanted > current:
        up = _damp_up(policy, wanted, state, seen, now)
        code = ReasonCode.TIDE if up.code is ReasonCode.SCALE_UP else up.code
        return _Step(up.replicas, code, f"{up.message} ahead of the learned rise"), history
    floor = limits.scale_down_limit(current, policy.scale_down_max_rate)
    target = max(wanted, floor)
    message = f"{seen}: needs {wanted} replicas, releasing with the ebb"
    if target > wanted:
        message += f"; limited to {target} by scale-down rate {_fmt(policy.scale_down_max_rate)}x"
    return _Step(target, ReasonCode.TIDE, message), history


def untidal_bursts(
    policy: ScalingPolicy,
    sizer: Sizer,
    bursts: tuple[Burst, ...],
    profile: TideProfile | None,
    now: float,
) -> tuple[Burst, ...]:
    """The crowds the tide profile does not expect at that time of the cycle."""
    tide = policy.tide
    if tide is None or profile is None or not bursts:
        return bursts
    start = tide.cycle_of(now) * tide.period_s
    kept = []
    for burst in bursts:
        t0 = start + burst.started_at % tide.period_s
        t1 = t0 + max(0.0, burst.last_seen_at - burst.started_at)
        span = expected_between(profile, tide, t0, t1)
        expected = None if span is None else sizer.replicas(span[1] * (1.0 + tide.tolerance))
        if expected is None or expected < burst.peak_replicas:
            kept.append(burst)
    return tuple(kept)


def replica_rate(policy: ScalingPolicy, sizer: Sizer) -> float:
    """Requests per second one replica completes: slots / service time when measured,
    else the policy's per-replica target (LatencySLO's fallback rate)."""
    shape = slots_and_rate(sizer.service) if sizer.service is not None else None
    if policy.metric is MetricKind.LATENCY_SLO and shape is not None:
        slots, mu = shape
        return slots * mu
    return policy.target


def newest_sample(window: MetricWindow, now: float, length_s: float) -> MetricSample | None:
    recent = samples_in(window.samples, now, length_s)
    return recent[-1] if recent else None


def _panic_step(
    policy: ScalingPolicy,
    sizer: Sizer,
    est: DemandEstimate,
    state: ScalerState,
    ratio: float,
    now: float,
    history: tuple[Recommendation, ...],
    drain: BacklogPlan | None,
) -> tuple[_Step, tuple[Recommendation, ...], int]:
    """Panic sizing; also returns the panic's steady peak (its never-below floor).

    The floor is the highest steady size of this panic (at entry: the current count),
    so the backlog drain's surplus on top of it can go once the queue has.
    """
    current = state.current_replicas
    memory = state.memory
    floor = current
    if memory.panic_since is not None and memory.panic_peak_replicas is not None:
        floor = memory.panic_peak_replicas
    wanted = panic.panic_replicas(ceil_replicas(sizer.exact(est.burst)), floor)
    history = limits.remember(history, wanted, now, policy.scale_down_stabilization_s)
    drain_wanted = sizer.replicas(drain.demand) if drain is not None else 0
    sized = max(wanted, drain_wanted)
    if drain is not None and drain.queued >= 1.0:
        # The surplus goes once the queue has, not as it shrinks: shrunk with it, the
        # drain would slow as it nears the end and the last requests queued miss.
        sized = max(sized, current)
    ceiling = limits.scale_up_limit(current, state.ready_replicas, policy.scale_up_max_rate)
    target = min(sized, ceiling)
    noun = METRIC_NOUN[policy.metric]
    message = (
        f"panic: observed {noun} {_fmt(est.burst)} is {ratio:.1f}x the capacity of "
        f"{state.ready_replicas} ready replicas; scaling to {target}"
    )
    if est.newest > est.panic:
        message += (
            f" (the newest sample; the {_fmt(policy.panic_window_s)}s panic window's mean is "
            f"{_fmt(est.panic)})"
        )
    if drain is not None and drain_wanted > wanted:
        message += (
            f"; {wanted} serve the load, {drain_wanted} drain the backlog of "
            f"{_fmt(drain.projected)} requests expected when they are ready "
            f"({_fmt(drain.queued)} queued now) within {_fmt(drain.drain_s)}s"
        )
    if ratio < policy.panic_threshold:
        calm = f"{_fmt(policy.stable_window_s)}s below {policy.panic_threshold:g}x"
        message += f" (no scale-down until {calm})"
    if target < sized:
        message += f" (rate-limited from {sized})"
    return _Step(target, ReasonCode.PANIC, message), history, wanted


def _zero_step(
    policy: ScalingPolicy,
    step: _Step,
    state: ScalerState,
    window: MetricWindow,
    floors: Floors,
    last_demand_at: float,
    now: float,
) -> _Step:
    """Scale to zero once idle long enough; otherwise keep one; wake on any demand.

    At zero only fresh demand (in the panic window) wakes the service: demand that
    has already gone, though still in the stable window, is no reason to start one.
    """
    current = state.current_replicas
    idle = zero.idle_for(last_demand_at, now)
    if current == 0:
        if not zero.wake_signal(window.samples, now, policy.panic_window_s):
            return _Step(0, ReasonCode.HOLD, f"scaled to zero; no demand for {_fmt(idle)}s")
        if step.code is ReasonCode.PANIC:
            return step
        target = max(1, step.replicas)
        return _Step(target, ReasonCode.WAKE, f"demand while scaled to zero: waking {target}")
    if floors.highest == 0 and zero.idle_long_enough(
        last_demand_at, now, policy.scale_to_zero_idle_s
    ):
        return _Step(
            0,
            ReasonCode.SCALE_TO_ZERO,
            f"no demand for {_fmt(idle)}s (idle period {_fmt(policy.scale_to_zero_idle_s)}s)",
        )
    if step.replicas == 0 and floors.highest == 0:
        left = policy.scale_to_zero_idle_s - idle
        return _Step(1, ReasonCode.IDLE_WAIT, f"no demand for {_fmt(idle)}s; zero in {_fmt(left)}s")
    return step


def _floor_step(step: _Step, floors: Floors) -> _Step:
    if step.replicas >= floors.highest:
        return step
    if floors.forecast == floors.highest:
        code, what = ReasonCode.FORECAST_FLOOR, "forecast of the coming peak"
    elif floors.schedule == floors.highest:
        code, what = ReasonCode.SCHEDULE_FLOOR, "schedule"
    else:
        code, what = ReasonCode.MIN_REPLICAS, "minReplicas"
    return _Step(floors.highest, code, f"{what} floor {floors.highest}; {step.message}")


def _last_demand_at(memory: ScalerMemory, window: MetricWindow, now: float) -> float:
    seen = [memory.last_demand_at, last_demand_time(window.samples, now)]
    known = [t for t in seen if t is not None]
    # A fresh start counts as activity: the idle clock starts at the first decision.
    return max(known) if known else now


def rising(policy: ScalingPolicy, est: DemandEstimate) -> bool:
    """The projected load is beyond the tolerance band of the window's: a rise the
    reactive rules follow a cold start behind, which the objective's slack absorbs."""
    return est.projected_stable > est.stable * (1.0 + policy.tolerance)


def _learned_pool(
    policy: ScalingPolicy, bursts: tuple[Burst, ...], serving: int, now: float
) -> tuple[int, tuple[Burst, ...], str]:
    """The warm pool's size with burst memory, the crowds still remembered, and why."""
    if policy.warm_pool_max is None:
        return policy.warm_pool_size, (), ""
    learned = learned_capacity(bursts, now, policy.burst_memory_s)
    if learned is None:
        return policy.warm_pool_size, (), ""
    kept = remembered(bursts, now, policy.burst_memory_s)
    size = learned_pool(learned.replicas, serving, policy.warm_pool_size, policy.warm_pool_max)
    size = min(size, max(0, policy.max_replicas - serving))
    if size <= policy.warm_pool_size:
        return policy.warm_pool_size, kept, ""
    crowds = "1 crowd" if learned.bursts == 1 else f"{learned.bursts} crowds"
    note = (
        f"warm pool {size} (serving + warm {serving + size}): {crowds} seen, peak "
        f"{learned.replicas} replicas, remembered for {_fmt(learned.window_s)}s after the "
        f"last, until t={_fmt(learned.until)}"
    )
    if learned.replicas - serving > size:
        note += f" (ceiling warmPool.maxSize {policy.warm_pool_max})"
    return size, kept, note


def _budgeted_pool(
    policy: ScalingPolicy,
    state: ScalerState,
    bursts: tuple[Burst, ...],
    pool_size: int,
    now: float,
) -> tuple[int, WarmLedger, str]:
    """The warm pool cut to what its GPU-hour budget pays for, the budget's ledger
    brought up to date with what the pool held since the last decision, and why."""
    budget = policy.warm_budget
    ledger = state.memory.warm_spend
    if budget is None:
        return pool_size, ledger, ""
    floor = policy.warm_pool_size
    held = state.warm_replicas - floor
    ledger = account_warm(ledger, budget, now, held, policy.gpus_per_pod, policy.stable_window_s)
    learned = learned_capacity(bursts, now, policy.burst_memory_s)
    if pool_size <= floor or learned is None:
        return pool_size, ledger, ""
    learned_pods = pool_size - floor
    cut = warm_budget_cut(budget, ledger, learned_pods, policy.gpus_per_pod, learned.until, now)
    return floor + cut.kept, ledger, _describe_cut(budget, cut, floor)


def _describe_cut(budget: WarmBudgetPolicy, cut: WarmBudgetCut, floor: int) -> str:
    left_h = max(0.0, cut.left_gpu_seconds) / SECONDS_PER_HOUR
    standing = (
        f"GPU-hour budget {_fmt(left_h)} of {_fmt(budget.gpu_hours)} left for "
        f"{_fmt(budget.window_s / SECONDS_PER_HOUR)}h"
    )
    if cut.kept >= cut.learned:
        return f"{standing} pays for the {cut.learned} learned warm pods"
    if cut.kept <= 0:
        return (
            f"warm pool cut to {floor} (warmPool.size), none of {cut.learned} learned: {standing}"
        )
    until = (
        f"for the next {_fmt(budget.window_s / SECONDS_PER_HOUR)}h"
        if cut.hold_s >= budget.window_s
        else f"until the crowds are forgotten in {_fmt(cut.hold_s)}s"
    )
    return (
        f"warm pool cut to {floor + cut.kept}, {cut.kept} of {cut.learned} learned: {standing}, "
        f"enough for {cut.kept} {until}"
    )


def decide(
    policy: ScalingPolicy,
    window: MetricWindow,
    state: ScalerState,
    now: float,
    *,
    free_pod_slots: int | None = None,
    history: DailyLoadHistory | None = None,
    tide: TideProfile | None = None,
) -> Decision:
    """Desired serving and warm replicas for one service at `now`.

    `free_pod_slots`: how many more replica pods the cluster could place now (None =
    unknown, no cap). `history`: previous days' load for the forecast floor. `tide`:
    the profile learned of `policy.tide`'s cycle (the caller observes the demand).
    Pass `Decision.memory` back as `state.memory` next time.
    """
    strict = Sizer(policy, window.service)
    est = estimate_demand(policy, window, now)
    reading = tide_reading(policy, strict, est, tide, now) if est is not None else None
    tide_agrees = reading is not None and reading.agrees
    newest = newest_sample(window, now, policy.panic_window_s)
    spend = budget_view(policy, strict, newest, state, now)
    if not tide_agrees and est is not None and rising(policy, est):
        spend = replace(spend, percentile=policy.latency_percentile, held=True)
    sizer = strict
    if spend.percentile < policy.latency_percentile:
        sizer = Sizer(replace(policy, latency_percentile=spend.percentile), window.service)
    memory = state.memory
    current = state.current_replicas
    floors = compute_floors(policy, sizer, now, history)
    last_demand_at = _last_demand_at(memory, window, now)
    recs = memory.recommendations
    bursts = memory.bursts
    panic_peak: int | None = None
    if est is None:
        # Without data, never shrink or go to zero: the metrics pipeline may be down.
        status = panic.next_panic_status(
            False, now, memory.panic_since, memory.panic_last_triggered_at, policy.stable_window_s
        )
        step = _Step(
            current,
            ReasonCode.NO_METRICS,
            f"no samples in the last {_fmt(policy.stable_window_s)}s; holding {current}",
        )
        demand = Demand(0.0, 0.0, 0.0, 0.0)
    else:
        ratio = panic.panic_ratio(sizer.exact(est.burst), state.ready_replicas)
        status = panic.next_panic_status(
            ratio >= policy.panic_threshold,
            now,
            memory.panic_since,
            memory.panic_last_triggered_at,
            policy.stable_window_s,
        )
        if status.active:
            newest = newest_sample(window, now, policy.panic_window_s)
            drain = None
            if newest is not None:
                rate = replica_rate(policy, sizer)
                drain = backlog_plan(
                    policy, newest, state.ready_replicas, state.warm_replicas, rate
                )
                crowd = demand_of(newest, policy.metric, 0.0)
                if crowd is not None and status.since is not None:
                    size = crowd_replicas(
                        strict.exact(crowd),
                        strict.replicas(burst_demand(crowd)),
                        state.ready_replicas,
                        exact_signal=policy.metric is MetricKind.LATENCY_SLO,
                    )
                    if worth_remembering(size, policy.min_replicas):
                        bursts = record_burst(bursts, status.since, now, size)
            step, recs, panic_peak = _panic_step(
                policy, strict, est, state, ratio, now, recs, drain
            )
        else:
            if reading is not None and reading.agrees:
                step, recs = _tide_step(policy, sizer, est, state, reading, now, recs)
            else:
                step, recs = _stable_step(policy, sizer, est, state, now, recs)
                if reading is not None:
                    step = replace(step, message=f"{step.message}; {reading.describe()}")
        step = _zero_step(policy, step, state, window, floors, last_demand_at, now)
        projected = est.burst if status.active else est.projected_stable
        demand = Demand(est.stable, est.panic, est.growth_per_s, projected)

    step = _floor_step(step, floors)
    recommended = step.replicas
    serving = min(recommended, policy.max_replicas)
    notes: list[str] = []
    if recommended > policy.max_replicas:
        notes.append(f"capped at maxReplicas {policy.max_replicas} (wanted {recommended})")

    unexpected = untidal_bursts(policy, strict, bursts, tide, now)
    pool_size, kept, pool_note = _learned_pool(policy, unexpected, serving, now)
    if unexpected == bursts:
        bursts = kept
    else:
        # The tide profile expects some: they teach no pool, but stay remembered.
        bursts = remembered(bursts, now, policy.burst_memory_s) if policy.warm_pool_max else ()
        notes.append(f"crowds expected by the tide profile: {len(bursts) - len(unexpected)}")
    if pool_note:
        notes.append(pool_note)
    pool_size, warm_spend, cut_note = _budgeted_pool(policy, state, unexpected, pool_size, now)
    if cut_note:
        notes.append(cut_note)
    budget_note = spend.describe(policy)
    if budget_note:
        notes.append(budget_note)
    surprises = remembered(unexpected, now, policy.burst_memory_s)
    if tide_agrees and not status.active and not surprises:
        rate = replica_rate(policy, strict)
        stand_in = stand_in_for_warm(policy, spend, pool_size, rate)
        if stand_in:
            pool_size = 0
            notes.append(stand_in)
    plan = plan_pool(current, state.warm_replicas, serving, pool_size, policy.max_replicas)
    outcome = cap_to_capacity(plan, current, state.warm_replicas, free_pod_slots)
    plan = outcome.plan
    if outcome.serving_short:
        notes.append(
            f"cluster can place only {free_pod_slots} more pods: serving {plan.serving} "
            f"of {serving} wanted"
        )
    if outcome.warm_short:
        notes.append(f"warm pool short by {outcome.warm_short} for lack of capacity")
    if plan.promotions:
        notes.append(f"promoting {plan.promotions} warm replicas")

    message = step.message if not notes else f"{step.message}; " + "; ".join(notes)
    new_memory = ScalerMemory(
        last_scale_up_at=now if plan.serving > current else memory.last_scale_up_at,
        last_scale_down_at=now if plan.serving < current else memory.last_scale_down_at,
        panic_since=status.since,
        panic_last_triggered_at=status.last_triggered_at,
        last_demand_at=last_demand_at,
        recommendations=recs,
        panic_peak_replicas=panic_peak if status.active else None,
        bursts=bursts,
        budget=spend.ledger,
        warm_spend=warm_spend,
    )
    return Decision(
        serving_replicas=plan.serving,
        warm_replicas=plan.warm,
        mode=Mode.PANIC if status.active else Mode.STABLE,
        reason=Reason(step.code, message),
        promotions=plan.promotions,
        demotions=plan.demotions,
        capacity_limited=outcome.limited,
        capped_at_max=recommended > policy.max_replicas,
        recommended_replicas=recommended,
        demand=demand,
        floors=floors,
        memory=new_memory,
        learned_warm=max(0, pool_size - policy.warm_pool_size),
    )


def decider(
    policy: ScalingPolicy,
    window: MetricWindow,
    state: ScalerState,
    now: float,
    free_pod_slots: int | None = None,
    history: DailyLoadHistory | None = None,
    tide: TideProfile | None = None,
) -> Callable[[float | None], Decision]:
    """This moment's decision as a function of the time to ready it plans with (None:
    the policy's own): what a start-path plan tries one path, then another, with."""

    def decide_with(time_to_ready_s: float | None) -> Decision:
        lead = policy
        if time_to_ready_s is not None:
            lead = replace(policy, time_to_ready_s=time_to_ready_s)
        return decide(
            lead, window, state, now, free_pod_slots=free_pod_slots, history=history, tide=tide
        )

    return decide_with
