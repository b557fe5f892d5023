"""GPUTopology: cached for the binder; its status counts the domains per level."""

from __future__ import annotations

from typing import Any

import kopf
from pydantic import ValidationError

from egpu import GROUP, VERSION
from egpu.api.topology import GPUTopologySpec
from egpu.controllers.common import now_text
from egpu.controllers.runtime import runtime_of
from egpu.domain.conditions import same_status, set_condition


def count_domains(levels: list[str], nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for label in levels:
        values = [(n.get("metadata", {}).get("labels") or {}).get(label) for n in nodes]
        present = [v for v in values if v is not None]
        out.append({"nodeLabel": label, "count": len(set(present)), "nodes": len(present)})
    return out


def register(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.event(GROUP, VERSION, "gputopologies", registry=registry)
    async def on_topology(
        type: str, body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **_: Any
    ) -> None:
        runtime = runtime_of(memo)
        name = body["metadata"]["name"]
        if type == "DELETED":
            runtime.topologies.pop(name, None)
            return
        runtime.topologies[name] = dict(body)
        old_status = dict(body.get("status") or {})
        now = now_text()
        generation = body["metadata"].get("generation")
        conditions = list(old_status.get("conditions") or [])
        try:
            spec = GPUTopologySpec.model_validate(dict(body.get("spec") or {}))
        except ValidationError as exc:
            conditions = set_condition(
                conditions, "Ready", False, "InvalidSpec", str(exc)[:1024], generation, now
            )
            new_status: dict[str, Any] = {**old_status, "conditions": conditions}
        else:
            labels = [lv.node_label for lv in spec.levels]
            counts = count_domains(labels, list(runtime.nodes.store.values()))
            empty = [c["nodeLabel"] for c in counts if c["count"] == 0]
            if empty:
                conditions = set_condition(
                    conditions,
                    "Ready",
                    False,
                    "NoNodesLabelled",
                    f"no node carries the label(s) {', '.join(empty)}",
                    generation,
                    now,
                )
            else:
                conditions = set_condition(
                    conditions,
                    "Ready",
                    True,
                    "Resolved",
                    "; ".join(f"{c['nodeLabel']}: {c['count']} domains" for c in counts),
                    generation,
                    now,
                )
            new_status = {
                **old_status,
                "domains": counts,
                "conditions": conditions,
                "observedGeneration": generation,
            }
        if runtime.leading.is_set() and not same_status(old_status, new_status):
            patch.status.update(new_status)  # the leader writes; standbys only cache
