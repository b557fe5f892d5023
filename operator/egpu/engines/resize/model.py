"""Typed inputs and outputs of the in-place resize engine.

Units: cpu in millicores (int for requests and limits, float for measured usage),
memory in bytes. Every time is a float of seconds since the Unix epoch; every
duration is a float of seconds. The engine never reads a clock: `now` is passed in.

Only cpu and memory exist in these types. Kubernetes cannot resize GPUs or other
extended resources in place, so the engine has no way to name them, let alone change
them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

GIB = 1024**3


class ResourceKind(enum.StrEnum):
    CPU = "cpu"
    MEMORY = "memory"


class QoSClass(enum.StrEnum):
    """Values of the Pod's `status.qosClass`."""

    GUARANTEED = "Guaranteed"
    BURSTABLE = "Burstable"
    BEST_EFFORT = "BestEffort"


class ResizeMode(enum.StrEnum):
    OFF = "Off"
    RECOMMEND = "Recommend"
    AUTO = "Auto"


class Verdict(enum.StrEnum):
    """What the caller should do with the pod."""

    NO_CHANGE = "NoChange"
    RECOMMEND = "Recommend"  # publish in status only
    APPLY = "Apply"  # patch pods/resize
    DOES_NOT_FIT = "DoesNotFit"  # wait for room or move the pod, per policy


class Reason(enum.StrEnum):
    """Machine-readable cause; CamelCase so it can be a condition or Event reason."""

    # per resource
    WITHIN_BAND = "WithinHysteresisBand"
    SCALE_UP = "ScaleUpForUsage"
    MEMORY_PRESSURE = "MemoryPressure"
    CPU_THROTTLING = "CpuThrottling"
    SCALE_DOWN = "ScaleDownStabilized"
    SCALE_DOWN_STABILIZING = "ScaleDownStabilizing"
    OUT_OF_BOUNDS = "OutOfBounds"
    AT_MAXIMUM = "AtMaximum"
    NOT_SET = "ResourceNotSet"
    NO_METRICS = "NoMetrics"
    # per pod
    MODE_OFF = "ModeOff"
    BEST_EFFORT = "BestEffortPod"
    RESIZE_IN_PROGRESS = "ResizeInProgress"
    QOS_WOULD_CHANGE = "QoSWouldChange"
    NO_CHANGE = "NoChange"
    RECOMMENDED = "Recommended"
    FITS_NODE = "FitsNode"
    INSUFFICIENT_NODE_RESOURCES = "InsufficientNodeResources"


@dataclass(frozen=True, slots=True)
class UsageSample:
    """One measurement of a container.

    `memory_bytes` is the working set (what the OOM killer counts).
    `cpu_throttled_fraction` is throttled CFS periods / all periods over the scrape
    interval, 0..1, or None where the source does not report it.
    """

    at: float
    cpu_millicores: float
    memory_bytes: float
    cpu_throttled_fraction: float | None = None


@dataclass(frozen=True, slots=True)
class ContainerResources:
    """Requests and limits of one container; None means the key is absent."""

    cpu_request: int | None = None
    cpu_limit: int | None = None
    memory_request: int | None = None
    memory_limit: int | None = None

    def request(self, kind: ResourceKind) -> int | None:
        return self.cpu_request if kind is ResourceKind.CPU else self.memory_request

    def limit(self, kind: ResourceKind) -> int | None:
        return self.cpu_limit if kind is ResourceKind.CPU else self.memory_limit

    def with_defaulted_requests(self) -> ContainerResources:
        """What the API server stores: an absent request defaults to the limit."""
        return ContainerResources(
            cpu_request=self.cpu_limit if self.cpu_request is None else self.cpu_request,
            cpu_limit=self.cpu_limit,
            memory_request=(
                self.memory_limit if self.memory_request is None else self.memory_request
            ),
            memory_limit=self.memory_limit,
        )


@dataclass(frozen=True, slots=True)
class ContainerState:
    """A container's spec resources and its recent usage, any order, any age."""

    name: str
    resources: ContainerResources
    samples: tuple[UsageSample, ...] = ()


@dataclass(frozen=True, slots=True)
class ResourcePolicy:
    """Bounds and step for one resource. Bounds apply to requests; limits follow ratio."""

    min: int
    max: int
    step: int
    target_utilization: float

    def __post_init__(self) -> None:
        if self.step <= 0:
            raise ValueError("step must be positive")
        if not 0 < self.min <= self.max:
            raise ValueError("bounds need 0 < min <= max")
        if not 0 < self.target_utilization <= 1:
            raise ValueError("target_utilization must be in (0, 1]")


DEFAULT_CPU_POLICY = ResourcePolicy(min=500, max=64_000, step=500, target_utilization=0.7)
DEFAULT_MEMORY_POLICY = ResourcePolicy(min=GIB, max=512 * GIB, step=GIB, target_utilization=0.8)


@dataclass(frozen=True, slots=True)
class ResizePolicy:
    """How a workload wants its containers resized.

    - hysteresis: no change while the wanted request is within this fraction of the
      current one, so noise never makes it flap.
    - scale_up_lookback_s: growth looks at the peak over this recent span.
    - scale_down_stabilization_s: shrink only when the last resize is at least this old
      and the samples span at least this long; it sizes on the peak over the span.
    - max_scale_down_steps: steps a single shrink may take away.
    - memory_pressure_ratio: working set / memory limit at which growth is urgent.
    - cpu_throttling_threshold: mean throttled fraction at which cpu growth is urgent.
    - cpu_pressure_ratio: usage / cpu limit counted as pressure when throttling is
      not reported.
    - memory_limit_margin: a memory limit is never lowered below peak * (1 + margin).
    """

    mode: ResizeMode = ResizeMode.RECOMMEND
    cpu: ResourcePolicy = DEFAULT_CPU_POLICY
    memory: ResourcePolicy = DEFAULT_MEMORY_POLICY
    hysteresis: float = 0.1
    scale_up_lookback_s: float = 60.0
    scale_down_stabilization_s: float = 300.0
    max_scale_down_steps: int = 1
    memory_pressure_ratio: float = 0.9
    cpu_throttling_threshold: float = 0.1
    cpu_pressure_ratio: float = 0.9
    memory_limit_margin: float = 0.25

    def __post_init__(self) -> None:
        if not 0 <= self.hysteresis < 1:
            raise ValueError("hysteresis must be in [0, 1)")
        if self.scale_up_lookback_s <= 0 or self.scale_down_stabilization_s < 0:
            raise ValueError("windows must be positive")
        if self.max_scale_down_steps < 1:
            raise ValueError("max_scale_down_steps must be at least 1")
        if not 0 < self.memory_pressure_ratio <= 1 or not 0 < self.cpu_pressure_ratio <= 1:
            raise ValueError("pressure ratios must be in (0, 1]")
        # A limit grown to peak * (1 + margin) must sit below the pressure line, or the
        # next decision would see pressure again and grow without end.
        if (1 + self.memory_limit_margin) * self.memory_pressure_ratio <= 1:
            raise ValueError("memory_limit_margin too small for memory_pressure_ratio")

    def for_kind(self, kind: ResourceKind) -> ResourcePolicy:
        return self.cpu if kind is ResourceKind.CPU else self.memory


@dataclass(frozen=True, slots=True)
class NodeRoom:
    """Node allocatable minus the requests of every pod on it, this pod included."""

    free_cpu_millicores: int
    free_memory_bytes: int


@dataclass(frozen=True, slots=True)
class PodResizeInput:
    """Everything the engine reads about one pod.

    `qos` is the pod's `status.qosClass`; when None it is computed from the containers
    (pass it when the pod has init containers with resources, which also count).
    Keep samples for at least `scale_down_stabilization_s`, or it never shrinks.
    """

    containers: tuple[ContainerState, ...]
    policy: ResizePolicy
    node: NodeRoom
    last_resize_at: float | None = None
    qos: QoSClass | None = None
    resize_in_progress: bool = False


@dataclass(frozen=True, slots=True)
class ResourceDecision:
    """The verdict for one resource of one container.

    `current_*` are after API-server defaulting (an absent request equals the limit).
    """

    kind: ResourceKind
    current_request: int | None
    current_limit: int | None
    new_request: int | None
    new_limit: int | None
    reason: Reason
    message: str
    urgent: bool = False

    @property
    def changed(self) -> bool:
        return (self.new_request, self.new_limit) != (self.current_request, self.current_limit)


@dataclass(frozen=True, slots=True)
class Recommendation:
    """New cpu and memory requests and limits for one container."""

    container: str
    cpu: ResourceDecision
    memory: ResourceDecision

    @property
    def changed(self) -> bool:
        return self.cpu.changed or self.memory.changed

    @property
    def urgent(self) -> bool:
        return (self.cpu.urgent and self.cpu.changed) or (
            self.memory.urgent and self.memory.changed
        )

    @property
    def current(self) -> ContainerResources:
        return ContainerResources(
            self.cpu.current_request,
            self.cpu.current_limit,
            self.memory.current_request,
            self.memory.current_limit,
        )

    @property
    def target(self) -> ContainerResources:
        return ContainerResources(
            self.cpu.new_request, self.cpu.new_limit, self.memory.new_request, self.memory.new_limit
        )

    @property
    def reason(self) -> Reason:
        """The weightiest of the two: an urgent change, then any change, then cpu's."""
        for decision in (self.memory, self.cpu):
            if decision.urgent and decision.changed:
                return decision.reason
        for decision in (self.memory, self.cpu):
            if decision.changed:
                return decision.reason
        return self.cpu.reason

    @property
    def message(self) -> str:
        return f"{self.container}: {self.cpu.message}; {self.memory.message}"


@dataclass(frozen=True, slots=True)
class PodResizeDecision:
    """The engine's answer for one pod.

    `cpu_delta_millicores` / `memory_delta_bytes` are the change of the pod's total
    requests (negative when shrinking); `fits_node` says whether the node's free
    allocatable covers the growth. `recommendations` is empty when the engine did not
    look (mode Off, BestEffort pod, resize in progress).
    """

    verdict: Verdict
    reason: Reason
    message: str
    qos: QoSClass
    recommendations: tuple[Recommendation, ...] = ()
    fits_node: bool = True
    cpu_delta_millicores: int = 0
    memory_delta_bytes: int = 0
    urgent: bool = False

    @property
    def changes(self) -> tuple[Recommendation, ...]:
        return tuple(r for r in self.recommendations if r.changed)


__all__ = [
    "DEFAULT_CPU_POLICY",
    "DEFAULT_MEMORY_POLICY",
    "GIB",
    "ContainerResources",
    "ContainerState",
    "NodeRoom",
    "PodResizeDecision",
    "PodResizeInput",
    "QoSClass",
    "Reason",
    "Recommendation",
    "ResizeMode",
    "ResizePolicy",
    "ResourceDecision",
    "ResourceKind",
    "ResourcePolicy",
    "UsageSample",
    "Verdict",
]
