"""What a pod asks of its node beyond resources, as kube-scheduler reads it: taints and
tolerations, nodeSelector, node affinity (required and preferred), and the extra
resources (ephemeral storage, extended resources, host ports) it holds there.

Pure values and matching rules; `egpu.state.pods` reads them from raw pods and
`egpu.engines.placement.filters` applies them to nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

NO_SCHEDULE = "NoSchedule"
NO_EXECUTE = "NoExecute"
PREFER_NO_SCHEDULE = "PreferNoSchedule"
TAINT_EFFECTS = (NO_SCHEDULE, PREFER_NO_SCHEDULE, NO_EXECUTE)
HARD_EFFECTS = (NO_SCHEDULE, NO_EXECUTE)

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
FIELD_OPERATORS = ("In", "NotIn")
NAME_FIELD = "metadata.name"

# Host ports are held like a resource of which every node has one per port; the key
# names the protocol and the port (the host IP is not told apart: two pods asking the
# same port and protocol never share a node, a little stricter than kube-scheduler).
HOST_PORT_PREFIX = "hostport/"


def host_port_key(protocol: str, port: int) -> str:
    return f"{HOST_PORT_PREFIX}{protocol or 'TCP'}/{port}"


def is_host_port(resource: str) -> bool:
    return resource.startswith(HOST_PORT_PREFIX)


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        return (
            f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"
        )


@dataclass(frozen=True, slots=True)
class Toleration:
    """`key` empty with `Exists` tolerates every taint; `effect` empty, every effect."""

    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""

    def tolerates(self, taint: Taint) -> bool:
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator == "Exists":
            return True
        return bool(self.key) and self.value == taint.value


def tolerated(taint: Taint, tolerations: tuple[Toleration, ...]) -> bool:
    return any(t.tolerates(taint) for t in tolerations)


def blocking_taint(taints: tuple[Taint, ...], tolerations: tuple[Toleration, ...]) -> Taint | None:
    """The first NoSchedule or NoExecute taint the pod does not tolerate, if any."""
    for taint in taints:
        if taint.effect in HARD_EFFECTS and not tolerated(taint, tolerations):
            return taint
    return None


def untolerated_soft_taints(taints: tuple[Taint, ...], tolerations: tuple[Toleration, ...]) -> int:
    """How many PreferNoSchedule taints the pod does not tolerate (a score, lower better)."""
    return sum(
        1 for t in taints if t.effect == PREFER_NO_SCHEDULE and not tolerated(t, tolerations)
    )


@dataclass(frozen=True, slots=True)
class Requirement:
    """One `matchExpressions` (or `matchFields`) entry."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.operator not in OPERATORS:
            raise ValueError(f"operator {self.operator!r} is not one of {list(OPERATORS)}")
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"{self.key} {self.operator} needs at least one value")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"{self.key} {self.operator} takes no values")
        if self.operator in ("Gt", "Lt") and (
            len(self.values) != 1 or _integer(self.values[0]) is None
        ):
            raise ValueError(f"{self.key} {self.operator} needs one integer value")

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        op = self.operator
        if op == "In":
            return value is not None and value in self.values
        if op == "NotIn":
            return value is None or value not in self.values
        if op == "Exists":
            return value is not None
        if op == "DoesNotExist":
            return value is None
        have = _integer(value) if value is not None else None
        if have is None:
            return False
        want = _integer(self.values[0])
        assert want is not None
        return have > want if op == "Gt" else have < want

    def __str__(self) -> str:
        if self.operator in ("Exists", "DoesNotExist"):
            return f"{self.key} {self.operator}"
        return f"{self.key} {self.operator} {','.join(self.values)}"


def _integer(text: str) -> int | None:
    body = text[1:] if text[:1] in "+-" else text
    if not body.isascii() or not body.isdigit():
        return None
    return int(text)


@dataclass(frozen=True, slots=True)
class SelectorTerm:
    """One `nodeSelectorTerms` entry: every expression and every field must match.
    A term with neither matches no node (as the API defines it)."""

    expressions: tuple[Requirement, ...] = ()
    fields: tuple[Requirement, ...] = ()

    def __post_init__(self) -> None:
        for f in self.fields:
            if f.key != NAME_FIELD:
                raise ValueError(f"matchFields supports only {NAME_FIELD}, not {f.key!r}")
            if f.operator not in FIELD_OPERATORS:
                raise ValueError(f"matchFields supports only In and NotIn, not {f.operator!r}")

    def matches(self, name: str, labels: Mapping[str, str]) -> bool:
        if not self.expressions and not self.fields:
            return False
        if not all(r.matches(labels) for r in self.expressions):
            return False
        return all(r.matches({NAME_FIELD: name}) for r in self.fields)

    def __str__(self) -> str:
        return " and ".join(str(r) for r in (*self.expressions, *self.fields)) or "(empty)"


@dataclass(frozen=True, slots=True)
class PreferredTerm:
    weight: int
    term: SelectorTerm


@dataclass(frozen=True, slots=True)
class NodeConstraints:
    """What a pod asks of a node's labels and taints. `required` None: no required node
    affinity; otherwise a node must match at least one term."""

    node_selector: tuple[tuple[str, str], ...] = ()
    required: tuple[SelectorTerm, ...] | None = None
    preferred: tuple[PreferredTerm, ...] = ()
    tolerations: tuple[Toleration, ...] = ()

    @property
    def active(self) -> bool:
        """Whether it asks anything at all (the empty ask is the common case)."""
        return self != NO_CONSTRAINTS

    @property
    def selects(self) -> bool:
        """Whether labels or names decide which nodes are feasible (needs a scan)."""
        return bool(self.node_selector) or self.required is not None

    @property
    def scores(self) -> bool:
        return bool(self.preferred)

    def selector_mismatch(self, labels: Mapping[str, str]) -> str | None:
        for key, value in self.node_selector:
            if labels.get(key) != value:
                return f"{key}={value}"
        return None

    def affinity_matches(self, name: str, labels: Mapping[str, str]) -> bool:
        return self.required is None or any(t.matches(name, labels) for t in self.required)

    def preference(self, name: str, labels: Mapping[str, str]) -> int:
        """The sum of the weights of the preferred terms the node matches."""
        return sum(p.weight for p in self.preferred if p.term.matches(name, labels))


NO_CONSTRAINTS = NodeConstraints()
