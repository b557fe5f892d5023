"""The API reference in Markdown, from the same schemas the CRDs carry.

python -m egpu.api.docgen > docs/api.md
"""

from __future__ import annotations

import json
import sys
from typing import Any

from egpu import API_VERSION
from egpu.api.crdgen import build_openapi_schema
from egpu.api.kinds import CATEGORY, KINDS, Kind
from egpu.api.types import (
    CRON_PATTERN,
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    DURATION_PATTERN,
    LABEL_KEY_RULE,
    LABEL_VALUE_RULE,
    RESOURCE_QUANTITY_RULE,
    TIME_OF_DAY_PATTERN,
)

# Patterns a reader knows better by name.
_NAMED_PATTERNS = {
    DURATION_PATTERN: "duration (e.g. `30s`, `5m`, `1h30m`)",
    TIME_OF_DAY_PATTERN: "time of day `HH:MM` (UTC)",
    CRON_PATTERN: "cron expression (UTC)",
    DNS_LABEL_PATTERN: "DNS label",
    DNS_SUBDOMAIN_PATTERN: "object name (DNS subdomain)",
}
# Types a reader knows better by name, told by their rule.
_NAMED_RULES = {
    LABEL_KEY_RULE.rule: "label key (e.g. `egpu.io/leaf`)",
    LABEL_VALUE_RULE.rule: "label value",
    RESOURCE_QUANTITY_RULE.rule: "quantity (integer or string, e.g. `500m`, `4Gi`)",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _range(node: dict[str, Any]) -> str:
    low, high = node.get("minimum"), node.get("maximum")
    if low is None and high is None:
        return ""
    low_text = "" if low is None else f"{'>' if node.get('exclusiveMinimum') else '≥'} {low}"
    high_text = "" if high is None else f"≤ {high}"
    return ", ".join(t for t in (low_text, high_text) if t)


def type_of(node: dict[str, Any]) -> str:
    """A short, readable type: `integer (≥ 1, ≤ 64)`, `duration`, `[]ScheduleWindow`..."""
    for rule in node.get("x-kubernetes-validations", []):
        if rule["rule"] in _NAMED_RULES:
            return _NAMED_RULES[rule["rule"]]
    if node.get("x-kubernetes-int-or-string"):
        return "quantity (integer or string, e.g. `500m`, `4Gi`)"
    if "enum" in node:
        return " | ".join(f"`{v}`" for v in node["enum"])
    kind = node.get("type", "")
    if kind in ("integer", "number"):
        bounds = _range(node)
        return f"{kind} ({bounds})" if bounds else kind
    if kind == "string":
        if node.get("format") == "date-time":
            return "time (RFC 3339)"
        if node.get("pattern") in _NAMED_PATTERNS:
            return _NAMED_PATTERNS[node["pattern"]]
        parts = ["string"]
        if "pattern" in node:
            parts.append(f"matching `{node['pattern']}`")
        if "maxLength" in node:
            parts.append(f"≤ {node['maxLength']} chars")
        return ", ".join(parts)
    if kind == "array":
        item = type_of(node["items"]) if node["items"].get("type") != "object" else "object"
        text = f"list of {item}"
        keys = node.get("x-kubernetes-list-map-keys")
        if keys:
            text += f", keyed by `{'`, `'.join(keys)}`"
        elif node.get("x-kubernetes-list-type") == "set":
            text += ", unique"
        if node.get("minItems"):
            text += f", {node['minItems']} to {node.get('maxItems', 'any')} items"
        elif "maxItems" in node:
            text += f", ≤ {node['maxItems']} items"
        return text
    if kind == "object":
        if isinstance(node.get("additionalProperties"), dict):
            return f"map of string to {type_of(node['additionalProperties'])}"
        if node.get("x-kubernetes-preserve-unknown-fields"):
            return "object (free-form)" if "properties" not in node else "object (open)"
        return "object"
    return str(kind)


def _default(node: dict[str, Any]) -> str:
    if "default" not in node:
        return ""
    value = node["default"]
    if isinstance(value, dict):
        return "its fields' defaults"
    return f"`{value}`" if isinstance(value, str) and value else f"`{json.dumps(value)}`"


def _rows(node: dict[str, Any], prefix: str, required: set[str]) -> list[str]:
    rows = []
    for name, sub in node.get("properties", {}).items():
        path = f"{prefix}{name}"
        field = f"`{path}`" + (" *(required)*" if name in required else "")
        rows.append(
            f"| {field} | {_cell(type_of(sub))} | {_cell(_default(sub))} "
            f"| {_cell(sub.get('description', ''))} |"
        )
        child = sub["items"] if sub.get("type") == "array" else sub
        child_prefix = f"{path}[]." if sub.get("type") == "array" else f"{path}."
        rows += _rows(child, child_prefix, set(child.get("required", [])))
    return rows


def field_table(node: dict[str, Any]) -> list[str]:
    return [
        "| Field | Type | Default | Description |",
        "|---|---|---|---|",
        *_rows(node, "", set(node.get("required", []))),
    ]


def rules_of(node: dict[str, Any], path: str) -> list[tuple[str, str]]:
    """(field, message) for every CEL rule under `node`, named by the field it reports."""
    found = []
    for rule in node.get("x-kubernetes-validations", []):
        found.append((f"{path}{rule.get('fieldPath', '')}", rule["message"]))
    for name, sub in node.get("properties", {}).items():
        found += rules_of(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += rules_of(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += rules_of(node["additionalProperties"], f"{path}[*]")
    return found


def kind_section(kind: Kind) -> list[str]:
    schema = build_openapi_schema(kind)
    scope = "namespaced" if kind.namespaced else "cluster-scoped"
    lines = [
        f"## {kind.name}",
        "",
        f"{schema.get('description', '')}",
        "",
        f"`apiVersion: {API_VERSION}`, {scope}; `kubectl get {kind.plural}` "
        f"(short name {', '.join(f'`{s}`' for s in kind.short_names)}, category `{CATEGORY}`).",
        "",
        "Columns: " + ", ".join(c.name for c in kind.columns if not c.priority)
        + ("; with `-o wide` also " + ", ".join(c.name for c in kind.columns if c.priority)
           if any(c.priority for c in kind.columns) else "")
        + ".",
    ]  # fmt: skip
    if kind.scalable:
        lines += [
            "",
            "Scale subresource: `kubectl scale` sets `spec.replicas`; it reads "
            "`status.replicas` and `status.selector`.",
        ]
    for part in ("spec", "status"):
        node = schema["properties"][part]
        lines += ["", f"### {part}", "", node.get("description", ""), "", *field_table(node)]
    rules = rules_of(schema, "")
    if rules:
        lines += [
            "",
            "### Checked at admission (CEL rules)",
            "",
            "Beside the types, bounds and patterns above, the API server refuses an object when:",
            "",
            "| Field | Message |",
            "|---|---|",
        ]
        lines += [f"| `{field.lstrip('.')}` | {_cell(message)} |" for field, message in rules]
    return lines


# What egpu-scheduler (the binder) does with the rest of a pod's spec. Kept here, beside
# the reference it belongs to, so docs/api.md says it and stays generated.
SCHEDULING = """## What egpu-scheduler honours in a pod spec

Pods that name `schedulerName: egpu-scheduler` (every pod the operator creates, and
pods of your own) are placed by the operator, not by kube-scheduler. It checks what
kube-scheduler checks, as filters over every node, and says which nodes each one
refused (`FailedScheduling` on the pod, or the workload's `Scheduled` condition):
for example `3 nodes excluded by taint gpu=broken:NoSchedule`. Only nodes that could
hold the pod by their GPUs (model and count) are counted.

| Field | What the binder does |
|---|---|
| node `spec.unschedulable`, node not `Ready` | the node is left out |
| node taints `NoSchedule`, `NoExecute`; `spec.tolerations` | a node with a taint the pod does not tolerate is left out (`tolerationSeconds` plays no part in placing) |
| node taints `PreferNoSchedule` | a score: such nodes are used only when the gang does not fit on the others |
| `spec.nodeSelector` | every label must match |
| `spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution` | at least one term must match: `matchExpressions` with `In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt`, and `matchFields` on `metadata.name` (`In`, `NotIn`) |
| `spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution` | a score: the sum of the weights of the terms a node matches. The gang goes to the best-scoring nodes if it fits there whole, else to the next best (three tiers), else to any feasible node; within a tier the usual smallest-domain, best-fit rules choose |
| resources: `cpu`, `memory`, `ephemeral-storage`, `hugepages-*`, every extended resource (`rdma/*`, `nvidia.com/mig-*`, ...) | counted against the node's `status.allocatable` as kube-scheduler counts them: the sum of the containers, at least the largest init container (beside the sidecars started before it), plus `spec.overhead`; pods of every scheduler on the node are counted |
| the node's pod count (`status.allocatable.pods`) | every pod on the node takes one slot, whoever placed it |
| `hostPort` of any container (init containers too) | one pod per node per protocol and port (the host IP is not told apart, so two pods asking one port on different IPs of a node are kept apart too: stricter than kube-scheduler) |
| `spec.affinity.podAffinity`, `spec.affinity.podAntiAffinity` (required or preferred), `spec.topologySpreadConstraints`, generic ephemeral volumes (`spec.volumes[].ephemeral`), `spec.resourceClaims` other than the `gpus` claim of a DRA workload's pods (`spec.gpuAllocation: DRA`) | **not supported: refused.** The pod is not placed; reason `Unsupported` (the pod's `PodScheduled` condition and a `FailedScheduling` Event; for a GPUWorkload's member, the workload's `Scheduled` condition and an `Unsupported` Warning Event) with the field named. Leave `schedulerName` unset for the default scheduler, or use the GPUWorkload's `topology` to keep pods together |

Not checked yet: PersistentVolumeClaims (their binding mode and the node affinity of
their volumes), `spec.schedulingGates`, and preemption (a pod never evicts another).
"""  # noqa: E501 (table rows)


def render() -> str:
    lines = [
        f"# API reference: {API_VERSION}",
        "",
        "<!-- Generated by `python -m egpu.api.docgen` from operator/egpu/api. Do not edit. -->",
        "",
        "| Kind | Scope | Short name | What it is |",
        "|---|---|---|---|",
    ]
    for kind in KINDS:
        lines.append(
            f"| [{kind.name}](#{kind.name.lower()}) "
            f"| {'Namespaced' if kind.namespaced else 'Cluster'} "
            f"| `{', '.join(kind.short_names)}` "
            f"| {_cell(kind.model.__doc__ or '')} |"
        )
    lines += [
        "",
        "Durations use Go syntax (`500ms`, `30s`, `5m`, `1h30m`); quantities use Kubernetes "
        "syntax (`500m`, `2`, `4Gi`) and may be written as integers, not as fractions: "
        '`cpu: 0.5` is refused, write `"0.5"` or `500m`. Fields marked '
        "*(required)* must be set; others take the default shown, or are unset.",
    ]
    for kind in KINDS:
        lines += ["", *kind_section(kind)]
    lines += ["", SCHEDULING.rstrip("\n")]
    return "\n".join(lines) + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
