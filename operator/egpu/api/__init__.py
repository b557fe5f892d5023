"""egpu.api: the custom resources, as pydantic models (the CRDs are generated from them).

    GPUWorkload           namespaced  a set of GPU pods placed together (gang, topology,
                                      in-place resize, repair)
    GPUInferenceService   namespaced  serving pods that autoscale on load, to zero
    GPUTopology           cluster     the network levels, each a node label

`python -m egpu.api.crdgen --out crds/` writes the CRDs; `python -m egpu.api.docgen`
writes docs/api.md.
"""

from egpu.api.base import ApiModel, Rule
from egpu.api.common import Condition, PodTemplate
from egpu.api.inference import (
    DEFAULT_POD_METRIC_NAMES,
    GPUInferenceService,
    GPUInferenceServiceSpec,
    GPUInferenceServiceStatus,
    LatencySLO,
    MetricSource,
    PodMetricsSource,
    PrometheusSource,
    ScaleDecision,
    ScaleDown,
    ScalerRecommendation,
    ScalerStatus,
    ScaleUp,
    ScalingBehavior,
    ScalingPolicy,
    ScheduleWindow,
    WarmPool,
)
from egpu.api.topology import GPUTopology, GPUTopologySpec, GPUTopologyStatus, LevelDomains
from egpu.api.workload import (
    Checkpoint,
    CpuBounds,
    GangPolicy,
    GPUWorkload,
    GPUWorkloadSpec,
    GPUWorkloadStatus,
    MemoryBounds,
    Placement,
    RepairPolicy,
    ResizeHeadroom,
    ResizePolicy,
    TopologyConstraint,
)

__all__ = [
    "DEFAULT_POD_METRIC_NAMES",
    "ApiModel",
    "Checkpoint",
    "Condition",
    "CpuBounds",
    "GPUInferenceService",
    "GPUInferenceServiceSpec",
    "GPUInferenceServiceStatus",
    "GPUTopology",
    "GPUTopologySpec",
    "GPUTopologyStatus",
    "GPUWorkload",
    "GPUWorkloadSpec",
    "GPUWorkloadStatus",
    "GangPolicy",
    "LatencySLO",
    "LevelDomains",
    "MemoryBounds",
    "MetricSource",
    "Placement",
    "PodMetricsSource",
    "PodTemplate",
    "PrometheusSource",
    "RepairPolicy",
    "ResizeHeadroom",
    "ResizePolicy",
    "Rule",
    "ScaleDecision",
    "ScaleDown",
    "ScaleUp",
    "ScalerRecommendation",
    "ScalerStatus",
    "ScalingBehavior",
    "ScalingPolicy",
    "ScheduleWindow",
    "TopologyConstraint",
    "WarmPool",
]
