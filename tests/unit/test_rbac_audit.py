"""The audit-log reading that proves the chart's RBAC rule by rule (tests/rbac_audit.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rbac_audit import Access, compare, requests_of

pytestmark = pytest.mark.unit

SA = "system:serviceaccount:egpu-system:egpu"


def event(
    verb: str,
    resource: str,
    code: int = 200,
    *,
    group: str = "",
    subresource: str = "",
    namespace: str = "",
    audit_id: str = "",
    user: str = SA,
    agent: str = "kopf/1.45",
    stage: str = "ResponseComplete",
) -> str:
    ref: dict[str, Any] = {"resource": resource, "apiVersion": "v1"}
    if group:
        ref["apiGroup"] = group
    if subresource:
        ref["subresource"] = subresource
    if namespace:
        ref["namespace"] = namespace
    return json.dumps(
        {
            "auditID": audit_id or f"{verb}-{resource}-{subresource}-{namespace}-{code}",
            "stage": stage,
            "verb": verb,
            "user": {"username": user},
            "userAgent": agent,
            "objectRef": ref,
            "responseStatus": {"code": code},
        }
    )


def test_it_reads_the_accounts_resource_requests_only() -> None:
    lines = [
        event("create", "pods", subresource="binding", namespace="team"),
        event("list", "pods", user="system:serviceaccount:other:default"),
        event("get", "secrets", 403, agent="egpu-rbac-probe"),
        json.dumps({"auditID": "x", "verb": "get", "user": {"username": SA}, "stage": "x"}),
        "",
    ]
    requests = requests_of(lines, SA, skip_user_agent="egpu-rbac-probe")
    assert [(r.access, r.namespace, r.code) for r in requests] == [
        (Access("", "pods/binding", "create"), "team", 200)
    ]


def test_a_watch_counts_once_with_the_code_of_its_last_stage() -> None:
    lines = [
        event("watch", "nodes", 200, audit_id="w", stage="ResponseStarted"),
        event("watch", "nodes", 200, audit_id="w"),
    ]
    assert len(requests_of(lines, SA)) == 1


RULES = [
    {"apiGroups": [""], "resources": ["pods", "pods/binding"], "verbs": ["get", "create"]},
    {"apiGroups": ["egpu.io"], "resources": ["*"], "verbs": ["patch"]},
]


def test_every_grant_used_and_nothing_refused_passes() -> None:
    requests = requests_of(
        [
            event("get", "pods", namespace="a"),
            event("create", "pods", namespace="b"),
            event("create", "pods", subresource="binding", namespace="a"),
            event("patch", "gpuworkloads", group="egpu.io", subresource="status"),
        ],
        SA,
    )
    verdict = compare(RULES, requests, {Access("", "pods/binding", "get"): "nothing reads it"})
    assert verdict.ok, verdict.report()
    assert verdict.used[Access("", "pods", "get")] == {"a"}
    assert verdict.used[Access("egpu.io", "*", "patch")] == {"cluster"}


def test_a_grant_never_used_fails_unless_allowed() -> None:
    requests = requests_of([event("get", "pods"), event("create", "pods")], SA)
    verdict = compare(RULES, requests, {Access("", "pods/binding", "get"): "why"})
    assert not verdict.ok
    assert verdict.unused == [Access("", "pods/binding", "create"), Access("egpu.io", "*", "patch")]


def test_a_refused_request_fails() -> None:
    lines = [event(v, r) for v, r in [("get", "pods"), ("create", "pods")]]
    lines.append(event("list", "secrets", 403))
    allowed = {Access("", "pods/binding", v): "why" for v in ("get", "create")} | {
        Access("egpu.io", "*", "patch"): "why"
    }
    verdict = compare(RULES, requests_of(lines, SA), allowed)
    assert [str(r.access) for r in verdict.refused] == ["core secrets list"]
    assert not verdict.ok and not verdict.unused


def test_an_allowance_that_is_used_or_not_granted_is_stale() -> None:
    lines = [event("get", "pods"), event("create", "pods")]
    allowed = {
        Access("", "pods", "get"): "used after all",
        Access("", "nodes", "patch"): "no such rule",
        Access("", "pods/binding", "get"): "why",
        Access("", "pods/binding", "create"): "why",
        Access("egpu.io", "*", "patch"): "why",
    }
    verdict = compare(RULES, requests_of(lines, SA), allowed)
    assert verdict.stale == [Access("", "nodes", "patch"), Access("", "pods", "get")]
