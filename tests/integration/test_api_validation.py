"""The CRDs at a real API server: the examples are accepted and defaulted as the models
say, malformed objects are refused at the door naming the field, and the printer
columns, category and scale subresource work with kubectl."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from egpu.api import ApiModel, GPUInferenceService, GPUTopology, GPUWorkload
from egpu.api.inference import GPUInferenceServiceStatus
from egpu.engines.autoscaling import ScalerMemory
from egpu.engines.autoscaling.budget import BudgetLedger, BudgetSlice
from egpu.engines.autoscaling.tide import TidePolicy, empty_profile, observe
from egpu.engines.autoscaling.warm_budget import WarmLedger, WarmSlice
from egpu.engines.inference.policy import (
    memory_from_status,
    memory_to_status,
    tide_from_status,
    tide_to_status,
)
from harness import Cluster

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
MODELS: dict[str, type[ApiModel]] = {
    "GPUWorkload": GPUWorkload,
    "GPUInferenceService": GPUInferenceService,
    "GPUTopology": GPUTopology,
}

DELETE = object()  # in a patch: remove this key


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return loaded


def merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`base` with `patch` merged in: dicts merge, other values (lists too) replace."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@pytest.fixture(scope="module")
def ns(crds: Cluster) -> Iterator[str]:
    name = f"api-{uuid.uuid4().hex[:8]}"
    crds.kubectl("create", "namespace", name)
    yield name
    crds.kubectl("delete", "namespace", name, "--wait=false", check=False)


def server_dry_run(cluster: Cluster, ns: str, obj: dict[str, Any]) -> Any:
    if obj["kind"] == "GPUTopology":  # cluster-scoped: keep clear of real ones
        obj = merged(obj, {"metadata": {"name": f"dry-{uuid.uuid4().hex[:8]}"}})
    return cluster.kubectl(
        "create", "--dry-run=server", "-n", ns, "-o", "json", "-f", "-",
        input=json.dumps(obj), check=False,
    )  # fmt: skip


# --- accepted ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_is_accepted_and_defaulted_like_the_models(
    crds: Cluster, ns: str, name: str
) -> None:
    obj = example(name)
    proc = server_dry_run(crds, ns, obj)
    assert proc.returncode == 0, proc.stderr
    stored = json.loads(proc.stdout)
    model = MODELS[obj["kind"]]
    # The server's defaults are the models' defaults: what it stored, read back without
    # filling anything in, equals the example with every model default filled in.
    as_stored = model.model_validate({"spec": stored["spec"]})
    assert (
        as_stored.model_dump(mode="json", by_alias=True, exclude_unset=True)["spec"]
        == (model.model_validate(obj).to_wire()["spec"])
    )


# --- refused -----------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    id: str
    base: str  # example file the bad object starts from
    patch: dict[str, Any]
    field: str  # the path the server must name
    says: str  # text the error must contain (the rule's message where there is one)


def gw(**spec: Any) -> dict[str, Any]:
    return {"spec": spec}


TRAINING = "training-gang-64.yaml"
NOTEBOOK = "notebook-1gpu.yaml"
SERVICE = "inference-scale-to-zero.yaml"
TOPOLOGY = "topology.yaml"
CPU = {"min": 1, "max": 16, "step": "500m"}
MEM = {"min": "8Gi", "max": "128Gi", "step": "1Gi"}


def cpu(**bounds: Any) -> dict[str, Any]:
    return gw(resize={"mode": "Auto", "cpu": {**CPU, **bounds}})


def mem(**bounds: Any) -> dict[str, Any]:
    return gw(resize={"mode": "Auto", "memory": {**MEM, **bounds}})


def scaling(**fields: Any) -> dict[str, Any]:
    return gw(scaling=fields)


def behavior(**fields: Any) -> dict[str, Any]:
    return gw(behavior=fields)


def window(**fields: Any) -> dict[str, Any]:
    return gw(schedule=[{"name": "w", "minReplicas": 1, **fields}])


def levels(*labels: str) -> dict[str, Any]:
    return gw(levels=[{"nodeLabel": label} for label in labels])


def container(name: str = "main", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "registry.local/egpu/sim:latest", **fields}


def sized(
    requests: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    name: str = "main",
    **fields: Any,
) -> dict[str, Any]:
    """A container with these requests and limits."""
    resources = {k: v for k, v in (("requests", requests), ("limits", limits)) if v is not None}
    return container(name, resources=resources, **fields)


def pod(
    *containers: dict[str, Any], init: list[dict[str, Any]] | None = None, **spec: Any
) -> dict[str, Any]:
    """A patch whose template has these containers (and init containers)."""
    body: dict[str, Any] = {"containers": list(containers), **spec}
    if init is not None:
        body["initContainers"] = init
    return gw(template={"spec": body})


def pod_meta(**metadata: Any) -> dict[str, Any]:
    return gw(template={"metadata": metadata})


# The notebook's container asks for cpu 2 and memory 16Gi.
NOTEBOOK_SIZE = {"cpu": "2", "memory": "16Gi"}
QUANTITY = "must be a non-negative quantity, e.g. 500m, 2 or 4Gi"
NODE_NAME = (
    "nodeName is not allowed: egpu-scheduler places every pod; remove it and use "
    "nodeSelector or affinity instead"
)


PROM = {"url": "http://prometheus.monitoring:9090", "query": "sum(inflight)"}
POD_METRICS = {"port": 8080}

REFUSALS = [
    # GPUWorkload: replicas and GPUs
    Refusal("gw-min-over-max", TRAINING, gw(minReplicas=8, maxReplicas=4),
            "spec.minReplicas", "minReplicas must not be greater than maxReplicas"),
    Refusal("gw-replicas-under-min", TRAINING, gw(minReplicas=9, maxReplicas=16),
            "spec.replicas", "replicas must not be less than minReplicas"),
    Refusal("gw-replicas-over-max", NOTEBOOK, gw(replicas=3, maxReplicas=2),
            "spec.replicas", "replicas must not be greater than maxReplicas"),
    Refusal("gw-max-replicas-zero", NOTEBOOK, gw(maxReplicas=0),
            "spec.maxReplicas", "greater than or equal to 1"),
    Refusal("gw-replicas-zero", NOTEBOOK, gw(replicas=0),
            "spec.replicas", "greater than or equal to 1"),
    Refusal("gw-zero-gpus", NOTEBOOK, gw(gpusPerPod=0),
            "spec.gpusPerPod", "greater than or equal to 1"),
    Refusal("gw-negative-gpus", NOTEBOOK, gw(gpusPerPod=-2),
            "spec.gpusPerPod", "greater than or equal to 1"),
    Refusal("gw-too-many-gpus", NOTEBOOK, gw(gpusPerPod=65),
            "spec.gpusPerPod", "less than or equal to 64"),
    Refusal("gw-bad-gpu-model", NOTEBOOK, gw(gpuModel="NVIDIA H100"),
            "spec.gpuModel", "must be a valid label value"),
    Refusal("gw-name-too-long", NOTEBOOK, {"metadata": {"name": "n" * 64}},
            "metadata.name", "may not be more than 63"),
    Refusal("gw-unknown-field", NOTEBOOK, gw(gpus=2),
            "spec.gpus", "unknown field"),
    # GPUWorkload: pod template
    Refusal("gw-template-without-containers", NOTEBOOK,
            gw(template={"spec": {"containers": DELETE}}),
            "spec.template.spec.containers", "Required value"),
    Refusal("gw-template-empty-containers", NOTEBOOK, gw(template={"spec": {"containers": []}}),
            "spec.template.spec.containers", "at least 1 items"),
    Refusal("gw-container-without-image", NOTEBOOK,
            gw(template={"spec": {"containers": [{"name": "c"}]}}),
            "spec.template.spec.containers[0].image", "Required value"),
    Refusal("gw-cpu-request-not-a-quantity", NOTEBOOK, pod(sized({"cpu": "abc"})),
            "spec.template.spec.containers[0].resources.requests[cpu]", QUANTITY),
    Refusal("gw-memory-limit-not-a-quantity", NOTEBOOK,
            pod(container("side"), sized(limits={"memory": "16 GiB"})),
            "spec.template.spec.containers[1].resources.limits[memory]", QUANTITY),
    Refusal("gw-negative-request", NOTEBOOK, pod(sized({"cpu": -1})),
            "spec.template.spec.containers[0].resources.requests[cpu]", QUANTITY),
    Refusal("gw-fractional-cpu-number", NOTEBOOK, pod(sized({"cpu": 0.5})),
            "spec.template.spec.containers[0].resources.requests.cpu",
            "must be of type integer,string"),
    Refusal("gw-init-container-request-not-a-quantity", NOTEBOOK,
            pod(container(), init=[sized({"cpu": "abc"}, name="setup")]),
            "spec.template.spec.initContainers[0].resources.requests[cpu]", QUANTITY),
    Refusal("gw-request-over-limit", NOTEBOOK,
            pod(sized({"cpu": 1, "memory": "16Gi"}, {"memory": "8Gi"})),
            "spec.template.spec.containers[0].resources.requests",
            "the memory request must not be greater than its limit"),
    Refusal("gw-unknown-resource", NOTEBOOK, pod(sized({"cpus": 2})),
            "spec.template.spec.containers[0].resources.requests",
            "unknown resource 'cpus': a container resource is cpu, memory"),
    Refusal("gw-duplicate-container-names", NOTEBOOK, pod(container("a"), container("a")),
            "spec.template.spec.containers[1]", 'Duplicate value: {"name":"a"}'),
    Refusal("gw-duplicate-init-container-names", NOTEBOOK,
            pod(container(), init=[container("setup"), container("setup")]),
            "spec.template.spec.initContainers[1]", 'Duplicate value: {"name":"setup"}'),
    Refusal("gw-init-container-named-like-a-container", NOTEBOOK,
            pod(container("main"), init=[container("prep"), container("main")]),
            "spec.template.spec.initContainers",
            "init container 'main' shares its name with a container"),
    Refusal("gw-template-bad-label-key", TRAINING, pod_meta(labels={"app name": "x"}),
            "spec.template.metadata.labels", "invalid label key 'app name'"),
    Refusal("gw-template-bad-label-prefix", TRAINING, pod_meta(labels={"Egpu.IO/team": "x"}),
            "spec.template.metadata.labels", "invalid label key 'Egpu.IO/team'"),
    Refusal("gw-template-bad-label-value", TRAINING, pod_meta(labels={"app": "llm pretrain"}),
            "spec.template.metadata.labels[app]", "must be a valid label value"),
    Refusal("gw-template-long-label-value", TRAINING, pod_meta(labels={"app": "a" * 64}),
            "spec.template.metadata.labels.app", "may not be more than 63"),
    Refusal("gw-template-label-not-a-string", TRAINING, pod_meta(labels={"version": 2}),
            "spec.template.metadata.labels.version", "must be of type string"),
    Refusal("gw-template-bad-annotation-key", TRAINING,
            pod_meta(annotations={"example.com/a/b": "x"}),
            "spec.template.metadata.annotations", "invalid annotation key 'example.com/a/b'"),
    Refusal("gw-template-node-name", NOTEBOOK, gw(template={"spec": {"nodeName": "gpu-0"}}),
            "spec.template.spec.nodeName", NODE_NAME),
    # GPUWorkload: gang
    Refusal("gw-min-members-over-replicas", TRAINING, gw(gang={"minMembers": 9}),
            "spec.gang.minMembers", "gang.minMembers must not be greater than replicas"),
    Refusal("gw-min-members-without-gang", NOTEBOOK, gw(gang={"minMembers": 1}),
            "spec.gang.minMembers", "minMembers only applies to the AllOrNothing policy"),
    Refusal("gw-unknown-gang-policy", TRAINING, gw(gang={"policy": "Most"}),
            "spec.gang.policy", 'Unsupported value: "Most"'),
    Refusal("gw-bad-gang-timeout", TRAINING, gw(gang={"timeout": "5 minutes"}),
            "spec.gang.timeout", "should match"),
    # GPUWorkload: topology
    Refusal("gw-level-not-a-label-key", TRAINING, gw(topology={"required": "leaf switch"}),
            "spec.topology.required", "must be a valid label key"),
    Refusal("gw-level-bad-prefix", TRAINING, gw(topology={"required": "Egpu.IO/leaf"}),
            "spec.topology.required", "must be a valid label key"),
    Refusal("gw-topology-without-levels", TRAINING, gw(topology={"required": DELETE}),
            "spec.topology.required", "set required, preferred, or both"),
    Refusal("gw-preferred-equals-required", TRAINING,
            gw(topology={"preferred": "egpu.io/leaf"}),
            "spec.topology.preferred", "preferred must name a narrower level than required"),
    Refusal("gw-bad-topology-name", TRAINING, gw(topology={"topologyName": "My_Topology"}),
            "spec.topology.topologyName", "should match"),
    # GPUWorkload: resize
    Refusal("gw-unknown-resize-mode", NOTEBOOK, gw(resize={"mode": "Sometimes"}),
            "spec.resize.mode", 'Unsupported value: "Sometimes"'),
    Refusal("gw-auto-resize-without-bounds", NOTEBOOK,
            gw(resize={"mode": "Auto", "cpu": DELETE, "memory": DELETE}),
            "spec.resize.mode", "Recommend and Auto need cpu or memory bounds"),
    Refusal("gw-cpu-min-over-max", NOTEBOOK, cpu(min=8, max=4),
            "spec.resize.cpu.min", "min must not be greater than max"),
    Refusal("gw-cpu-min-off-step", NOTEBOOK, cpu(min="1200m"),
            "spec.resize.cpu.min", "min must be a whole multiple of step"),
    Refusal("gw-cpu-max-off-step", NOTEBOOK, cpu(max="15.7"),
            "spec.resize.cpu.max", "max must be a whole multiple of step"),
    Refusal("gw-cpu-step-zero", NOTEBOOK, cpu(step=0),
            "spec.resize.cpu.step", "step must be at least 1m"),
    Refusal("gw-cpu-min-zero", NOTEBOOK, cpu(min=0),
            "spec.resize.cpu.min", "min must be greater than zero"),
    Refusal("gw-cpu-not-a-quantity", NOTEBOOK, cpu(max="lots"),
            "spec.resize.cpu.max", "should match"),
    Refusal("gw-memory-min-over-max", NOTEBOOK, mem(min="256Gi"),
            "spec.resize.memory.min", "min must not be greater than max"),
    Refusal("gw-memory-min-off-step", NOTEBOOK, mem(min="1500Mi"),
            "spec.resize.memory.min", "min must be a whole multiple of step"),
    Refusal("gw-memory-max-off-step", NOTEBOOK, mem(max="100G"),
            "spec.resize.memory.max", "max must be a whole multiple of step"),
    Refusal("gw-memory-fractional-step", NOTEBOOK, mem(step="500m"),
            "spec.resize.memory.step", "step must be a positive whole number of bytes"),
    Refusal("gw-unknown-infeasible-action", NOTEBOOK, gw(resize={"onInfeasible": "Evict"}),
            "spec.resize.onInfeasible", 'Unsupported value: "Evict"'),
    Refusal("gw-move-without-auto", NOTEBOOK,
            gw(resize={"mode": "Recommend", "onInfeasible": "Move"}),
            "spec.resize.onInfeasible", "onInfeasible: Move only applies to mode Auto"),
    Refusal("gw-headroom-without-auto", NOTEBOOK,
            gw(resize={"mode": "Recommend", "headroom": {"memory": "2Gi"}}),
            "spec.resize.headroom", "headroom only applies to mode Auto"),
    Refusal("gw-negative-headroom", NOTEBOOK, gw(resize={"headroom": {"cpu": "-1"}}),
            "spec.resize.headroom.cpu", "should match"),
    # GPUWorkload: resize bounds against the template (each container's request)
    Refusal("gw-cpu-max-under-request", NOTEBOOK, cpu(max="1500m"), "spec.resize.cpu.max",
            "resize.cpu.max 1500m contradicts the template: the cpu request of container "
            "'jupyter' (2) is above it"),
    Refusal("gw-cpu-min-over-request", NOTEBOOK, cpu(min=4), "spec.resize.cpu.min",
            "resize.cpu.min 4 contradicts the template: the cpu request of container "
            "'jupyter' (2) is below it"),
    Refusal("gw-memory-max-under-request", NOTEBOOK, mem(max="12Gi"), "spec.resize.memory.max",
            "the memory request of container 'jupyter' (16Gi) is above it"),
    Refusal("gw-memory-min-over-request", NOTEBOOK, mem(min="32Gi"), "spec.resize.memory.min",
            "the memory request of container 'jupyter' (16Gi) is below it"),
    Refusal("gw-cpu-max-under-a-second-container", NOTEBOOK,
            merged(cpu(max=4),
                   pod(sized(NOTEBOOK_SIZE, name="jupyter"), sized({"cpu": 6}, name="side"))),
            "spec.resize.cpu.max", "the cpu request of container 'side' (6) is above it"),
    Refusal("gw-cpu-max-under-a-limit-without-request", NOTEBOOK,
            merged(cpu(max=4), pod(sized(limits={"cpu": 8}, name="jupyter"))),
            "spec.resize.cpu.max", "the cpu request of container 'jupyter' (8) is above it"),
    Refusal("gw-recommend-bounds-contradict-the-template", NOTEBOOK,
            gw(resize={"mode": "Recommend", "cpu": {**CPU, "max": 1}}),
            "spec.resize.cpu.max", "contradicts the template"),
    # GPUWorkload: repair
    Refusal("gw-unknown-repair-policy", TRAINING, gw(repair={"policy": "Pray"}),
            "spec.repair.policy", 'Unsupported value: "Pray"'),
    Refusal("gw-checkpoint-both", TRAINING,
            gw(repair={"checkpoint": {"annotation": "egpu.io/ckpt", "command": ["save"]}}),
            "spec.repair.checkpoint.annotation", "set exactly one of annotation or command"),
    Refusal("gw-checkpoint-neither", TRAINING, gw(repair={"checkpoint": {"annotation": DELETE}}),
            "spec.repair.checkpoint.annotation", "set exactly one of annotation or command"),
    Refusal("gw-checkpoint-without-repair", TRAINING, gw(repair={"policy": "None"}),
            "spec.repair.checkpoint", "a checkpoint needs a repair policy other than None"),
    Refusal("gw-shrink-without-min", TRAINING, gw(repair={"policy": "Shrink"}),
            "spec.minReplicas", "repair policy Shrink needs minReplicas"),
    Refusal("gw-hang-timeout-without-progress", TRAINING, gw(repair={"hangTimeout": "10m"}),
            "spec.repair.hangTimeout", "hangTimeout needs progressAnnotation"),
    Refusal("gw-checkpoint-bad-annotation", TRAINING,
            gw(repair={"checkpoint": {"annotation": "last checkpoint"}}),
            "spec.repair.checkpoint.annotation", "must be a valid label key"),
    Refusal("gw-negative-max-restarts", TRAINING, gw(repair={"maxRestarts": -1}),
            "spec.repair.maxRestarts", "greater than or equal to 0"),
    # GPUInferenceService: replicas
    Refusal("gis-min-over-max", SERVICE, gw(minReplicas=40),
            "spec.minReplicas", "minReplicas must not be greater than maxReplicas"),
    Refusal("gis-max-replicas-zero", SERVICE, gw(maxReplicas=0),
            "spec.maxReplicas", "greater than or equal to 1"),
    Refusal("gis-replicas-over-max", SERVICE, gw(replicas=33),
            "spec.replicas", "replicas must not be greater than maxReplicas"),
    Refusal("gis-replicas-under-min", SERVICE,
            gw(minReplicas=2, replicas=1, behavior={"scaleToZeroAfter": DELETE}),
            "spec.replicas", "replicas must not be less than minReplicas"),
    Refusal("gis-zero-gpus", SERVICE, gw(gpusPerPod=0),
            "spec.gpusPerPod", "greater than or equal to 1"),
    # GPUInferenceService: pod template
    Refusal("gis-cpu-request-not-a-quantity", SERVICE, pod(sized({"cpu": "abc"})),
            "spec.template.spec.containers[0].resources.requests[cpu]", QUANTITY),
    Refusal("gis-init-container-limit-not-a-quantity", SERVICE,
            pod(container(), init=[sized(limits={"memory": "lots"}, name="fetch-model")]),
            "spec.template.spec.initContainers[0].resources.limits[memory]", QUANTITY),
    Refusal("gis-duplicate-container-names", SERVICE, pod(container("s"), container("s")),
            "spec.template.spec.containers[1]", 'Duplicate value: {"name":"s"}'),
    Refusal("gis-template-bad-label-key", SERVICE, pod_meta(labels={"-app": "chat"}),
            "spec.template.metadata.labels", "invalid label key '-app'"),
    Refusal("gis-template-bad-label-value", SERVICE, pod_meta(labels={"app": "chat!"}),
            "spec.template.metadata.labels[app]", "must be a valid label value"),
    Refusal("gis-template-bad-annotation-key", SERVICE,
            pod_meta(annotations={"prometheus io/scrape": "true"}),
            "spec.template.metadata.annotations",
            "invalid annotation key 'prometheus io/scrape'"),
    Refusal("gis-template-node-name", SERVICE, gw(template={"spec": {"nodeName": "gpu-0"}}),
            "spec.template.spec.nodeName", NODE_NAME),
    Refusal("gis-warm-pool-over-max", SERVICE, gw(warmPool={"size": 33}),
            "spec.warmPool.size", "warmPool.size must not be greater than maxReplicas"),
    Refusal("gis-warm-pool-ceiling-below-size", SERVICE, gw(warmPool={"size": 4, "maxSize": 2}),
            "spec.warmPool.maxSize", "warmPool.maxSize must not be less than warmPool.size"),
    Refusal("gis-warm-pool-ceiling-over-max", SERVICE, gw(warmPool={"maxSize": 33}),
            "spec.warmPool.maxSize", "warmPool.maxSize must not be greater than maxReplicas"),
    Refusal("gis-warm-budget-without-ceiling", SERVICE, gw(warmPool={"budget": {"gpuHours": 8}}),
            "spec.warmPool.budget",
            "warmPool.budget needs maxSize: only a pool that learns is budgeted"),
    Refusal("gis-warm-budget-of-nothing", SERVICE,
            gw(warmPool={"maxSize": 8, "budget": {"gpuHours": 0}}),
            "spec.warmPool.budget.gpuHours", "greater than 0"),
    Refusal("gis-warm-budget-short-window", SERVICE,
            gw(warmPool={"maxSize": 8, "budget": {"gpuHours": 8, "window": "30m"}}),
            "spec.warmPool.budget.window", "window must be at least 1h"),
    # GPUInferenceService: the signal
    Refusal("gis-unknown-metric", SERVICE, scaling(metric="RequestsPerSecond"),
            "spec.scaling.metric", 'Unsupported value: "RequestsPerSecond"'),
    Refusal("gis-latency-metric-without-slo", SERVICE,
            scaling(metric="LatencySLO", target=DELETE),
            "spec.scaling.latencySLO", "metric LatencySLO needs latencySLO"),
    Refusal("gis-slo-without-latency-metric", SERVICE,
            scaling(latencySLO={"target": "500ms"}),
            "spec.scaling.latencySLO", "latencySLO only applies to metric LatencySLO"),
    Refusal("gis-latency-metric-with-target", SERVICE,
            scaling(metric="LatencySLO", latencySLO={"target": "500ms"}),
            "spec.scaling.target", "metric LatencySLO takes its target from latencySLO.target"),
    Refusal("gis-missing-target", SERVICE, scaling(target=DELETE),
            "spec.scaling.target", "target is required for this metric"),
    Refusal("gis-zero-target", SERVICE, scaling(target=0),
            "spec.scaling.target", "target must be greater than zero"),
    Refusal("gis-gpu-utilization-over-100", SERVICE,
            scaling(metric="GPUUtilization", target=150),
            "spec.scaling.target", "a GPUUtilization target is a percentage: at most 100"),
    Refusal("gis-zero-latency-target", SERVICE,
            scaling(metric="LatencySLO", target=DELETE, latencySLO={"target": "0s"}),
            "spec.scaling.latencySLO.target", "target must be longer than 0s"),
    Refusal("gis-low-percentile", SERVICE,
            scaling(metric="LatencySLO", target=DELETE,
                    latencySLO={"target": "1s", "percentile": 30}),
            "spec.scaling.latencySLO.percentile", "greater than or equal to 50"),
    Refusal("gis-error-budget-looser-than-nothing", SERVICE,
            scaling(metric="LatencySLO", target=DELETE,
                    latencySLO={"target": "1s", "percentile": 95,
                                "errorBudget": {"loosestPercentile": 99}}),
            "spec.scaling.latencySLO.errorBudget.loosestPercentile",
            "errorBudget.loosestPercentile must not be greater than percentile"),
    Refusal("gis-error-budget-short-window", SERVICE,
            scaling(metric="LatencySLO", target=DELETE,
                    latencySLO={"target": "1s", "errorBudget": {"window": "30s"}}),
            "spec.scaling.latencySLO.errorBudget.window", "window must be at least 1m"),
    Refusal("gis-both-sources", SERVICE,
            scaling(source={"prometheus": PROM, "podMetrics": POD_METRICS}),
            "spec.scaling.source.prometheus", "set exactly one of prometheus or podMetrics"),
    Refusal("gis-no-source", SERVICE, scaling(source={"podMetrics": DELETE}),
            "spec.scaling.source.prometheus", "set exactly one of prometheus or podMetrics"),
    Refusal("gis-prometheus-not-http", SERVICE,
            scaling(source={"podMetrics": DELETE, "prometheus": {**PROM, "url": "ftp://x"}}),
            "spec.scaling.source.prometheus.url", "url must be an absolute http or https URL"),
    Refusal("gis-prometheus-empty-query", SERVICE,
            scaling(source={"podMetrics": DELETE, "prometheus": {**PROM, "query": ""}}),
            "spec.scaling.source.prometheus.query", "at least 1 chars long"),
    Refusal("gis-pod-metrics-port-zero", SERVICE, scaling(source={"podMetrics": {"port": 0}}),
            "spec.scaling.source.podMetrics.port", "greater than or equal to 1"),
    Refusal("gis-pod-metrics-relative-path", SERVICE,
            scaling(source={"podMetrics": {"path": "metrics"}}),
            "spec.scaling.source.podMetrics.path", "should match"),
    Refusal("gis-pod-metrics-bad-name", SERVICE,
            scaling(source={"podMetrics": {"metricName": "in-flight"}}),
            "spec.scaling.source.podMetrics.metricName", "should match"),
    # GPUInferenceService: behaviour
    Refusal("gis-panic-window-under-scrape", SERVICE, behavior(panicWindow="1s"),
            "spec.behavior.panicWindow", "panicWindow must not be shorter than scrapeInterval"),
    Refusal("gis-stable-window-under-panic", SERVICE, behavior(stableWindow="5s"),
            "spec.behavior.stableWindow", "stableWindow must not be shorter than panicWindow"),
    Refusal("gis-scrape-too-fast", SERVICE, behavior(scrapeInterval="50ms"),
            "spec.behavior.scrapeInterval", "scrapeInterval must be at least 100ms"),
    Refusal("gis-stable-window-over-1h", SERVICE,
            behavior(stableWindow="2h", scaleToZeroAfter="3h"),
            "spec.behavior.stableWindow", "stableWindow must be at most 1h"),
    Refusal("gis-bad-duration", SERVICE, behavior(stableWindow="1 minute"),
            "spec.behavior.stableWindow", "should match"),
    Refusal("gis-panic-threshold-one", SERVICE, behavior(panicThreshold=1.0),
            "spec.behavior.panicThreshold", "greater than 1"),
    Refusal("gis-scale-up-rate-under-one", SERVICE, behavior(scaleUp={"maxRate": 0.5}),
            "spec.behavior.scaleUp.maxRate", "greater than or equal to 1"),
    Refusal("gis-zero-after-without-min-zero", SERVICE, gw(minReplicas=1),
            "spec.behavior.scaleToZeroAfter", "scaleToZeroAfter needs minReplicas 0"),
    Refusal("gis-zero-after-under-stable", SERVICE, behavior(scaleToZeroAfter="30s"),
            "spec.behavior.scaleToZeroAfter",
            "scaleToZeroAfter must not be shorter than stableWindow"),
    # GPUInferenceService: schedule
    Refusal("gis-schedule-bad-time", SERVICE, window(start="25:00", end="06:00"),
            "spec.schedule[0].start", "should match"),
    Refusal("gis-schedule-cron-and-times", SERVICE,
            window(cron="0 8 * * 1-5", duration="12h", start="08:00", end="20:00"),
            "spec.schedule[0].cron", "set either cron (with duration) or start and end"),
    Refusal("gis-schedule-no-time", SERVICE, window(),
            "spec.schedule[0].cron", "set either cron (with duration) or start and end"),
    Refusal("gis-schedule-start-without-end", SERVICE, window(start="08:00"),
            "spec.schedule[0].end", "start and end go together"),
    Refusal("gis-schedule-cron-without-duration", SERVICE, window(cron="@daily"),
            "spec.schedule[0].duration", "duration is required with cron, and only with cron"),
    Refusal("gis-schedule-empty-window", SERVICE, window(start="08:00", end="08:00"),
            "spec.schedule[0].end", "end must differ from start"),
    Refusal("gis-schedule-bad-cron", SERVICE, window(cron="every day", duration="1h"),
            "spec.schedule[0].cron", "should match"),
    Refusal("gis-schedule-over-max", SERVICE,
            window(start="08:00", end="20:00", minReplicas=64), "spec.schedule",
            "a schedule window's minReplicas must not be greater than maxReplicas"),
    Refusal("gis-schedule-duplicate-names", SERVICE,
            gw(schedule=[{"name": "w", "start": "08:00", "end": "12:00", "minReplicas": 1},
                         {"name": "w", "start": "13:00", "end": "18:00", "minReplicas": 1}]),
            "spec.schedule[1]", "Duplicate value"),
    # GPUTopology
    Refusal("topo-no-levels", TOPOLOGY, levels(),
            "spec.levels", "at least 1 items"),
    Refusal("topo-too-many-levels", TOPOLOGY, levels(*[f"egpu.io/l{i}" for i in range(9)]),
            "spec.levels", "must have at most 8 items"),
    Refusal("topo-duplicate-level", TOPOLOGY, levels("egpu.io/leaf", "egpu.io/leaf"),
            "spec.levels[1]", "Duplicate value"),
    Refusal("topo-level-not-a-label-key", TOPOLOGY, levels("egpu.io/leaf switch"),
            "spec.levels[0].nodeLabel", "must be a valid label key"),
    Refusal("topo-hostname-not-last", TOPOLOGY, levels("kubernetes.io/hostname", "egpu.io/leaf"),
            "spec.levels", "kubernetes.io/hostname is the innermost level: it must come last"),
]  # fmt: skip


def test_the_refusal_table_is_at_least_thirty_distinct_cases() -> None:
    assert len({r.id for r in REFUSALS}) == len(REFUSALS) >= 30
    assert len({(r.field, r.says) for r in REFUSALS}) >= 30


@pytest.mark.parametrize("case", REFUSALS, ids=[r.id for r in REFUSALS])
def test_malformed_objects_are_refused_naming_the_field(
    crds: Cluster, ns: str, case: Refusal
) -> None:
    bad = merged(example(case.base), case.patch)
    proc = server_dry_run(crds, ns, bad)
    assert proc.returncode != 0, f"accepted: {json.dumps(bad['spec'])}"
    assert case.field in proc.stderr, proc.stderr
    assert case.says in proc.stderr, proc.stderr


@dataclass(frozen=True)
class Acceptance:
    id: str
    base: str
    patch: dict[str, Any]


RESTARTS_ON_CPU = [{"resourceName": "cpu", "restartPolicy": "RestartContainer"}]

# Near misses of the refusals above: what the pods would accept, or what the resize loop
# leaves alone, must pass, and pass through unpruned.
ACCEPTED = [
    Acceptance("bounds-with-resize-off", NOTEBOOK,
               gw(resize={"mode": "Off", "cpu": {**CPU, "max": 1}})),
    Acceptance("bounds-skip-a-resource-that-restarts", NOTEBOOK,
               merged(cpu(max=1), pod(sized(NOTEBOOK_SIZE, name="jupyter",
                                            resizePolicy=RESTARTS_ON_CPU)))),
    Acceptance("bounds-skip-init-containers", NOTEBOOK,
               merged(cpu(max=4), pod(sized(NOTEBOOK_SIZE, name="jupyter"),
                                      init=[sized({"cpu": 8}, name="warmup")]))),
    Acceptance("bounds-skip-a-zero-or-absent-request", NOTEBOOK,
               merged(cpu(min=1), pod(sized({"cpu": 0, "memory": "16Gi"}, name="jupyter"),
                                      container("side")))),
    Acceptance("bounds-hold-at-the-edges", NOTEBOOK,
               gw(resize={"mode": "Auto", "cpu": {"min": 2, "max": 2, "step": 1},
                          "memory": {"min": "16Gi", "max": "16Gi", "step": "1Gi"}})),
    Acceptance("error-budget-at-the-objective", SERVICE,
               scaling(metric="LatencySLO", target=DELETE,
                       latencySLO={"target": "1s", "errorBudget": {"window": "1m",
                                                                   "loosestPercentile": 99}})),
    Acceptance("warm-budget-over-one-hour", SERVICE,
               gw(warmPool={"maxSize": 8, "budget": {"gpuHours": 0.5, "window": "1h"}})),
    Acceptance("scheduler-name-and-empty-node-name", NOTEBOOK,
               gw(template={"spec": {"schedulerName": "default-scheduler", "nodeName": ""}})),
    Acceptance("quantities-and-resource-names", NOTEBOOK,
               pod(sized({"cpu": 2, "memory": "16Gi", "ephemeral-storage": "10G",
                          "hugepages-2Mi": "1Gi", "nvidia.com/gpu": 1, "example.com/nic": "1"},
                         {"cpu": "2.5", "memory": 17179869184, "nvidia.com/gpu": 1},
                         name="jupyter"))),
    Acceptance("template-fields-pass-through", TRAINING,
               merged(pod_meta(labels={"tier": "", "app.kubernetes.io/name": "llm"},
                               annotations={"Example.com/Owner": "ml-team", "note": "a b c"},
                               generateName="ignored-"),
                      pod(sized({"cpu": "64", "memory": "1024Gi"}, name="trainer",
                                env=[{"name": "A", "value": "1"}], ports=[{"containerPort": 80}],
                                resizePolicy=[{"resourceName": "memory",
                                               "restartPolicy": "NotRequired"}]),
                          init=[container("setup", command=["sh", "-c", "true"],
                                          restartPolicy="Always")],
                          tolerations=[{"key": "gpu", "operator": "Exists"}],
                          priorityClassName="high"))),
]  # fmt: skip


@pytest.mark.parametrize("case", ACCEPTED, ids=[a.id for a in ACCEPTED])
def test_near_misses_are_accepted_and_kept_whole(crds: Cluster, ns: str, case: Acceptance) -> None:
    good = merged(example(case.base), case.patch)
    proc = server_dry_run(crds, ns, good)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["spec"]["template"] == good["spec"]["template"]


def test_gpus_per_pod_cannot_change_after_creation(crds: Cluster, ns: str) -> None:
    crds.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / NOTEBOOK))
    proc = crds.kubectl(
        "patch", "gpuworkload", "notebook", "-n", ns, "--type=merge",
        "-p", '{"spec": {"gpusPerPod": 2}}', check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "spec.gpusPerPod" in proc.stderr and "gpusPerPod is immutable" in proc.stderr
    # Fields without the rule still change.
    crds.kubectl(
        "patch", "gpuworkload", "notebook", "-n", ns, "--type=merge",
        "-p", '{"spec": {"repair": {"maxRestarts": 7}}}',
    )  # fmt: skip


# --- kubectl conveniences ----------------------------------------------------------


def _spec_replicas(cluster: Cluster, ns: str, resource: str) -> int:
    out = cluster.kubectl("get", resource, "-n", ns, "-o", "jsonpath={.spec.replicas}").stdout
    return int(out)


def test_kubectl_scale_sets_spec_replicas_within_the_bounds(crds: Cluster, ns: str) -> None:
    elastic = merged(
        example(NOTEBOOK), {"metadata": {"name": "elastic"}, "spec": {"maxReplicas": 4}}
    )
    crds.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(elastic))
    crds.kubectl("scale", "gpuworkload/elastic", "-n", ns, "--replicas=3")
    assert _spec_replicas(crds, ns, "gpuworkload/elastic") == 3

    refused = crds.kubectl("scale", "gw/elastic", "-n", ns, "--replicas=5", check=False)
    assert refused.returncode != 0
    assert "replicas must not be greater than maxReplicas" in refused.stderr
    assert _spec_replicas(crds, ns, "gpuworkload/elastic") == 3

    crds.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / SERVICE))
    crds.kubectl("scale", "gis/chat", "-n", ns, "--replicas=4")
    assert _spec_replicas(crds, ns, "gpuinferenceservice/chat") == 4


def test_scale_subresource_reads_replicas_and_selector_from_status(crds: Cluster, ns: str) -> None:
    crds.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / TRAINING))
    status = {"status": {"replicas": 8, "readyReplicas": 8, "selector": "egpu.io/workload=x"}}
    crds.kubectl(
        "patch", "gpuworkload", "llm-pretrain", "-n", ns, "--subresource=status",
        "--type=merge", "-p", json.dumps(status),
    )  # fmt: skip
    scale = json.loads(
        crds.kubectl(
            "get", "--raw",
            f"/apis/egpu.io/v1alpha1/namespaces/{ns}/gpuworkloads/llm-pretrain/scale",
        ).stdout
    )  # fmt: skip
    assert scale["spec"]["replicas"] == 8
    assert scale["status"] == {"replicas": 8, "selector": "egpu.io/workload=x"}


def test_status_is_a_subresource(crds: Cluster, ns: str) -> None:
    """A status written through the main resource is dropped, so users cannot fake it."""
    obj = merged(
        example(NOTEBOOK), {"metadata": {"name": "no-fake"}, "status": {"phase": "Running"}}
    )
    crds.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(obj))
    got = json.loads(crds.kubectl("get", "gw/no-fake", "-n", ns, "-o", "json").stdout)
    assert "status" not in got


def test_the_learned_tide_and_the_budgets_are_kept_in_the_status(crds: Cluster, ns: str) -> None:
    """What a restart restores (status.tide, status.scaler's budgets' slices) is not
    pruned by the API server."""
    tide = TidePolicy(period_s=600.0, buckets=60)
    profile = empty_profile(tide)
    for t in range(0, 1300, 5):
        profile = observe(profile, tide, 1_800_000_000.0 + t, 2.0 + (t % 600) / 12)
    memory = ScalerMemory(
        budget=BudgetLedger((BudgetSlice(1_800_000_000.0, 1234.5, 2.25),), 1_800_000_049.5),
        warm_spend=WarmLedger((WarmSlice(1_800_000_000.0, 4321.5),), 1_800_000_049.5),
    )
    stored_tide = tide_to_status(profile, tide)
    assert stored_tide is not None
    written = {
        "tide": stored_tide.model_dump(mode="json", by_alias=True),
        "scaler": memory_to_status(memory, 12.0).model_dump(
            mode="json", by_alias=True, exclude_none=True
        ),
    }
    crds.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / SERVICE))
    crds.kubectl(
        "patch", "gis", "chat", "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": written}),
    )  # fmt: skip
    got = json.loads(crds.kubectl("get", "gis/chat", "-n", ns, "-o", "json").stdout)["status"]
    assert got["tide"] == written["tide"]
    assert got["scaler"]["budgetSlices"] == written["scaler"]["budgetSlices"]
    assert got["scaler"]["warmBudgetSlices"] == written["scaler"]["warmBudgetSlices"]
    status = GPUInferenceServiceStatus.model_validate(got)
    restored = tide_from_status(status.tide, tide)
    assert restored is not None and restored == tide_from_status(stored_tide, tide)
    assert memory_from_status(status.scaler).budget == memory.budget
    assert memory_from_status(status.scaler).warm_spend == memory.warm_spend


def test_kubectl_get_egpu_lists_every_kind_with_its_columns(crds: Cluster, ns: str) -> None:
    topology = f"topo-{uuid.uuid4().hex[:6]}"
    crds.kubectl(
        "apply", "-f", "-",
        input=json.dumps(merged(example(TOPOLOGY), {"metadata": {"name": topology}})),
    )  # fmt: skip
    try:
        crds.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / TRAINING))
        crds.kubectl("apply", "-n", ns, "-f", str(EXAMPLES / SERVICE))
        crds.kubectl(
            "patch", "gw", "llm-pretrain", "-n", ns, "--subresource=status", "--type=merge",
            "-p", '{"status": {"phase": "Running", "readyReplicas": 8}}',
        )  # fmt: skip
        out = crds.kubectl("get", "egpu", "-A").stdout
    finally:
        crds.kubectl("delete", "gputopology", topology, "--wait=false", check=False)

    lines = out.splitlines()
    headers = [
        line.split() for line in lines if line.startswith("NAMESPACE") or line.startswith("NAME ")
    ]
    assert [
        "NAMESPACE",
        "NAME",
        "PHASE",
        "REPLICAS",
        "READY",
        "GPUS/POD",
        "LEVEL",
        "AGE",
    ] in headers
    assert ["NAMESPACE", "NAME", "DESIRED", "READY", "METRIC", "REASON", "AGE"] in headers
    # cluster-scoped: the namespace column stays blank
    assert ["NAMESPACE", "NAME", "OUTERMOST", "INNERMOST", "READY", "AGE"] in headers
    row = next(line.split() for line in lines if "gpuworkload.egpu.io/llm-pretrain" in line)
    assert row[1:6] == ["gpuworkload.egpu.io/llm-pretrain", "Running", "8", "8", "8"]
    assert row[6] == "egpu.io/leaf"
    assert any(
        "gpuinferenceservice.egpu.io/chat" in line and "Concurrency" in line for line in lines
    )
    row = next(line.split() for line in lines if f"gputopology.egpu.io/{topology}" in line)
    assert row[1:3] == ["egpu.io/block", "kubernetes.io/hostname"]
