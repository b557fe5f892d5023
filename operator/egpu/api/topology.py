"""GPUTopology: the cluster's network levels, each a node label, outermost first."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from egpu.api.base import ApiModel, Rule, list_map, rules_extra
from egpu.api.common import Condition, conditions_field
from egpu.api.types import LabelKey

MAX_TOPOLOGY_LEVELS = 8
HOSTNAME_LABEL = "kubernetes.io/hostname"


class TopologyLevel(ApiModel):
    """One network level: nodes with equal values of the label share a domain."""

    node_label: LabelKey = Field(
        description="Node label key whose value names the domain, e.g. egpu.io/leaf."
    )


class GPUTopologySpec(ApiModel):
    """The ordered levels."""

    levels: list[TopologyLevel] = Field(
        min_length=1,
        max_length=MAX_TOPOLOGY_LEVELS,
        description="Levels from the outermost (e.g. egpu.io/block) to the innermost "
        "(usually kubernetes.io/hostname); each label appears once.",
        json_schema_extra={
            **list_map("nodeLabel"),
            **rules_extra(
                Rule(
                    rule=f"!self.exists(l, l.nodeLabel == '{HOSTNAME_LABEL}') || "
                    f"self[size(self) - 1].nodeLabel == '{HOSTNAME_LABEL}'",
                    message=f"{HOSTNAME_LABEL} is the innermost level: it must come last",
                )
            ),
        },
    )


class LevelDomains(ApiModel):
    """How many domains one level has in the cluster now."""

    node_label: LabelKey = Field(description="The level's node label key.")
    count: int = Field(ge=0, description="Distinct values of the label among the nodes.")
    nodes: int = Field(0, ge=0, description="Nodes that carry the label.")


class GPUTopologyStatus(ApiModel):
    """What the operator found in the cluster's node labels."""

    conditions: list[Condition] = conditions_field()
    observed_generation: int | None = Field(
        None, ge=0, description="The .metadata.generation the status reflects."
    )
    domains: list[LevelDomains] = Field(
        default_factory=list,
        max_length=MAX_TOPOLOGY_LEVELS,
        description="Domain counts, one entry per level, outermost first.",
        json_schema_extra=list_map("nodeLabel"),
    )


class GPUTopology(ApiModel):
    """The network levels of the cluster (cluster-scoped), in the style of Kueue's Topology."""

    api_version: Literal["egpu.io/v1alpha1"] = Field(
        "egpu.io/v1alpha1", description="egpu.io/v1alpha1"
    )
    kind: Literal["GPUTopology"] = Field("GPUTopology", description="GPUTopology")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: GPUTopologySpec = Field(description="The network levels, outermost first.")
    status: GPUTopologyStatus | None = Field(
        None, description="What the operator found in the nodes' labels."
    )
