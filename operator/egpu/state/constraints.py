"""A pod's node constraints read from its spec, and the fields the binder refuses.

`read_constraints` raises ValueError (or TypeError) on a shape the API server would not
serve; `egpu.state.pods.read_pod` turns that into the pod's `problem`.
"""

from __future__ import annotations

from typing import Any

from egpu.domain.scheduling import (
    NodeConstraints,
    PreferredTerm,
    Requirement,
    SelectorTerm,
    Toleration,
)

JSON = dict[str, Any]


def _requirements(raw: Any, where: str) -> tuple[Requirement, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError(f"{where} is not a list")
    out = []
    for item in raw:
        if not isinstance(item, dict):
            raise ValueError(f"{where} holds {item!r}")
        values = item.get("values") or []
        if not isinstance(values, list):
            raise ValueError(f"{where}: values of {item.get('key')!r} is not a list")
        try:
            out.append(
                Requirement(
                    str(item.get("key") or ""),
                    str(item.get("operator") or ""),
                    tuple(str(v) for v in values),
                )
            )
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return tuple(out)


def _term(raw: Any, where: str) -> SelectorTerm:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} is not an object")
    try:
        return SelectorTerm(
            _requirements(raw.get("matchExpressions"), f"{where}.matchExpressions"),
            _requirements(raw.get("matchFields"), f"{where}.matchFields"),
        )
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def read_constraints(spec: JSON) -> NodeConstraints:
    selector = spec.get("nodeSelector") or {}
    if not isinstance(selector, dict):
        raise ValueError("spec.nodeSelector is not a map")
    node_affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    required_raw = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    required: tuple[SelectorTerm, ...] | None = None
    if required_raw is not None:
        where = "nodeAffinity.required...nodeSelectorTerms"
        terms = required_raw.get("nodeSelectorTerms") or []
        if not isinstance(terms, list):
            raise ValueError(f"{where} is not a list")
        required = tuple(_term(t, f"{where}[{i}]") for i, t in enumerate(terms))
    preferred = []
    for i, item in enumerate(
        node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []
    ):
        where = f"nodeAffinity.preferred...[{i}]"
        weight = item.get("weight")
        if not isinstance(weight, int) or isinstance(weight, bool) or not 1 <= weight <= 100:
            raise ValueError(f"{where}: weight {weight!r} is not from 1 to 100")
        preferred.append(PreferredTerm(weight, _term(item.get("preference"), where)))
    tolerations = []
    for item in spec.get("tolerations") or []:
        if not isinstance(item, dict):
            raise ValueError(f"toleration {item!r} is not an object")
        tolerations.append(
            Toleration(
                key=str(item.get("key") or ""),
                operator=str(item.get("operator") or "Equal"),
                value=str(item.get("value") or ""),
                effect=str(item.get("effect") or ""),
            )
        )
    return NodeConstraints(
        node_selector=tuple(sorted((str(k), str(v)) for k, v in selector.items())),
        required=required,
        preferred=tuple(preferred),
        tolerations=tuple(tolerations),
    )


def unsupported_fields(spec: JSON, gpu_claim: str | None = None) -> tuple[str, ...]:
    """The spec fields the binder does not honour and will not ignore: the pod is
    refused (condition reason `Unsupported`) while any of them is set. `gpu_claim`:
    the one resource claim the binder allocates itself (the pod's GPUs through DRA)."""
    found: list[str] = []
    affinity = spec.get("affinity") or {}
    if not isinstance(affinity, dict):
        return ()
    for kind in ("podAffinity", "podAntiAffinity"):
        terms = affinity.get(kind) or {}
        if not isinstance(terms, dict):
            continue
        for mode in (
            "requiredDuringSchedulingIgnoredDuringExecution",
            "preferredDuringSchedulingIgnoredDuringExecution",
        ):
            if terms.get(mode):
                found.append(f"spec.affinity.{kind}.{mode}")
    if spec.get("topologySpreadConstraints"):
        found.append("spec.topologySpreadConstraints")
    for i, volume in enumerate(spec.get("volumes") or []):
        if isinstance(volume, dict) and volume.get("ephemeral"):
            found.append(f"spec.volumes[{i}].ephemeral ({volume.get('name')})")
    for i, claim in enumerate(spec.get("resourceClaims") or []):
        name = claim.get("name") if isinstance(claim, dict) else None
        if gpu_claim is None or name != gpu_claim:
            found.append(f"spec.resourceClaims[{i}] ({name})")
    return tuple(found)
