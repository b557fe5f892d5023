"""A GPUInferenceService's spec and status, in the autoscaling engine's terms.

The API speaks Kubernetes (duration strings, quantities, percentiles in percent,
cron and HH:MM windows, RFC 3339 times); the engine speaks floats of seconds and
fractions. Everything here is a pure function, unit-tested on its own.

Cron windows: the engine's schedule entries are daily time-of-day ranges on some
weekdays, so a cron expression is supported when it names a minute, some hours and
some weekdays: `M H * * DOW` with a single minute, an hour field of `*`, numbers,
lists, ranges or steps, day-of-month and month `*`, and a weekday field of the same
forms (0-7 or SUN-SAT). @daily, @midnight, @weekly and @hourly work; @monthly,
@yearly and specific days of the month do not, and are reported as invalid.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence

from egpu.api.inference import (
    GPUInferenceServiceSpec,
    LatencySLO,
    ScalerBudgetSlice,
    ScalerBurst,
    ScalerRecommendation,
    ScalerStartPath,
    ScalerStatus,
    ScalerWarmSlice,
    ScheduleWindow,
    Tide,
    TideStatus,
    WarmPool,
)
from egpu.domain.duration import parse_duration
from egpu.domain.labels import StartPath
from egpu.domain.quantity import parse_quantity
from egpu.engines.autoscaling import (
    MetricKind,
    Recommendation,
    ScalerMemory,
    ScalingPolicy,
    ScheduleEntry,
    ServiceStats,
)
from egpu.engines.autoscaling.budget import BudgetLedger, BudgetPolicy, BudgetSlice
from egpu.engines.autoscaling.bursts import MAX_BURSTS
from egpu.engines.autoscaling.model import SECONDS_PER_DAY, Burst
from egpu.engines.autoscaling.tide import TideBucket, TidePolicy, TideProfile
from egpu.engines.autoscaling.warm_budget import WarmBudgetPolicy, WarmLedger, WarmSlice
from egpu.engines.inference.start_paths import measured_paths

# Before any pod has been seen going from created to Ready.
DEFAULT_TIME_TO_READY_S = 30.0
# A LatencySLO service with no service time known yet sizes on this request rate per replica.
FALLBACK_REPLICA_RPS = 1.0
MAX_REMEMBERED_RECOMMENDATIONS = 64
# The status's bound on the error budget's and warm pool budget's slices (the ledgers
# keep fewer).
MAX_BUDGET_SLICES = 16


def quantity_value(text: str) -> float:
    return float(parse_quantity(text))


# --- cron windows -------------------------------------------------------------------

_MACROS = {
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@hourly": "0 * * * *",
}
_DAY_NAMES = {name: i for i, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}


def _cron_values(field: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int]:
    """Values of one cron field: `*`, `?`, numbers, names, lists, ranges and /steps."""
    values: set[int] = set()

    def number(token: str) -> int:
        if names and token.upper() in names:
            return names[token.upper()]
        if not token.isdigit():
            raise ValueError(f"{token!r} is not a number")
        value = int(token)
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low}-{high}")
        return value

    for part in field.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step_text and (not step_text.isdigit() or step < 1):
            raise ValueError(f"bad step in {part!r}")
        if body in ("*", "?"):
            first, last = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            first, last = number(a), number(b)
        else:
            first = number(body)
            last = high if step_text else first
        if first > last:
            raise ValueError(f"range {part!r} runs backwards")
        values.update(range(first, last + 1, step))
    return values


def cron_entries(cron: str, duration_s: float, min_replicas: int) -> list[ScheduleEntry]:
    """The daily ranges a cron window covers (UTC); ValueError when it is not daily/weekly."""
    expression = _MACROS.get(cron.strip(), cron.strip())
    if expression.startswith("@"):
        raise ValueError(
            f"cron {cron!r}: only @daily, @midnight, @weekly and @hourly are supported"
        )
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"cron {cron!r} needs five fields")
    minute, hour, day_of_month, month, weekday = fields
    if day_of_month not in ("*", "?") or month not in ("*", "?"):
        raise ValueError(
            f"cron {cron!r}: day-of-month and month must be '*' (windows repeat daily or weekly)"
        )
    if not minute.isdigit() or not 0 <= int(minute) <= 59:
        raise ValueError(f"cron {cron!r}: the minute must be one number 0-59")
    if duration_s <= 0:
        raise ValueError(f"cron {cron!r}: the duration must be longer than 0s")
    try:
        hours = sorted(_cron_values(hour, 0, 23))
        cron_days = _cron_values(weekday, 0, 7, _DAY_NAMES)
    except ValueError as exc:
        raise ValueError(f"cron {cron!r}: {exc}") from None
    # cron: 0 and 7 are Sunday; the engine: 0 is Monday.
    days = frozenset((d - 1) % 7 for d in cron_days)
    weekdays = None if days == frozenset(range(7)) else days
    span = min(duration_s, SECONDS_PER_DAY)
    entries = []
    for h in hours:
        start = h * 3600 + int(minute) * 60
        end = start if span >= SECONDS_PER_DAY else int(start + span) % SECONDS_PER_DAY
        entries.append(ScheduleEntry(start, end, min_replicas, weekdays))
    return entries


def schedule_entries(windows: Iterable[ScheduleWindow]) -> tuple[ScheduleEntry, ...]:
    entries: list[ScheduleEntry] = []
    for window in windows:
        if window.cron is not None:
            assert window.duration is not None  # the CRD's CEL rules pair them
            entries += cron_entries(
                window.cron, parse_duration(window.duration), window.min_replicas
            )
        elif window.start is not None and window.end is not None:
            entries.append(ScheduleEntry.from_hhmm(window.start, window.end, window.min_replicas))
    return tuple(entries)


# --- the policy ---------------------------------------------------------------------


def declared_service_stats(spec: GPUInferenceServiceSpec) -> ServiceStats | None:
    """Service stats from the LatencySLO's profile, when it gives a service time."""
    slo = spec.scaling.latency_slo
    if slo is None or slo.service_time is None:
        return None
    service_time = parse_duration(slo.service_time)
    if service_time <= 0:
        return None
    return ServiceStats(service_time, slo.concurrency_per_replica / service_time)


def scaling_policy(
    spec: GPUInferenceServiceSpec, time_to_ready_s: float | None = None
) -> ScalingPolicy:
    """The engine's policy for a validated spec. Raises ValueError on what the CRD's
    schema cannot refuse (an unsupported cron, a window longer than allowed)."""
    scaling, behavior = spec.scaling, spec.behavior
    metric = MetricKind(scaling.metric)
    latency_target = None
    percentile = 0.95
    if metric is MetricKind.LATENCY_SLO:
        assert scaling.latency_slo is not None  # the CRD's CEL rules require it
        latency_target = parse_duration(scaling.latency_slo.target)
        percentile = scaling.latency_slo.percentile / 100.0
        stats = declared_service_stats(spec)
        target = FALLBACK_REPLICA_RPS
        if stats is not None and stats.replica_throughput_rps is not None:
            target = stats.replica_throughput_rps
    else:
        assert scaling.target is not None
        target = quantity_value(scaling.target)
    stable = parse_duration(behavior.stable_window)
    to_zero = behavior.scale_to_zero_after
    return ScalingPolicy(
        metric=metric,
        target=target,
        max_replicas=spec.max_replicas,
        min_replicas=spec.min_replicas,
        latency_target_s=latency_target,
        latency_percentile=percentile,
        stable_window_s=stable,
        panic_window_s=parse_duration(behavior.panic_window),
        panic_threshold=behavior.panic_threshold,
        scale_up_max_rate=behavior.scale_up.max_rate,
        scale_up_cooldown_s=parse_duration(behavior.scale_up.cooldown),
        scale_down_max_rate=behavior.scale_down.max_rate,
        scale_down_stabilization_s=parse_duration(behavior.scale_down.stabilization_window),
        scale_to_zero_idle_s=parse_duration(to_zero) if to_zero else stable,
        warm_pool_size=spec.warm_pool.size,
        warm_pool_max=spec.warm_pool.max_size,
        burst_memory_s=parse_duration(spec.warm_pool.burst_memory),
        schedule=schedule_entries(spec.schedule or ()),
        time_to_ready_s=DEFAULT_TIME_TO_READY_S if time_to_ready_s is None else time_to_ready_s,
        tide=tide_policy(spec.tide) if spec.tide is not None else None,
        error_budget=budget_policy(scaling.latency_slo),
        gpus_per_pod=spec.gpus_per_pod,
        warm_budget=warm_budget_policy(spec.warm_pool),
    )


def budget_policy(slo: LatencySLO | None) -> BudgetPolicy | None:
    if slo is None or slo.error_budget is None:
        return None
    return BudgetPolicy(
        window_s=parse_duration(slo.error_budget.window),
        loosest_percentile=slo.error_budget.loosest_percentile / 100.0,
    )


def warm_budget_policy(pool: WarmPool) -> WarmBudgetPolicy | None:
    if pool.budget is None:
        return None
    return WarmBudgetPolicy(
        gpu_hours=pool.budget.gpu_hours, window_s=parse_duration(pool.budget.window)
    )


def tide_policy(tide: Tide) -> TidePolicy:
    return TidePolicy(
        period_s=parse_duration(tide.period),
        buckets=tide.buckets,
        learning_rate=tide.learning_rate,
        tolerance=tide.tolerance,
    )


# --- the engine's memory in the status ---------------------------------------------


def _to_time(value: float | None) -> dt.datetime | None:
    if value is None or not math.isfinite(value):
        return None
    return dt.datetime.fromtimestamp(value, dt.UTC)


def _from_time(value: dt.datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def memory_to_status(memory: ScalerMemory, time_to_ready_s: float | None) -> ScalerStatus:
    # The engine keeps the list short (strictly falling); the cap only guards the schema.
    recommendations = sorted(memory.recommendations, key=lambda r: r.timestamp)
    recommendations = recommendations[-MAX_REMEMBERED_RECOMMENDATIONS:]
    return ScalerStatus(
        last_scale_up_time=_to_time(memory.last_scale_up_at),
        last_scale_down_time=_to_time(memory.last_scale_down_at),
        panic_since=_to_time(memory.panic_since),
        panic_last_triggered_time=_to_time(memory.panic_last_triggered_at),
        last_demand_time=_to_time(memory.last_demand_at),
        recommendations=[
            ScalerRecommendation(
                time=dt.datetime.fromtimestamp(r.timestamp, dt.UTC), replicas=r.replicas
            )
            for r in recommendations
        ],
        time_to_ready_seconds=time_to_ready_s,
        panic_peak_replicas=memory.panic_peak_replicas,
        bursts=[
            ScalerBurst(
                start_time=dt.datetime.fromtimestamp(b.started_at, dt.UTC),
                last_seen_time=dt.datetime.fromtimestamp(b.last_seen_at, dt.UTC),
                replicas=b.peak_replicas,
            )
            for b in memory.bursts[-MAX_BURSTS:]
        ],
        budget_counted_time=_to_time(memory.budget.accounted_until),
        budget_slices=[
            ScalerBudgetSlice(
                start_time=dt.datetime.fromtimestamp(s.start, dt.UTC),
                requests=round(s.offered, 3),
                missed=round(s.missed, 3),
            )
            for s in memory.budget.slices[-MAX_BUDGET_SLICES:]
        ],
        warm_budget_counted_time=_to_time(memory.warm_spend.accounted_until),
        warm_budget_slices=[
            ScalerWarmSlice(
                start_time=dt.datetime.fromtimestamp(s.start, dt.UTC),
                gpu_seconds=round(s.gpu_seconds, 3),
            )
            for s in memory.warm_spend.slices[-MAX_BUDGET_SLICES:]
        ],
    )


def memory_from_status(status: ScalerStatus | None) -> ScalerMemory:
    if status is None:
        return ScalerMemory()
    recommendations: list[Recommendation] = []
    for r in status.recommendations:
        stamp = _from_time(r.time)
        if stamp is not None:
            recommendations.append(Recommendation(stamp, r.replicas))
    bursts: list[Burst] = []
    for b in status.bursts:
        start, seen = _from_time(b.start_time), _from_time(b.last_seen_time)
        if start is not None and seen is not None:
            bursts.append(Burst(start, b.replicas, seen))
    slices: list[BudgetSlice] = []
    for s in status.budget_slices:
        start = _from_time(s.start_time)
        if start is not None:
            slices.append(BudgetSlice(start, s.requests, s.missed))
    budget = BudgetLedger(tuple(slices), _from_time(status.budget_counted_time))
    warm_slices: list[WarmSlice] = []
    for w in status.warm_budget_slices:
        start = _from_time(w.start_time)
        if start is not None:
            warm_slices.append(WarmSlice(start, w.gpu_seconds))
    warm_spend = WarmLedger(tuple(warm_slices), _from_time(status.warm_budget_counted_time))
    return ScalerMemory(
        last_scale_up_at=_from_time(status.last_scale_up_time),
        last_scale_down_at=_from_time(status.last_scale_down_time),
        panic_since=_from_time(status.panic_since),
        panic_last_triggered_at=_from_time(status.panic_last_triggered_time),
        last_demand_at=_from_time(status.last_demand_time),
        recommendations=tuple(recommendations),
        panic_peak_replicas=status.panic_peak_replicas,
        bursts=tuple(bursts),
        budget=budget,
        warm_spend=warm_spend,
    )


def memory_changed_materially(old: ScalerMemory, new: ScalerMemory) -> bool:
    """Worth a status write: anything but the timestamps of unchanged recommendations.

    The engine re-stamps its recommendation every decision; writing that each scrape
    would cost an API write per service per second for nothing a restart needs.
    """
    if (
        old.last_scale_up_at != new.last_scale_up_at
        or old.last_scale_down_at != new.last_scale_down_at
        or old.panic_since != new.panic_since
        or (old.panic_since is None) != (new.panic_since is None)
    ):
        return True
    if old.panic_peak_replicas != new.panic_peak_replicas:
        return True
    # A crowd's last-seen time moves every decision of its panic: not worth a write
    # alone (the panic's end is one); a new crowd or a higher peak is.
    if [(b.started_at, b.peak_replicas) for b in old.bursts] != [
        (b.started_at, b.peak_replicas) for b in new.bursts
    ]:
        return True
    return [r.replicas for r in old.recommendations] != [r.replicas for r in new.recommendations]


# --- the tide profile in the status ------------------------------------------------


def _compact(value: float) -> str:
    return f"{value:.4g}"


def tide_to_status(profile: TideProfile, policy: TidePolicy) -> TideStatus | None:
    """The profile, compact (None while nothing was learned)."""
    seen = [b for b in profile.buckets if b is not None]
    if not seen or len(profile.buckets) != policy.buckets:
        return None
    newest = max(b.cycle for b in seen)
    entries = []
    for b in profile.buckets:
        if b is None:
            entries.append("")
            continue
        learned = "" if b.learned is None else _compact(b.learned)
        entries.append(f"{newest - b.cycle}:{_compact(b.peak)}:{learned}:{b.cycles}")
    return TideStatus(
        period_seconds=policy.period_s,
        buckets=policy.buckets,
        cycle=newest,
        profile=",".join(entries),
    )


def tide_from_status(status: TideStatus | None, policy: TidePolicy) -> TideProfile | None:
    """The profile the status keeps; None when there is none, when it was learned of
    another cycle, or when it cannot be read (learning starts afresh)."""
    if status is None or status.period_seconds != policy.period_s:
        return None
    entries = status.profile.split(",")
    if status.buckets != policy.buckets or len(entries) != policy.buckets:
        return None
    buckets: list[TideBucket | None] = []
    for entry in entries:
        if not entry:
            buckets.append(None)
            continue
        bucket = _tide_bucket(entry, status.cycle)
        if bucket is None:
            return None
        buckets.append(bucket)
    return TideProfile(tuple(buckets))


def _tide_bucket(entry: str, newest: int) -> TideBucket | None:
    parts = entry.split(":")
    if len(parts) != 4:
        return None
    try:
        age, peak, cycles = int(parts[0]), float(parts[1]), int(parts[3])
        learned = float(parts[2]) if parts[2] else None
    except ValueError:
        return None
    values = [peak] if learned is None else [peak, learned]
    if age < 0 or cycles < 0 or not all(math.isfinite(v) and v >= 0 for v in values):
        return None
    return TideBucket(newest - age, peak, learned, cycles)


# --- start paths in the status --------------------------------------------------------


def start_paths_to_status(times: Mapping[StartPath, Sequence[float]]) -> list[ScalerStartPath]:
    return [
        ScalerStartPath(path=path, time_to_ready_seconds=round(seconds, 3), samples=samples)
        for path, seconds, samples in measured_paths(times)
    ]


def start_paths_from_status(status: ScalerStatus | None) -> dict[StartPath, tuple[float, ...]]:
    """After a restart: each path's planning figure, as one measurement the new pods
    soon outnumber (the status keeps the p90, not the samples)."""
    if status is None:
        return {}
    return {p.path: (p.time_to_ready_seconds,) for p in status.start_paths}
