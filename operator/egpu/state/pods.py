"""Raw pods -> PodFacts: what the binder and the ledger need to know of a pod.

Never raises. A pod whose annotations or labels cannot be read gets a `problem` (the
binder reports it on the pod and skips it); what it asks of its node is counted
whatever else is wrong with it, because a bound pod holds what it holds.

Trust: the operator's own annotations are believed only where the operator wrote them.
A recorded plan must carry the pod's own UID; GPU ids of a bound pod must come with
such a plan, for that node, and be as many as the pod asks for. Otherwise the pod is
counted by how many GPUs it asks for, like any pod of another scheduler.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from egpu import API_VERSION, SCHEDULER_NAME
from egpu.domain.artefacts import parse_artefact_keys
from egpu.domain.dra import POD_GPU_CLAIM
from egpu.domain.labels import (
    ARTEFACTS_ANNOTATION,
    DRA_GPUS_ANNOTATION,
    GANG_LABEL,
    GANG_MIN_ANNOTATION,
    GANG_SIZE_ANNOTATION,
    GPU_IDS_ANNOTATION,
    GPU_MODEL_ANNOTATION,
    GPU_RESOURCE,
    PLAN_ANNOTATION,
    PREFERRED_LEVEL_ANNOTATION,
    RANK_LABEL,
    REQUIRED_LEVEL_ANNOTATION,
    RESIZE_HEADROOM_ANNOTATION,
    WITHIN_ANNOTATION,
)
from egpu.domain.pod import (
    NO_DEMAND,
    Owner,
    PlacementAsk,
    PodDemand,
    PodFacts,
    RecordedPlan,
    group_gang_id,
    lone_gang_id,
    workload_gang_id,
)
from egpu.domain.quantity import cpu_millis, memory_bytes, whole_count
from egpu.domain.scheduling import NO_CONSTRAINTS, host_port_key
from egpu.state.constraints import read_constraints, unsupported_fields

JSON = dict[str, Any]
MAX_GANG_SIZE = 4096


def pod_key(pod: JSON) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def is_ours(pod: JSON) -> bool:
    return (pod.get("spec") or {}).get("schedulerName") == SCHEDULER_NAME


def _requests(container: JSON) -> Mapping[str, Any]:
    res = container.get("resources") or {}
    # Extended resources may be given as limits only; the API server copies limits
    # to requests, but be tolerant of objects that did not go through it.
    return {**(res.get("limits") or {}), **(res.get("requests") or {})}


def _allocated(pod: JSON) -> dict[str, Mapping[str, Any]]:
    """Per container, what the kubelet allocated (`allocatedResources`): during an
    in-place resize the node holds the larger of that and the spec."""
    out: dict[str, Mapping[str, Any]] = {}
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        allocated = status.get("allocatedResources")
        if isinstance(allocated, dict) and status.get("name"):
            out[str(status["name"])] = allocated
    return out


_OWN = frozenset({"cpu", "memory", GPU_RESOURCE})


def _amounts(r: Mapping[str, Any]) -> dict[str, int]:
    """Every requested resource but CPU, memory and GPUs, in its base unit."""
    return {str(k): memory_bytes(v) for k, v in r.items() if k not in _OWN}


def _add(into: dict[str, int], more: Mapping[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


def _at_least(into: dict[str, int], more: Mapping[str, int]) -> None:
    for k, v in more.items():
        into[k] = max(into.get(k, 0), v)


def host_ports(spec: JSON) -> dict[str, int]:
    """The host ports the pod's containers (init containers too) bind, one each."""
    out: dict[str, int] = {}
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for port in c.get("ports") or []:
            number = port.get("hostPort")
            if isinstance(number, int) and not isinstance(number, bool) and number > 0:
                out[host_port_key(str(port.get("protocol") or "TCP"), number)] = 1
    return out


def pod_demand(pod: JSON) -> PodDemand:
    """What the pod holds on its node, as the scheduler counts it: the sum over
    containers (each the larger of its spec and its allocated resources), at least the
    largest init container, plus the pod overhead; the same for every other resource
    (ephemeral storage, extended resources), and its host ports. Raises ValueError on
    a quantity that cannot be read."""
    spec = pod.get("spec") or {}
    allocated = _allocated(pod)
    cpu = mem = gpus = 0
    extras: dict[str, int] = {}
    for c in spec.get("containers") or []:
        r = _requests(c)
        done = allocated.get(str(c.get("name")), {})
        cpu += max(cpu_millis(r.get("cpu", 0)), cpu_millis(done.get("cpu", 0)))
        mem += max(memory_bytes(r.get("memory", 0)), memory_bytes(done.get("memory", 0)))
        gpus += whole_count(r.get(GPU_RESOURCE, 0), GPU_RESOURCE)
        _add(extras, _amounts(r))
    init_cpu = init_mem = init_gpus = 0
    sidecar_cpu = sidecar_mem = sidecar_gpus = 0
    init_extras: dict[str, int] = {}
    sidecar_extras: dict[str, int] = {}
    for c in spec.get("initContainers") or []:
        r = _requests(c)
        c_cpu, c_mem = cpu_millis(r.get("cpu", 0)), memory_bytes(r.get("memory", 0))
        c_gpus = whole_count(r.get(GPU_RESOURCE, 0), GPU_RESOURCE)
        c_extras = _amounts(r)
        if c.get("restartPolicy") == "Always":  # a sidecar runs beside the others
            sidecar_cpu, sidecar_mem, sidecar_gpus = (
                sidecar_cpu + c_cpu,
                sidecar_mem + c_mem,
                sidecar_gpus + c_gpus,
            )
            _add(sidecar_extras, c_extras)
        else:  # runs before the containers, beside the sidecars started so far
            init_cpu = max(init_cpu, sidecar_cpu + c_cpu)
            init_mem = max(init_mem, sidecar_mem + c_mem)
            init_gpus = max(init_gpus, sidecar_gpus + c_gpus)
            beside = dict(sidecar_extras)
            _add(beside, c_extras)
            _at_least(init_extras, beside)
    cpu, mem, gpus = (
        max(cpu + sidecar_cpu, init_cpu),
        max(mem + sidecar_mem, init_mem),
        max(gpus + sidecar_gpus, init_gpus),
    )
    _add(extras, sidecar_extras)
    _at_least(extras, init_extras)
    overhead = spec.get("overhead") or {}
    cpu += cpu_millis(overhead.get("cpu", 0))
    mem += memory_bytes(overhead.get("memory", 0))
    _add(extras, _amounts(overhead))
    extras.update(host_ports(spec))
    if uses_gpu_claim(pod):
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        text = annotations.get(DRA_GPUS_ANNOTATION, 0)
        try:
            gpus += whole_count(text, DRA_GPUS_ANNOTATION)
        except ValueError as exc:
            raise ValueError(f"annotation {DRA_GPUS_ANNOTATION}={text!r}: {exc}") from None
    return PodDemand(cpu, mem, gpus, tuple(sorted((k, v) for k, v in extras.items() if v)))


def uses_gpu_claim(pod: JSON) -> bool:
    """The pod gets its GPUs through DRA: a claim named POD_GPU_CLAIM, made for it from
    a template, sized by the DRA_GPUS_ANNOTATION (the binder allocates that claim)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if DRA_GPUS_ANNOTATION not in annotations:
        return False
    for claim in (pod.get("spec") or {}).get("resourceClaims") or []:
        if isinstance(claim, dict) and claim.get("name") == POD_GPU_CLAIM:
            return bool(claim.get("resourceClaimTemplateName"))
    return False


def gpu_claim_name(pod: JSON) -> str | None:
    """The ResourceClaim the controller manager made for the pod's GPU claim, once made."""
    for entry in (pod.get("status") or {}).get("resourceClaimStatuses") or []:
        if isinstance(entry, dict) and entry.get("name") == POD_GPU_CLAIM:
            name = entry.get("resourceClaimName")
            return str(name) if name else None
    return None


def plan_annotation(plan: RecordedPlan) -> str:
    """The plan as the binder writes it on the pod (PLAN_ANNOTATION)."""
    return json.dumps(
        {
            "uid": plan.uid,
            "node": plan.node,
            "gpus": list(plan.gpu_indices),
            "domain": dict(plan.domain),
            "plan": plan.plan_id,
            "size": plan.size,
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def read_plan(text: str | None, uid: str) -> RecordedPlan | None:
    """The recorded plan, when it is well formed and made for this very pod."""
    if not text or not uid:
        return None
    try:
        raw = json.loads(text)
    except ValueError:
        return None
    if not isinstance(raw, dict) or raw.get("uid") != uid:
        return None
    node, gpus, domain = raw.get("node"), raw.get("gpus"), raw.get("domain") or {}
    plan_id, size = raw.get("plan"), raw.get("size")
    if not (isinstance(node, str) and node and isinstance(plan_id, str) and plan_id):
        return None
    if not isinstance(gpus, list) or not all(
        isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in gpus
    ):
        return None
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_GANG_SIZE:
        return None
    if not isinstance(domain, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in domain.items()
    ):
        return None
    return RecordedPlan(uid, node, tuple(gpus), dict(domain), plan_id, size)


def controller_of(meta: JSON) -> Owner | None:
    refs = meta.get("ownerReferences")
    for ref in refs if isinstance(refs, list) else []:
        if isinstance(ref, dict) and ref.get("controller"):
            return Owner(
                str(ref.get("apiVersion", "")),
                str(ref.get("kind", "")),
                str(ref.get("name", "")),
                str(ref.get("uid", "")),
            )
    return None


def owning_workload(owner: Owner | None) -> str | None:
    if owner is not None and owner.kind == "GPUWorkload" and owner.api_version == API_VERSION:
        return owner.name or None
    return None


def _count(value: Any, what: str, problems: list[str], default: int) -> int:
    if value is None or value == "":
        return default
    text = str(value)
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_GANG_SIZE:
        problems.append(f"{what}={text!r} is not a whole number from 1 to {MAX_GANG_SIZE}")
        return default
    return int(text)


def _headroom(raw: str | None, problems: list[str]) -> tuple[int, int]:
    if not raw:
        return 0, 0
    try:
        headroom = json.loads(raw)
        return cpu_millis(headroom.get("cpu", 0)), memory_bytes(headroom.get("memory", 0))
    except (ValueError, AttributeError):
        problems.append(f"annotation {RESIZE_HEADROOM_ANNOTATION}={raw!r} cannot be read")
        return 0, 0


def _within(raw: str | None, problems: list[str]) -> tuple[str, ...]:
    if not raw:
        return ()
    try:
        path = json.loads(raw)
    except ValueError:
        path = None
    if isinstance(path, list) and path and all(isinstance(v, str) and v for v in path):
        return tuple(path)
    problems.append(f"annotation {WITHIN_ANNOTATION}={raw!r} is not a list of domain names")
    return ()


def _bound_gpus(
    annotations: Mapping[str, Any], plan: RecordedPlan | None, node: str | None, gpus: int
) -> tuple[int, ...] | None:
    if node is None or plan is None or plan.node != node:
        return None
    text = str(annotations.get(GPU_IDS_ANNOTATION) or "")
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not all(p.isascii() and p.isdigit() for p in parts):
        return None
    ids = tuple(int(p) for p in parts)
    return ids if len(set(ids)) == len(ids) == gpus else None


def read_pod(pod: JSON) -> PodFacts:
    try:
        return _read_pod(pod)
    except (TypeError, AttributeError, ValueError, KeyError) as exc:
        # Shapes the API server would never serve: say so rather than fail.
        meta = pod.get("metadata") if isinstance(pod, dict) else None
        meta = meta if isinstance(meta, dict) else {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        return PodFacts(
            key=f"{namespace}/{name}",
            namespace=namespace,
            name=name,
            uid=str(meta.get("uid") or ""),
            ours=is_ours(pod) if isinstance(pod.get("spec"), dict) else False,
            node=None,
            finished=False,
            deleting=bool(meta.get("deletionTimestamp")),
            demand=NO_DEMAND,
            gang_id=lone_gang_id(namespace, name),
            gang_size=1,
            gang_min=1,
            rank=None,
            problem=f"the pod cannot be read: {type(exc).__name__}: {exc}",
        )


def _read_pod(pod: JSON) -> PodFacts:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    uid = str(meta.get("uid") or "")
    problems: list[str] = []
    dra = uses_gpu_claim(pod)
    try:
        demand = pod_demand(pod)
    except ValueError as exc:
        demand = NO_DEMAND
        problems.append(f"resources cannot be read: {exc}")
    owner = controller_of(meta)
    workload = owning_workload(owner)
    group = labels.get(GANG_LABEL)
    if workload is not None:
        gang_id = workload_gang_id(namespace, workload)
    elif group:
        gang_id = group_gang_id(namespace, str(group))
    else:
        gang_id = lone_gang_id(namespace, name)
    size = _count(annotations.get(GANG_SIZE_ANNOTATION), GANG_SIZE_ANNOTATION, problems, 1)
    minimum = _count(annotations.get(GANG_MIN_ANNOTATION), GANG_MIN_ANNOTATION, problems, size)
    if workload is None and not group:
        size = minimum = 1  # a lone pod is a gang of itself, whatever it says
    if minimum > size:
        problems.append(f"{GANG_MIN_ANNOTATION}={minimum} is more than {GANG_SIZE_ANNOTATION}")
        minimum = size
    rank: int | None = None
    raw_rank = labels.get(RANK_LABEL)
    if raw_rank is not None:
        text = str(raw_rank)
        if text.isascii() and text.isdigit() and int(text) < MAX_GANG_SIZE:
            rank = int(text)
        else:
            problems.append(f"label {RANK_LABEL}={text!r} is not a rank (0 to {MAX_GANG_SIZE - 1})")
    elif workload is not None:
        problems.append(f"a member of GPUWorkload {workload} without the {RANK_LABEL} label")
    try:
        priority = int(spec.get("priority") or 0)
    except (TypeError, ValueError):
        priority = 0
    cpu_headroom, memory_headroom = _headroom(annotations.get(RESIZE_HEADROOM_ANNOTATION), problems)
    status = pod.get("status") or {}
    node = spec.get("nodeName") or None
    plan = read_plan(annotations.get(PLAN_ANNOTATION), uid)
    try:
        constraints = read_constraints(spec)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        constraints = NO_CONSTRAINTS
        problems.append(f"node constraints cannot be read: {exc}")
    return PodFacts(
        key=f"{namespace}/{name}",
        namespace=namespace,
        name=name,
        uid=uid,
        ours=spec.get("schedulerName") == SCHEDULER_NAME,
        node=str(node) if node else None,
        finished=status.get("phase") in ("Succeeded", "Failed"),
        deleting=bool(meta.get("deletionTimestamp")),
        demand=demand,
        gang_id=gang_id,
        gang_size=size,
        gang_min=minimum,
        rank=rank,
        priority=priority,
        created=str(meta.get("creationTimestamp") or ""),
        owner=owner,
        workload=workload,
        plan=plan,
        bound_gpus=_bound_gpus(annotations, plan, str(node) if node else None, demand.gpus),
        ask=PlacementAsk(
            gpu_model=annotations.get(GPU_MODEL_ANNOTATION) or None,
            required_level=annotations.get(REQUIRED_LEVEL_ANNOTATION) or None,
            preferred_level=annotations.get(PREFERRED_LEVEL_ANNOTATION) or None,
            cpu_headroom_millis=cpu_headroom,
            memory_headroom_bytes=memory_headroom,
            within=_within(annotations.get(WITHIN_ANNOTATION), problems),
        ),
        constraints=constraints,
        unsupported=unsupported_fields(spec, gpu_claim=POD_GPU_CLAIM if dra else None),
        dra=dra,
        gpu_claim=gpu_claim_name(pod) if dra else None,
        artefacts=parse_artefact_keys(annotations.get(ARTEFACTS_ANNOTATION)),
        problem="; ".join(problems) or None,
    )
