"""GPUInferenceService: model-serving GPU pods that scale with load, down to zero."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from egpu.api.base import (
    LIST_ATOMIC,
    LIST_SET,
    ApiModel,
    Rule,
    defaulted_object,
    list_map,
    rules_extra,
)
from egpu.api.common import (
    Condition,
    GpuModel,
    PodTemplate,
    conditions_field,
    gpu_model_field,
    gpus_per_pod_field,
)
from egpu.api.types import (
    DURATION_PATTERN,
    Cron,
    DnsLabel,
    Duration,
    Quantity,
    TimeOfDay,
    cel_duration_le,
    cel_quantity,
    cel_when_quantities,
)
from egpu.domain.labels import StartPath

MAX_SERVICE_REPLICAS = 10000
MAX_SCHEDULE_WINDOWS = 24

ScalingMetric = Literal[
    "Concurrency", "QueueLength", "TokensPerSecond", "GPUUtilization", "LatencySLO"
]

# The series read from a pod's metrics endpoint when podMetrics.metricName is unset.
DEFAULT_POD_METRIC_NAMES: dict[str, str] = {
    "Concurrency": "egpu_inflight_requests",
    "QueueLength": "egpu_queue_length",
    "TokensPerSecond": "egpu_generated_tokens_total",
    "GPUUtilization": "DCGM_FI_DEV_GPU_UTIL",
    "LatencySLO": "egpu_request_duration_seconds",
}

METRIC_NAME_PATTERN = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"


class ErrorBudget(ApiModel):
    """Size for the objective as a share of requests over a window, not at every moment."""

    window: Duration = Field(
        "1h",
        description="Sliding window over which the share of requests within the target is "
        "counted, e.g. 1h or the tide's period.",
        json_schema_extra=rules_extra(
            Rule(
                rule=f"!self.matches(r'{DURATION_PATTERN}') || duration(self) >= duration('1m')",
                message="window must be at least 1m",
            )
        ),
    )
    loosest_percentile: float = Field(
        90.0,
        ge=50.0,
        le=99.999,
        description="The loosest percentile a moment may be sized for. The autoscaler "
        "counts the requests of the window and those its queueing model expects to have "
        "missed the target with the replicas that were ready; while at most half of what "
        "the objective lets miss is spent, it sizes for this percentile (never fewer "
        "replicas than the arrival rate needs), tightening linearly back to the "
        "objective's as the rest is spent. Panic is always sized for the objective. With "
        "a tide that agrees, the warm pool's size is let go while the budget left covers "
        "what its pods could save a surprise (their rate for one cold start); a pool "
        "learned from crowds is kept.",
    )


class LatencySLO(ApiModel):
    """A latency objective: the chosen percentile of request latency stays under `target`."""

    cel_rules = (
        Rule(
            rule="!has(self.errorBudget) || self.errorBudget.loosestPercentile <= self.percentile",
            message="errorBudget.loosestPercentile must not be greater than percentile",
            field_path=".errorBudget.loosestPercentile",
        ),
    )

    percentile: float = Field(
        99.0, ge=50.0, le=99.999, description="Percentile of request latency, e.g. 99 or 99.9."
    )
    target: Duration = Field(
        description="Latency the percentile must stay under, e.g. 500ms.",
        json_schema_extra=rules_extra(
            Rule(
                rule=f"!self.matches(r'{DURATION_PATTERN}') || duration(self) > duration('0s')",
                message="target must be longer than 0s",
            )
        ),
    )
    service_time: Duration | None = Field(
        None,
        description="Mean time one request occupies a replica without queueing, from a "
        "profile (e.g. 800ms). Unset: measured from the pods' "
        "egpu_request_service_seconds summary (podMetrics source only).",
    )
    concurrency_per_replica: int = Field(
        1,
        ge=1,
        le=4096,
        description="Requests one replica serves at once (batch slots); with serviceTime "
        "it gives the replica's throughput for the queueing model.",
    )
    error_budget: ErrorBudget | None = Field(
        None,
        description="Spend the share of requests the percentile lets miss, counted over a "
        "window, on fewer replicas while it is not needed. Unset: every moment is sized "
        "for the percentile.",
    )


class PrometheusSource(ApiModel):
    """Read the signal with a PromQL query."""

    url: str = Field(
        max_length=2048,
        description="Base URL of the Prometheus server, e.g. http://prometheus.monitoring:9090.",
        json_schema_extra=rules_extra(
            Rule(
                rule="isURL(self) && url(self).getScheme() in ['http', 'https'] "
                "&& url(self).getHost() != ''",
                message="url must be an absolute http or https URL",
            )
        ),
    )
    query: str = Field(
        min_length=1,
        max_length=8192,
        description="PromQL returning one number: the service-wide value of the metric "
        "(for LatencySLO: the arrival rate, requests per second).",
    )
    queued_query: str | None = Field(
        None,
        min_length=1,
        max_length=8192,
        description="PromQL returning the requests waiting for a replica (router and "
        "replica queues). Optional: the backlog a LatencySLO sizing drains, and a signal "
        "that wakes a service scaled to zero.",
    )


class PodMetricsSource(ApiModel):
    """Scrape each ready pod's Prometheus-format endpoint and add the values up."""

    port: int = Field(ge=1, le=65535, description="Container port serving the metrics.")
    path: str = Field(
        "/metrics",
        max_length=1024,
        pattern=r"^/",
        description="HTTP path of the metrics endpoint; starts with '/'.",
    )
    metric_name: str | None = Field(
        None,
        max_length=256,
        pattern=METRIC_NAME_PATTERN,
        description="Series to read. Unset: egpu_inflight_requests (Concurrency), "
        "egpu_queue_length (QueueLength), egpu_generated_tokens_total (TokensPerSecond, "
        "as a rate), DCGM_FI_DEV_GPU_UTIL (GPUUtilization), egpu_request_duration_seconds "
        "(LatencySLO, a histogram).",
    )


class MetricSource(ApiModel):
    """Where the signal comes from: exactly one of prometheus or podMetrics."""

    cel_rules = (
        Rule(
            rule="has(self.prometheus) != has(self.podMetrics)",
            message="set exactly one of prometheus or podMetrics",
            field_path=".prometheus",
        ),
    )

    prometheus: PrometheusSource | None = Field(None, description="A PromQL query.")
    pod_metrics: PodMetricsSource | None = Field(None, description="The pods' own endpoint.")


class ScalingPolicy(ApiModel):
    """The signal replicas follow, and the value each replica should carry."""

    cel_rules = (
        Rule(
            rule="self.metric != 'LatencySLO' || has(self.latencySLO)",
            message="metric LatencySLO needs latencySLO",
            field_path=".latencySLO",
            reason="FieldValueRequired",
        ),
        Rule(
            rule="self.metric == 'LatencySLO' || !has(self.latencySLO)",
            message="latencySLO only applies to metric LatencySLO",
            field_path=".latencySLO",
            reason="FieldValueForbidden",
        ),
        Rule(
            rule="self.metric == 'LatencySLO' || has(self.target)",
            message="target is required for this metric",
            field_path=".target",
            reason="FieldValueRequired",
        ),
        Rule(
            rule="self.metric != 'LatencySLO' || !has(self.target)",
            message="metric LatencySLO takes its target from latencySLO.target",
            field_path=".target",
            reason="FieldValueForbidden",
        ),
        Rule(
            rule="!has(self.target) || "
            + cel_when_quantities(
                ("self.target",), f"{cel_quantity('self.target')}.isGreaterThan(quantity('0'))"
            ),
            message="target must be greater than zero",
            field_path=".target",
        ),
        Rule(
            rule="self.metric != 'GPUUtilization' || !has(self.target) || "
            + cel_when_quantities(
                ("self.target",), f"{cel_quantity('self.target')}.compareTo(quantity('100')) <= 0"
            ),
            message="a GPUUtilization target is a percentage: at most 100",
            field_path=".target",
        ),
    )

    metric: ScalingMetric = Field(
        description="Concurrency (in-flight requests), QueueLength, TokensPerSecond, "
        "GPUUtilization (percent) or LatencySLO."
    )
    target: Quantity | None = Field(
        None,
        description="Value of the metric each replica should carry, e.g. 8 (concurrency), "
        "2500 (tokens/s), 70 (GPU percent). Not used with LatencySLO.",
    )
    latency_slo: LatencySLO | None = Field(
        None,
        alias="latencySLO",
        description="The objective, when metric is LatencySLO.",
    )
    source: MetricSource = Field(description="Where the metric is read from.")


class ScaleUp(ApiModel):
    """How fast replicas may grow."""

    max_rate: float = Field(
        10.0,
        ge=1.0,
        le=1000.0,
        description="Most a decision may multiply the ready replicas by (10 = tenfold).",
    )
    cooldown: Duration = Field(
        "0s", description="Least time between two scale-up decisions outside panic mode."
    )


class ScaleDown(ApiModel):
    """How fast replicas may shrink."""

    max_rate: float = Field(
        2.0,
        ge=1.0,
        le=1000.0,
        description="Most a decision may divide the replicas by (2 = halve).",
    )
    stabilization_window: Duration = Field(
        "5m",
        description="Scale down only to the highest recommendation seen in this window.",
    )


class ScalingBehavior(ApiModel):
    """The stable/panic windows of the autoscaler and its rate limits (Knative style)."""

    cel_rules = (
        Rule(
            rule=cel_duration_le("self.scrapeInterval", "self.panicWindow"),
            message="panicWindow must not be shorter than scrapeInterval",
            field_path=".panicWindow",
        ),
        Rule(
            rule=cel_duration_le("self.panicWindow", "self.stableWindow"),
            message="stableWindow must not be shorter than panicWindow",
            field_path=".stableWindow",
        ),
        Rule(
            rule=cel_duration_le("'100ms'", "self.scrapeInterval"),
            message="scrapeInterval must be at least 100ms",
            field_path=".scrapeInterval",
        ),
        Rule(
            rule=cel_duration_le("self.stableWindow", "'1h'"),
            message="stableWindow must be at most 1h",
            field_path=".stableWindow",
        ),
        Rule(
            rule="!has(self.scaleToZeroAfter) || ("
            + cel_duration_le("self.stableWindow", "self.scaleToZeroAfter")
            + ")",
            message="scaleToZeroAfter must not be shorter than stableWindow",
            field_path=".scaleToZeroAfter",
        ),
    )

    stable_window: Duration = Field("60s", description="Averaging window for normal decisions.")
    panic_window: Duration = Field("6s", description="Short window that detects a flash crowd.")
    panic_threshold: float = Field(
        2.0,
        gt=1.0,
        le=100.0,
        description="Enter panic mode when the panic-window load (its mean, or its newest "
        "sample when higher) needs this many times the ready replicas (2.0 = 200%); panic "
        "sizes on the same load and never shrinks replicas.",
    )
    scrape_interval: Duration = Field("2s", description="How often the metric is read.")
    scale_up: ScaleUp = defaulted_object(ScaleUp, "Limits on growth.")
    scale_down: ScaleDown = defaulted_object(ScaleDown, "Limits on shrinking.")
    scale_to_zero_after: Duration | None = Field(
        None,
        description="With minReplicas 0: remove the last replica after this long without "
        "load. Unset: after one stableWindow.",
    )


class WarmPoolBudget(ApiModel):
    """The most GPU-hours the pods the pool learned from crowds may hold over a window."""

    gpu_hours: float = Field(
        gt=0,
        le=1e9,
        description="GPU-hours the warm pods beyond warmPool.size may hold over the "
        "window (pods x gpusPerPod x hours idle). The pool learned from crowds is cut to "
        "what the rest of the budget pays for until the crowds are forgotten (or for one "
        "window, if sooner); once spent, the pool is warmPool.size, which is never cut.",
    )
    window: Duration = Field(
        "24h",
        description="Sliding window the GPU-hours are counted over, e.g. 24h or 168h.",
        json_schema_extra=rules_extra(
            Rule(
                rule=f"!self.matches(r'{DURATION_PATTERN}') || duration(self) >= duration('1h')",
                message="window must be at least 1h",
            )
        ),
    )


class WarmPool(ApiModel):
    """Pods kept started but idle, so new replicas skip the model's cold start."""

    cel_rules = (
        Rule(
            rule="!has(self.maxSize) || self.maxSize >= self.size",
            message="warmPool.maxSize must not be less than warmPool.size",
            field_path=".maxSize",
        ),
        Rule(
            rule="!has(self.budget) || has(self.maxSize)",
            message="warmPool.budget needs maxSize: only a pool that learns is budgeted",
            field_path=".budget",
        ),
    )

    size: int = Field(
        0, ge=0, le=1000, description="Idle pods to keep ready to serve (the pool's floor)."
    )
    max_size: int | None = Field(
        None,
        ge=0,
        le=1000,
        description="Let the pool learn from the crowds it sees, up to this many pods: after "
        "a crowd (a panic), serving plus warm pods stay at the crowd's size (what its peak "
        "load needed, plus a fifth) while crowds recur. Unset: the pool stays at size.",
    )
    burst_memory: Duration = Field(
        "10m",
        description="With maxSize: how long after one crowd its size is kept; crowds that "
        "recur are kept for twice the longest gap between them, if longer.",
    )
    budget: WarmPoolBudget | None = Field(
        None,
        description="With maxSize: the most GPU-hours the pods learned from crowds may "
        "hold over a sliding window. Unset: they are kept while the crowds are remembered, "
        "whatever that costs.",
    )


# An image reference or a model key: no commas (the pods' annotation lists them comma
# separated, as the nodes' cache annotation does) and no whitespace.
ARTEFACT_PATTERN = r"^[^,\s]+$"
ARTEFACT_MAX_LENGTH = 512
MAX_ARTEFACTS = 16

Artefact = Annotated[
    str, StringConstraints(min_length=1, max_length=ARTEFACT_MAX_LENGTH, pattern=ARTEFACT_PATTERN)
]


class Startup(ApiModel):
    """What a serving pod loads before it is Ready, so it can start where that is cached."""

    artefacts: list[Artefact] = Field(
        default_factory=list,
        max_length=MAX_ARTEFACTS,
        description="Keys of what a pod loads at start: image references (matched against "
        "the images a node's kubelet lists in status.images) and model keys (matched "
        "against the node's egpu.io/cached-artefacts annotation, written by a cache "
        "agent). The binder prefers nodes that hold all of them (the Cached start path; "
        "any other node is the Cold path), marks each pod's path in its "
        "egpu.io/start-path annotation, and the autoscaler plans with the time to ready "
        "measured on the path its next pods will get. Empty: one path, no preference.",
        json_schema_extra=LIST_SET,
    )


class Tide(ApiModel):
    """Load that recurs every period (a day): learn it, and scale ahead of it."""

    period: Duration = Field(
        "24h",
        description="Length of the cycle the load repeats over (e.g. 24h). The autoscaler "
        "learns the peak demand of each part of the cycle from the cycles it has seen, "
        "scales up ahead of a learned rise by the time a replica takes to be ready and "
        "lets go as the learned load ebbs, while the observed load agrees with what it "
        "learned; otherwise it reacts to the load alone.",
        json_schema_extra=rules_extra(
            Rule(
                rule=f"!self.matches(r'{DURATION_PATTERN}') || duration(self) > duration('0s')",
                message="period must be longer than 0s",
            )
        ),
    )
    buckets: int = Field(
        288, ge=1, le=1440, description="Parts of the cycle learned apart (288: 5 min of a day)."
    )
    learning_rate: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="Weight of the newest cycle in what is learned; the older ones fade.",
    )
    tolerance: float = Field(
        0.25,
        ge=0.0,
        le=10.0,
        description="How far (relative, plus one replica's worth) the observed load may "
        "depart from the learned one before the autoscaler stops trusting it.",
    )


class ScheduleWindow(ApiModel):
    """A recurring window with a higher floor, ahead of tidal (day/night) load."""

    cel_rules = (
        Rule(
            rule="has(self.cron) != (has(self.start) || has(self.end))",
            message="set either cron (with duration) or start and end",
            field_path=".cron",
        ),
        Rule(
            rule="has(self.start) == has(self.end)",
            message="start and end go together",
            field_path=".end",
            reason="FieldValueRequired",
        ),
        Rule(
            rule="has(self.cron) == has(self.duration)",
            message="duration is required with cron, and only with cron",
            field_path=".duration",
        ),
        Rule(
            rule="!has(self.start) || !has(self.end) || self.start != self.end",
            message="end must differ from start",
            field_path=".end",
        ),
    )

    name: DnsLabel = Field(description="Name of the window, unique in the list.")
    cron: Cron | None = Field(None, description="When the window opens (UTC cron).")
    duration: Duration | None = Field(None, description="How long it stays open, with cron.")
    start: TimeOfDay | None = Field(None, description="Daily opening time, HH:MM UTC (with end).")
    end: TimeOfDay | None = Field(
        None, description="Daily closing time, HH:MM UTC; before start: the window spans midnight."
    )
    min_replicas: int = Field(
        ge=0, le=MAX_SERVICE_REPLICAS, description="Replica floor while the window is open."
    )


class GPUInferenceServiceSpec(ApiModel):
    """The desired serving pods and how they scale."""

    cel_rules = (
        Rule(
            rule="self.minReplicas <= self.maxReplicas",
            message="minReplicas must not be greater than maxReplicas",
            field_path=".minReplicas",
        ),
        Rule(
            rule="!has(self.replicas) || self.replicas >= self.minReplicas",
            message="replicas must not be less than minReplicas",
            field_path=".replicas",
        ),
        Rule(
            rule="!has(self.replicas) || self.replicas <= self.maxReplicas",
            message="replicas must not be greater than maxReplicas",
            field_path=".replicas",
        ),
        Rule(
            rule="self.warmPool.size <= self.maxReplicas",
            message="warmPool.size must not be greater than maxReplicas",
            field_path=".warmPool.size",
        ),
        Rule(
            rule="!has(self.warmPool.maxSize) || self.warmPool.maxSize <= self.maxReplicas",
            message="warmPool.maxSize must not be greater than maxReplicas",
            field_path=".warmPool.maxSize",
        ),
        Rule(
            rule="!has(self.schedule) || self.schedule.all(w, w.minReplicas <= self.maxReplicas)",
            message="a schedule window's minReplicas must not be greater than maxReplicas",
            field_path=".schedule",
        ),
        Rule(
            rule="!has(self.behavior.scaleToZeroAfter) || self.minReplicas == 0",
            message="scaleToZeroAfter needs minReplicas 0",
            field_path=".behavior.scaleToZeroAfter",
            reason="FieldValueForbidden",
        ),
    )

    template: PodTemplate = Field(description="Template of each pod (core/v1 PodTemplateSpec).")
    gpus_per_pod: int = gpus_per_pod_field()
    gpu_model: GpuModel | None = gpu_model_field()
    min_replicas: int = Field(
        1, ge=0, le=MAX_SERVICE_REPLICAS, description="Fewest replicas; 0 allows scale to zero."
    )
    max_replicas: int = Field(ge=1, le=MAX_SERVICE_REPLICAS, description="Most replicas.")
    replicas: int | None = Field(
        None,
        ge=0,
        le=MAX_SERVICE_REPLICAS,
        description="Replica count set through the scale subresource (kubectl scale, an "
        "external autoscaler); when set it overrides the built-in autoscaler. "
        "Unset: the autoscaler decides.",
    )
    scaling: ScalingPolicy = Field(description="The signal the autoscaler follows.")
    behavior: ScalingBehavior = defaulted_object(
        ScalingBehavior, "Windows and rate limits of the autoscaler."
    )
    warm_pool: WarmPool = defaulted_object(WarmPool, "Idle pods kept ready against cold starts.")
    tide: Tide | None = Field(
        None, description="Learn a load that recurs each period. Unset: not learned."
    )
    startup: Startup | None = Field(
        None, description="What the pods load at start, so they start where it is cached."
    )
    schedule: list[ScheduleWindow] | None = Field(
        None,
        max_length=MAX_SCHEDULE_WINDOWS,
        description="Recurring windows that raise the replica floor ahead of known load.",
        json_schema_extra=list_map("name"),
    )


class ScaleDecision(ApiModel):
    """The autoscaler's latest decision."""

    time: datetime = Field(description="When it was made (RFC 3339).")
    replicas: int = Field(ge=0, description="Replicas it asked for.")
    reason: str = Field(
        max_length=1024,
        description="Why, e.g. Stable, Panic, ScaleToZero, Schedule, MaxRate, Cooldown.",
    )
    metric_value: Quantity | None = Field(
        None, description="Service-wide value of the metric it saw."
    )
    message: str | None = Field(
        None, max_length=1024, description="The rule that settled it, with the numbers."
    )
    warm_replicas: int | None = Field(
        None, ge=0, description="Warm-pool pods it asked for (the message says why when learned)."
    )


class ScalerRecommendation(ApiModel):
    """One recommendation the scale-down stabilisation still remembers."""

    time: datetime = Field(description="When it was made.")
    replicas: int = Field(ge=0, description="Replicas it recommended.")


class ScalerBurst(ApiModel):
    """A crowd the warm pool learns from."""

    start_time: datetime = Field(description="When its panic began.")
    last_seen_time: datetime = Field(description="When it was last in panic.")
    replicas: int = Field(ge=0, description="Replicas its peak arrivals needed (with headroom).")


class ScalerBudgetSlice(ApiModel):
    """One slice of the error budget's window."""

    start_time: datetime = Field(description="When the slice begins.")
    requests: float = Field(ge=0, description="Requests that arrived in it.")
    missed: float = Field(
        ge=0, description="Of those, how many the queueing model expects missed the target."
    )


class ScalerStartPath(ApiModel):
    """How fast one start path brings a replica into service, as measured."""

    path: StartPath = Field(
        description="Warm: a standby pod promoted (until the promotion is seen); Cached: a "
        "new pod on a node holding every artefact; Cold: a new pod elsewhere (creation "
        "to Ready)."
    )
    time_to_ready_seconds: float = Field(
        ge=0, description="The 90th percentile of the recent measurements."
    )
    samples: int = Field(ge=1, description="Measurements it is taken over.")


class ScalerWarmSlice(ApiModel):
    """One slice of the warm pool budget's window."""

    start_time: datetime = Field(description="When the slice begins.")
    gpu_seconds: float = Field(
        ge=0, description="GPU-seconds warm pods beyond warmPool.size held in it."
    )


class ScalerStatus(ApiModel):
    """What the autoscaler must remember across decisions and operator restarts."""

    last_scale_up_time: datetime | None = Field(None, description="Last scale-up.")
    last_scale_down_time: datetime | None = Field(None, description="Last scale-down.")
    panic_since: datetime | None = Field(None, description="Start of the current panic.")
    panic_last_triggered_time: datetime | None = Field(
        None, description="Last time the panic threshold was crossed."
    )
    last_demand_time: datetime | None = Field(
        None, description="Last time any demand was seen (the scale-to-zero idle clock)."
    )
    recommendations: list[ScalerRecommendation] = Field(
        default_factory=list,
        max_length=64,
        description="Recommendations inside the scale-down stabilisation window.",
        json_schema_extra=LIST_ATOMIC,
    )
    time_to_ready_seconds: float | None = Field(
        None,
        ge=0,
        description="The time to ready the last decision planned with: that of the start "
        "path its next pods get (see startPaths), else measured over all pods.",
    )
    start_paths: list[ScalerStartPath] = Field(
        default_factory=list,
        max_length=3,
        description="Time to ready measured per start path (Warm, Cached, Cold).",
        json_schema_extra=list_map("path"),
    )
    panic_peak_replicas: int | None = Field(
        None, ge=0, description="The current panic's highest steady size (its floor)."
    )
    bursts: list[ScalerBurst] = Field(
        default_factory=list,
        max_length=8,
        description="Crowds remembered for the learning warm pool (warmPool.maxSize).",
        json_schema_extra=LIST_ATOMIC,
    )
    budget_counted_time: datetime | None = Field(
        None, description="Requests before this are counted in budgetSlices."
    )
    budget_slices: list[ScalerBudgetSlice] = Field(
        default_factory=list,
        max_length=16,
        description="The error budget's window (latencySLO.errorBudget), oldest first.",
        json_schema_extra=LIST_ATOMIC,
    )
    warm_budget_counted_time: datetime | None = Field(
        None, description="What the warm pool held before this is counted in warmBudgetSlices."
    )
    warm_budget_slices: list[ScalerWarmSlice] = Field(
        default_factory=list,
        max_length=16,
        description="The warm pool budget's window (warmPool.budget), oldest first.",
        json_schema_extra=LIST_ATOMIC,
    )


class TideStatus(ApiModel):
    """The tide profile learned so far (spec.tide), compact, so a restart keeps it."""

    period_seconds: float = Field(gt=0, description="The cycle it was learned of, in seconds.")
    buckets: int = Field(ge=1, le=1440, description="Parts of the cycle learned apart.")
    cycle: int = Field(description="The newest cycle it holds (cycles since the Unix epoch).")
    profile: str = Field(
        max_length=65536,
        description="One entry per bucket, comma-separated: empty where nothing was seen, "
        "else age:peak:learned:cycles (age: how many cycles before `cycle` the peak was "
        "seen; learned: what the cycles before it taught, empty before a second cycle; "
        "values rounded to 4 significant digits).",
    )


class GPUInferenceServiceStatus(ApiModel):
    """What the autoscaler observed and decided."""

    replicas: int = Field(0, ge=0, description="Serving pods that exist.")
    ready_replicas: int = Field(0, ge=0, description="Serving pods that are Ready.")
    desired_replicas: int = Field(0, ge=0, description="Replicas the autoscaler wants.")
    warm_replicas: int = Field(0, ge=0, description="Idle warm-pool pods that are Ready.")
    last_decision: ScaleDecision | None = Field(None, description="The latest scale decision.")
    conditions: list[Condition] = conditions_field()
    observed_generation: int | None = Field(
        None, ge=0, description="The .metadata.generation the status reflects."
    )
    selector: str | None = Field(
        None,
        max_length=1024,
        description="Label selector of the serving pods, for the scale subresource.",
    )
    scaler: ScalerStatus | None = Field(
        None, description="The autoscaler's memory (stabilisation, panic, idle clock)."
    )
    tide: TideStatus | None = Field(
        None, description="The tide profile learned so far (with spec.tide), written now and then."
    )


class GPUInferenceService(ApiModel):
    """Model-serving GPU pods that scale on load, down to zero, with a warm pool."""

    api_version: Literal["egpu.io/v1alpha1"] = Field(
        "egpu.io/v1alpha1", description="egpu.io/v1alpha1"
    )
    kind: Literal["GPUInferenceService"] = Field(
        "GPUInferenceService", description="GPUInferenceService"
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: GPUInferenceServiceSpec = Field(description="The serving pods and how they scale.")
    status: GPUInferenceServiceStatus | None = Field(
        None, description="What the autoscaler observed and decided."
    )
