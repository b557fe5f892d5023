"""Simulated container usage: what a simulated container "uses" is what its pod says.

A pod's `egpu.io/sim-usage` annotation holds JSON per container, e.g.
`{"main": {"cpu": "1500m", "memory": "3Gi"}}` (optionally `"throttled": 0.3`, the
share of CFS periods throttled). Tests and benchmarks change it over time with the
helpers below; the operator reads it through `egpu.state.usage.AnnotationUsageReader`,
one of the `UsageReader` sources, so the resize loop cannot tell it from metrics.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from egpu.kube.client import KubeClient, path_for
from egpu.state.usage import USAGE_ANNOTATION, parse_usage_annotation

Usage = Mapping[str, Mapping[str, Any]]
"""{container: {"cpu": quantity, "memory": quantity, "throttled": fraction}}."""


def usage_annotation(usage: Usage) -> str:
    """The annotation's text; checked, so a typo fails here rather than in the operator."""
    text = json.dumps({c: dict(u) for c, u in usage.items()}, separators=(",", ":"))
    parse_usage_annotation(text)
    return text


def usage_patch(usage: Usage) -> dict[str, Any]:
    """A merge patch of the pod that sets its simulated usage."""
    return {"metadata": {"annotations": {USAGE_ANNOTATION: usage_annotation(usage)}}}


async def set_usage(client: KubeClient, namespace: str, name: str, usage: Usage) -> float:
    """Set one pod's usage; returns the wall time at which the API server had it."""
    await client.patch(path_for("v1", "pods", namespace, name), usage_patch(usage))
    return time.time()


async def step_usage(
    client: KubeClient,
    pods: Iterable[tuple[str, str]],
    usage: Usage,
    concurrency: int = 32,
) -> dict[tuple[str, str], float]:
    """Set the same usage on many pods; when each change became visible, per pod."""
    gate = asyncio.Semaphore(concurrency)

    async def one(namespace: str, name: str) -> tuple[tuple[str, str], float]:
        async with gate:
            return (namespace, name), await set_usage(client, namespace, name, usage)

    return dict(await asyncio.gather(*(one(ns, name) for ns, name in pods)))
