"""The cluster's network levels, outermost first, each a node label key."""

from __future__ import annotations

from dataclasses import dataclass

from egpu.domain.labels import BLOCK_LABEL, HOSTNAME_LABEL, LEAF_LABEL

CLUSTER_LEVEL = "cluster"
"""Name of the root domain (the whole cluster) in results and diagnoses."""


@dataclass(frozen=True, slots=True)
class Topology:
    """Ordered level label keys, outermost first, e.g. block > leaf > hostname.

    The node is always the innermost domain; naming `kubernetes.io/hostname` as the
    last level is allowed (Kueue and KAI topologies do) and means the same thing.
    """

    levels: tuple[str, ...] = (BLOCK_LABEL, LEAF_LABEL, HOSTNAME_LABEL)

    def __post_init__(self) -> None:
        if len(set(self.levels)) != len(self.levels):
            raise ValueError(f"topology levels repeat a label: {list(self.levels)}")
        if any(not level for level in self.levels):
            raise ValueError("a topology level needs a label key")
        if CLUSTER_LEVEL in self.levels:
            raise ValueError(f"{CLUSTER_LEVEL!r} is reserved for the whole cluster")
        if HOSTNAME_LABEL in self.levels[:-1]:
            raise ValueError(f"{HOSTNAME_LABEL} can only be the innermost level")

    @property
    def domain_levels(self) -> tuple[str, ...]:
        """Levels above the node, outermost first."""
        if self.levels and self.levels[-1] == HOSTNAME_LABEL:
            return self.levels[:-1]
        return self.levels

    @property
    def node_level(self) -> str:
        return HOSTNAME_LABEL

    def knows(self, level: str) -> bool:
        return level in self.domain_levels or level == HOSTNAME_LABEL
