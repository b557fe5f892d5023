"""Typed inputs and outputs of the autoscaling engine.

Every time is a float of seconds since the Unix epoch (UTC); every duration is a
float of seconds. The engine never reads a clock: the caller passes `now`.
"""

from __future__ import annotations

import enum
import math
import zoneinfo
from dataclasses import dataclass, field

from egpu.engines.autoscaling.budget import BudgetLedger, BudgetPolicy
from egpu.engines.autoscaling.tide import TidePolicy
from egpu.engines.autoscaling.warm_budget import WarmBudgetPolicy, WarmLedger


class MetricKind(enum.StrEnum):
    """The signal the service scales on; names match the CRD's enum."""

    CONCURRENCY = "Concurrency"
    QUEUE_LENGTH = "QueueLength"
    TOKENS_PER_SECOND = "TokensPerSecond"
    GPU_UTILIZATION = "GPUUtilization"
    LATENCY_SLO = "LatencySLO"


class Mode(enum.StrEnum):
    STABLE = "stable"
    PANIC = "panic"


class ReasonCode(enum.StrEnum):
    """Which rule settled the serving replica count."""

    NO_METRICS = "no_metrics"
    HOLD = "hold"
    TOLERANCE = "tolerance"
    SCALE_UP = "scale_up"
    SCALE_DOWN = "scale_down"
    PANIC = "panic"
    COOLDOWN = "cooldown"
    STABILIZING = "stabilizing"
    RATE_LIMITED = "rate_limited"
    MIN_REPLICAS = "min_replicas"
    SCHEDULE_FLOOR = "schedule_floor"
    FORECAST_FLOOR = "forecast_floor"
    TIDE = "tide"
    IDLE_WAIT = "idle_wait"
    SCALE_TO_ZERO = "scale_to_zero"
    WAKE = "wake"


SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class ScheduleEntry:
    """A time-of-day range (local time of the policy's timezone) with a replica floor.

    `start_s`/`end_s` are seconds past local midnight; `end_s < start_s` wraps past
    midnight; `start_s == end_s` means the whole day. `weekdays` (0 = Monday) names
    the day the range *starts* on; None means every day.
    """

    start_s: int
    end_s: int
    min_replicas: int
    weekdays: frozenset[int] | None = None

    def __post_init__(self) -> None:
        for name, value in (("start_s", self.start_s), ("end_s", self.end_s)):
            if not 0 <= value < SECONDS_PER_DAY:
                raise ValueError(f"schedule {name}={value} is not within one day")
        if self.min_replicas < 0:
            raise ValueError("schedule min_replicas must be >= 0")
        if self.weekdays is not None and not self.weekdays <= frozenset(range(7)):
            raise ValueError("schedule weekdays must be within 0..6 (Monday = 0)")

    @classmethod
    def from_hhmm(
        cls, start: str, end: str, min_replicas: int, weekdays: frozenset[int] | None = None
    ) -> ScheduleEntry:
        """Build from "HH:MM" strings, as a CRD would spell them."""
        return cls(_parse_hhmm(start), _parse_hhmm(end), min_replicas, weekdays)


def _parse_hhmm(text: str) -> int:
    hours, _, minutes = text.partition(":")
    try:
        h, m = int(hours), int(minutes)
    except ValueError:
        raise ValueError(f"time of day {text!r} is not HH:MM") from None
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ValueError(f"time of day {text!r} is out of range")
    return h * 3600 + m * 60


@dataclass(frozen=True)
class ForecastPolicy:
    """How the daily-seasonality forecast turns history into a floor.

    Per previous day, the peak load in the look-ahead window is taken; across days,
    the `quantile` of those peaks (nearest rank; 0.5 = median, 1.0 = max), times
    `margin`. Fewer than `min_days` days with data gives no floor.
    """

    enabled: bool = True
    min_days: int = 2
    quantile: float = 0.5
    margin: float = 1.0

    def __post_init__(self) -> None:
        if self.min_days < 1:
            raise ValueError("forecast min_days must be >= 1")
        if not 0.0 < self.quantile <= 1.0:
            raise ValueError("forecast quantile must be in (0, 1]")
        if self.margin <= 0.0:
            raise ValueError("forecast margin must be > 0")


@dataclass(frozen=True)
class ScalingPolicy:
    """The service's scaling spec, already validated and defaulted by the API layer.

    `target` is the per-replica target in the metric's unit: concurrent requests,
    queued requests, tokens/s, GPU utilisation (same scale as the samples, e.g. 0.7),
    or for LatencySLO the per-replica request rate used only when no service-time
    measurement is available.

    Rates are per decision, as Knative's: one decision asks for at most
    ready x scale_up_max_rate and at least current / scale_down_max_rate replicas.
    The cooldown spaces stable-mode scale-ups (panic, wake and floors skip it); the
    stabilisation window holds scale-downs at the highest recent recommendation.
    `time_to_ready_s` is the measured cold start, the lead time of headroom and forecast.

    `warm_pool_size` is the warm pool's floor. With `warm_pool_max` set, the pool also
    learns: after a crowd (a panic) it keeps serving + warm at the crowd's steady size,
    up to `warm_pool_max` warm, for `burst_memory_s` after the crowd or twice the
    longest gap between the crowds remembered, whichever is longer. None: no learning.
    `warm_budget` caps what the learned pods (beyond `warm_pool_size`) may hold over a
    sliding window, in GPU-hours of `gpus_per_pod` each (warm_budget.py); None: no cap.

    `tide`: the service's load recurs every `tide.period_s`; the caller learns a
    profile of it (`tide.observe`) and passes it to `decide`, which sizes ahead of the
    learned rise and lets go as it ebbs while the observation agrees with it.

    `error_budget` (LatencySLO only): spend the share of requests the percentile lets
    miss, counted over a window (budget.py); None sizes every moment for the percentile.
    """

    metric: MetricKind
    target: float
    max_replicas: int
    min_replicas: int = 1
    latency_target_s: float | None = None
    latency_percentile: float = 0.95
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0
    scale_up_max_rate: float = 1000.0
    scale_up_cooldown_s: float = 0.0
    scale_down_max_rate: float = 2.0
    scale_down_stabilization_s: float = 300.0
    tolerance: float = 0.1
    scale_to_zero_idle_s: float = 300.0
    warm_pool_size: int = 0
    warm_pool_max: int | None = None
    burst_memory_s: float = 600.0
    schedule: tuple[ScheduleEntry, ...] = ()
    timezone: str = "UTC"
    time_to_ready_s: float = 60.0
    forecast: ForecastPolicy = field(default_factory=ForecastPolicy)
    tide: TidePolicy | None = None  # learn a recurring cycle of demand (tide.py)
    error_budget: BudgetPolicy | None = None  # spend the SLO's budget (budget.py)
    gpus_per_pod: int = 1
    warm_budget: WarmBudgetPolicy | None = None  # GPU-hours of the learned pool

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not (math.isfinite(self.target) and self.target > 0):
            problems.append("target must be > 0")
        if self.min_replicas < 0:
            problems.append("min_replicas must be >= 0")
        if self.max_replicas < max(1, self.min_replicas):
            problems.append("max_replicas must be >= max(1, min_replicas)")
        if self.metric is MetricKind.LATENCY_SLO and (
            self.latency_target_s is None or self.latency_target_s <= 0
        ):
            problems.append("LatencySLO needs latency_target_s > 0")
        if not 0.0 < self.latency_percentile < 1.0:
            problems.append("latency_percentile must be in (0, 1)")
        if not 0.0 < self.panic_window_s <= self.stable_window_s:
            problems.append("need 0 < panic_window_s <= stable_window_s")
        if self.panic_threshold <= 1.0:
            problems.append("panic_threshold must be > 1")
        if self.scale_up_max_rate < 1.0 or self.scale_down_max_rate < 1.0:
            problems.append("scale_up_max_rate and scale_down_max_rate must be >= 1")
        for name in (
            "scale_up_cooldown_s",
            "scale_down_stabilization_s",
            "tolerance",
            "scale_to_zero_idle_s",
            "time_to_ready_s",
        ):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        if self.error_budget is not None and self.metric is not MetricKind.LATENCY_SLO:
            problems.append("error_budget needs metric LatencySLO")
        if self.warm_pool_size < 0:
            problems.append("warm_pool_size must be >= 0")
        if self.warm_pool_max is not None and self.warm_pool_max < self.warm_pool_size:
            problems.append("warm_pool_max must be >= warm_pool_size")
        if self.gpus_per_pod < 1:
            problems.append("gpus_per_pod must be >= 1")
        if self.warm_budget is not None and self.warm_pool_max is None:
            problems.append("warm_budget needs warm_pool_max (a pool that learns)")
        if not (math.isfinite(self.burst_memory_s) and self.burst_memory_s > 0):
            problems.append("burst_memory_s must be > 0")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problems.append(f"unknown timezone {self.timezone!r}")
        if problems:
            raise ValueError("invalid scaling policy: " + "; ".join(problems))


@dataclass(frozen=True)
class MetricSample:
    """One scrape of the service.

    `value` is the metric summed over ready replicas, in the policy's unit, plus any
    demand buffered in front of the service (the router's queue): when nothing is
    ready that buffered demand is the only signal that can wake the service. For
    LatencySLO it is not used for sizing (report the in-flight requests there).
    `arrival_rate` is the offered request rate (req/s) seen at the router, and
    `queued` the requests waiting for a replica (router plus replica queues).
    `ready_replicas` is kept for readers and the simulator; the decision uses the
    count in `ScalerState`, which is current at decision time.
    """

    timestamp: float
    value: float
    ready_replicas: int
    arrival_rate: float | None = None
    queued: float | None = None


@dataclass(frozen=True)
class ServiceStats:
    """Measured service behaviour of one replica, for the LatencySLO queueing model.

    `service_time_s` is the mean time a request occupies the replica (its latency
    with no queueing); `replica_throughput_rps` is what one saturated replica
    completes per second. By Little's law a replica then works on
    throughput x service_time requests at once, each an M/M/c server.
    """

    service_time_s: float | None = None
    replica_throughput_rps: float | None = None

    def __post_init__(self) -> None:
        for value in (self.service_time_s, self.replica_throughput_rps):
            if value is not None and not value > 0:
                raise ValueError("service stats must be > 0 when given")


@dataclass(frozen=True)
class MetricWindow:
    """The samples the metrics reader kept (any order; older ones are ignored)."""

    samples: tuple[MetricSample, ...] = ()
    service: ServiceStats | None = None


@dataclass(frozen=True)
class Recommendation:
    """A past recommendation, kept for scale-down stabilisation."""

    timestamp: float
    replicas: int


@dataclass(frozen=True)
class Burst:
    """A crowd seen: when its panic began, the replicas its arrivals needed at the
    peak (steady state, the backlog left out), and when it was last in panic."""

    started_at: float
    peak_replicas: int
    last_seen_at: float


@dataclass(frozen=True)
class ScalerMemory:
    """What the engine remembers between decisions; the caller stores it verbatim
    (e.g. in the CR status) and passes back `Decision.memory` next time."""

    last_scale_up_at: float | None = None
    last_scale_down_at: float | None = None
    panic_since: float | None = None
    panic_last_triggered_at: float | None = None
    last_demand_at: float | None = None
    recommendations: tuple[Recommendation, ...] = ()
    panic_peak_replicas: int | None = None  # the current panic's highest steady size
    bursts: tuple[Burst, ...] = ()  # crowds remembered, oldest first
    budget: BudgetLedger = field(default_factory=BudgetLedger)  # the SLO's error budget
    warm_spend: WarmLedger = field(default_factory=WarmLedger)  # the warm pool's GPU-hours


@dataclass(frozen=True)
class ScalerState:
    """Observed replica counts now, plus the engine's memory."""

    current_replicas: int
    ready_replicas: int
    warm_replicas: int = 0
    memory: ScalerMemory = field(default_factory=ScalerMemory)

    def __post_init__(self) -> None:
        if min(self.current_replicas, self.ready_replicas, self.warm_replicas) < 0:
            raise ValueError("replica counts must be >= 0")


@dataclass(frozen=True)
class DailyLoadHistory:
    """Load per local time-of-day bucket on previous days, most recent day first.

    Each day holds SECONDS_PER_DAY / bucket_s values in the policy's demand unit
    (the metric total, or the arrival rate for LatencySLO); None = no data.
    """

    bucket_s: int
    days: tuple[tuple[float | None, ...], ...]

    def __post_init__(self) -> None:
        if self.bucket_s <= 0 or SECONDS_PER_DAY % self.bucket_s:
            raise ValueError("bucket_s must divide a day")
        width = SECONDS_PER_DAY // self.bucket_s
        if any(len(day) != width for day in self.days):
            raise ValueError(f"every day needs {width} buckets")

    @property
    def buckets_per_day(self) -> int:
        return SECONDS_PER_DAY // self.bucket_s


@dataclass(frozen=True)
class Reason:
    code: ReasonCode
    message: str


@dataclass(frozen=True)
class Demand:
    """The demand estimates the decision was based on (policy units), for status/metrics."""

    stable: float
    panic: float
    growth_per_s: float
    projected: float


@dataclass(frozen=True)
class Floors:
    min_replicas: int
    schedule: int
    forecast: int

    @property
    def highest(self) -> int:
        return max(self.min_replicas, self.schedule, self.forecast)


@dataclass(frozen=True)
class Decision:
    """What the controller should make true.

    `serving_replicas` and `warm_replicas` are the desired counts; `promotions` warm
    replicas should be turned into serving ones (before creating new pods) and
    `demotions` serving replicas parked in the warm pool (instead of deleted).
    `recommended_replicas` is the count wanted before the max/capacity caps.
    """

    serving_replicas: int
    warm_replicas: int
    mode: Mode
    reason: Reason
    promotions: int
    demotions: int
    capacity_limited: bool
    capped_at_max: bool
    recommended_replicas: int
    demand: Demand
    floors: Floors
    memory: ScalerMemory
    learned_warm: int = 0  # warm replicas kept for crowds seen, beyond warm_pool_size
