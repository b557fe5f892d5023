"""One explicit kopf registry: every handler module registers into it."""

from __future__ import annotations

from typing import Any

import kopf

from egpu.controllers import binder, inference, resize, settings, topologies, workloads
from egpu.controllers.runtime import Runtime


def build_registry(
    kubeconfig: str | None = None, topology_name: str = "default"
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    settings.register(registry)

    @kopf.on.startup(registry=registry)
    async def start_runtime(memo: kopf.Memo, **_: Any) -> None:
        runtime = Runtime.create(kubeconfig)
        await runtime.start()
        memo.runtime = runtime
        workloads.start(runtime)
        binder.start(runtime, topology_name)
        resize.start(runtime)
        inference.start(runtime)

    @kopf.on.cleanup(registry=registry)
    async def stop_runtime(memo: kopf.Memo, **_: Any) -> None:
        runtime: Runtime | None = getattr(memo, "runtime", None)
        if runtime is not None:
            await runtime.stop()

    topologies.register(registry)
    workloads.register(registry)
    inference.register(registry)
    return registry
