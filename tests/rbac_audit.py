"""A ServiceAccount's RBAC rules against what it really did, read from the API
server's audit log (`hack/localcluster.py up --audit`: one JSON event a line).

Every granted (API group, resource/subresource, verb) must have been used, or
be allowed to go unused for a stated reason; nothing may have been refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

FORBIDDEN = 403


@dataclass(frozen=True, order=True)
class Access:
    group: str  # "" is the core group
    resource: str  # with its subresource: "pods/binding"
    verb: str

    def covers(self, other: Access) -> bool:
        """As RBAC matches a rule: "*" stands for any value."""
        return all(
            mine in ("*", theirs)
            for mine, theirs in (
                (self.group, other.group),
                (self.resource, other.resource),
                (self.verb, other.verb),
            )
        )

    def __str__(self) -> str:
        return f"{self.group or 'core'} {self.resource} {self.verb}"


@dataclass(frozen=True)
class Request:
    access: Access
    namespace: str | None  # None: cluster-scoped, or across all namespaces
    code: int


def requests_of(lines: Iterable[str], username: str, skip_user_agent: str = "") -> list[Request]:
    """The resource requests `username` made, one per audit ID with the code of its
    last stage (a watch logs ResponseStarted, then ResponseComplete). Requests whose
    user agent starts with `skip_user_agent` are left out (deliberate probes);
    non-resource ones (/api, /version: discovery) are not RBAC rules of ours."""
    last: dict[str, Request] = {}
    for line in lines:
        if not line.strip():
            continue
        event: dict[str, Any] = json.loads(line)
        if (event.get("user") or {}).get("username") != username:
            continue
        if skip_user_agent and str(event.get("userAgent", "")).startswith(skip_user_agent):
            continue
        ref = event.get("objectRef")
        if not ref or not ref.get("resource"):
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        access = Access(ref.get("apiGroup", ""), resource, event["verb"])
        code = int((event.get("responseStatus") or {}).get("code", 0))
        last[event["auditID"]] = Request(access, ref.get("namespace"), code)
    return list(last.values())


def grants_of(rules: Iterable[Mapping[str, Any]]) -> set[Access]:
    """Each (group, resource, verb) that RBAC rules name, one by one."""
    return {
        Access(group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


@dataclass
class Verdict:
    refused: list[Request] = field(default_factory=list)
    unused: list[Access] = field(default_factory=list)  # granted, never used, not allowed to be
    stale: list[Access] = field(default_factory=list)  # allowed unused, yet used or not granted
    used: dict[Access, set[str]] = field(default_factory=dict)  # grant -> namespaces (or cluster)

    @property
    def ok(self) -> bool:
        return not (self.refused or self.unused or self.stale)

    def report(self) -> str:
        lines = [f"refused: {r.access} in {r.namespace or 'the cluster'}" for r in self.refused]
        lines += [f"granted, never used: {a}" for a in self.unused]
        lines += [f"allowed to go unused, but used or not granted: {a}" for a in self.stale]
        return "\n".join(lines)


def compare(
    rules: Iterable[Mapping[str, Any]],
    requests: Iterable[Request],
    allowed_unused: Mapping[Access, str],
) -> Verdict:
    grants = grants_of(rules)
    requests = list(requests)
    verdict = Verdict(refused=sorted((r for r in requests if r.code == FORBIDDEN), key=str))
    done = [r for r in requests if r.code != FORBIDDEN]
    for grant in sorted(grants):
        where = {r.namespace or "cluster" for r in done if grant.covers(r.access)}
        if where:
            verdict.used[grant] = where
        elif grant not in allowed_unused:
            verdict.unused.append(grant)
    verdict.stale = sorted(a for a in allowed_unused if a not in grants or a in verdict.used)
    return verdict
