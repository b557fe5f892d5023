"""Names of the node labels and annotations the domain types are read from.

They match what GPU Feature Discovery, topology-labelling clouds and the egpu node
agent write (and what `egpu.sim.nodes` generates for the simulated cluster).
"""

from __future__ import annotations

from typing import Final, Literal

BLOCK_LABEL = "egpu.io/block"
LEAF_LABEL = "egpu.io/leaf"
HOSTNAME_LABEL = "kubernetes.io/hostname"

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
GPU_RESOURCE = "nvidia.com/gpu"

INTERCONNECT_ANNOTATION = "egpu.io/gpu-interconnect"
UNHEALTHY_GPUS_ANNOTATION = "egpu.io/unhealthy-gpus"
# The node agent's per-GPU health report (see egpu.engines.health.report) and the Node
# condition it sets. The repair controller turns the report into the fence above.
GPU_HEALTH_ANNOTATION = "egpu.io/gpu-health"
GPU_HEALTH_CONDITION = "GPUHealthy"
# The GPUs the repair controller fenced (a subset of egpu.io/unhealthy-gpus): only
# these does it ever take back out of the fence.
FENCED_GPUS_ANNOTATION = "egpu.io/fenced-gpus"
# A lost node (not Ready past its grace) that the repair controller's circuit breaker
# counted: {"at": when}. A new leader restores the breaker's window from it (and from
# the fences' times), so a partition's count does not start over with a new leader.
LOST_NODE_ANNOTATION = "egpu.io/lost-node"
# What a node holds on disk for fast starts, beside the images its kubelet lists in
# status.images: comma-separated artefact keys (model files, weights), written by a
# cache agent. A pod whose artefacts are all on a node starts there on the Cached path.
CACHED_ARTEFACTS_ANNOTATION = "egpu.io/cached-artefacts"

# -- on pods -------------------------------------------------------------------------
# The operator's own labels and annotations on the pods it creates. A pod template
# that carries any of OPERATOR_OWNED_* has it removed (and is told so): only the
# operator writes them.
WORKLOAD_LABEL = "egpu.io/workload"
GANG_LABEL = "egpu.io/gang"
RANK_LABEL = "egpu.io/rank"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"

GANG_SIZE_ANNOTATION = "egpu.io/gang-size"
GANG_MIN_ANNOTATION = "egpu.io/gang-min-members"
GPU_MODEL_ANNOTATION = "egpu.io/gpu-model"
TOPOLOGY_ANNOTATION = "egpu.io/topology"
REQUIRED_LEVEL_ANNOTATION = "egpu.io/topology-required"
PREFERRED_LEVEL_ANNOTATION = "egpu.io/topology-preferred"
# The binder's plan, written before it binds so a restarted operator finds it:
# {"uid", "node", "gpus", "domain", "plan", "size"} (see domain.pod.RecordedPlan).
PLAN_ANNOTATION = "egpu.io/plan"
# Written with the Binding: what the pod's containers read (EGPU_GPU_IDS, ...).
GPU_IDS_ANNOTATION = "egpu.io/gpu-ids"
# How many GPUs the pod's DRA claim (named POD_GPU_CLAIM) asks for: the pod's GPU
# demand, which no container resource states when the GPUs come through DRA.
DRA_GPUS_ANNOTATION = "egpu.io/dra-gpus"
DOMAIN_ANNOTATION = "egpu.io/domain"
# Room the binder asks of a node beyond the pod's requests (resize mode Auto):
# {"cpu": "500m", "memory": "1Gi"}.
RESIZE_HEADROOM_ANNOTATION = "egpu.io/resize-headroom"
# The domain path (outermost level value first) a pod must be placed in: a member
# moved to grow stays in its old domain.
WITHIN_ANNOTATION = "egpu.io/within"
# What a pod loads at start (comma-separated: image references and model keys, from
# GPUInferenceService spec.startup.artefacts): the binder prefers nodes that hold them.
ARTEFACTS_ANNOTATION = "egpu.io/artefacts"
# Written with the Binding of a pod that names artefacts: the start path it got,
# START_PATH_CACHED when its node held every artefact at bind time, else START_PATH_COLD.
START_PATH_ANNOTATION = "egpu.io/start-path"
START_PATH_CACHED: Final = "Cached"
START_PATH_COLD: Final = "Cold"
# A warm-pool pod promoted: never written on a pod, named here with the others.
START_PATH_WARM: Final = "Warm"
StartPath = Literal["Warm", "Cached", "Cold"]

# On a repaired member: the checkpoint it resumes from (also in $EGPU_RESUME_FROM).
RESUME_FROM_ANNOTATION = "egpu.io/resume-from"
# On a GPUWorkload: the repair controller's record {"restarts", "lastRepair",
# "resumeFrom"; elastic: "dropped", "grown", "grownAt", "growFailedAt"}, so a new
# leader knows the retry budget spent and the ranks shrunk away.
REPAIR_ANNOTATION = "egpu.io/repair"
# On a member whose progress (its workload's progressAnnotation) stood still for half
# its hang timeout: {"value", "since"}, the repair controller's hang clock, so a new
# leader carries it on instead of waiting a full timeout again.
PROGRESS_SEEN_ANNOTATION = "egpu.io/progress-seen"

OPERATOR_OWNED_LABELS = frozenset({WORKLOAD_LABEL, GANG_LABEL, RANK_LABEL})
OPERATOR_OWNED_ANNOTATIONS = frozenset(
    {
        GANG_SIZE_ANNOTATION,
        GANG_MIN_ANNOTATION,
        GPU_MODEL_ANNOTATION,
        TOPOLOGY_ANNOTATION,
        REQUIRED_LEVEL_ANNOTATION,
        PREFERRED_LEVEL_ANNOTATION,
        PLAN_ANNOTATION,
        GPU_IDS_ANNOTATION,
        DRA_GPUS_ANNOTATION,
        DOMAIN_ANNOTATION,
        RESIZE_HEADROOM_ANNOTATION,
        WITHIN_ANNOTATION,
        ARTEFACTS_ANNOTATION,
        START_PATH_ANNOTATION,
        RESUME_FROM_ANNOTATION,
        PROGRESS_SEEN_ANNOTATION,
        "egpu.io/assigned-node",  # the plan's name before egpu.io/plan
    }
)
