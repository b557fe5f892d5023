"""One explicit kopf registry: every handler module registers into it, and the start-up
handler wires the controllers together (explicit dependencies, no globals)."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kopf

from egpu.controllers import binder, inference, repair, resize, settings, topologies, workloads
from egpu.controllers.health import Health
from egpu.controllers.leader import LeaderElector
from egpu.controllers.runtime import Runtime
from egpu.engines.leadership import LeaseTimings
from egpu.kube.client import KubeClient

log = logging.getLogger("egpu.operator")


@dataclass(frozen=True)
class OperatorOptions:
    kubeconfig: str | None = None
    topology_name: str = "default"
    leader_elect: bool = True
    lease_namespace: str = "default"
    lease_name: str = "egpu-operator"
    lease_timings: LeaseTimings = field(default_factory=LeaseTimings)
    namespaces: frozenset[str] = frozenset()  # empty: the whole cluster


def build_registry(
    options: OperatorOptions | None = None,
    health: Health | None = None,
    on_lost: Callable[[], None] | None = None,
) -> kopf.OperatorRegistry:
    options = options or OperatorOptions()
    registry = kopf.OperatorRegistry()
    settings.register(registry)

    @kopf.on.startup(registry=registry)
    async def start_runtime(memo: kopf.Memo, **_: Any) -> None:
        runtime = Runtime.create(options.kubeconfig, options.topology_name, options.namespaces)
        await runtime.start()
        # The ledger of a large cluster is hundreds of thousands of long-lived
        # objects: keep them out of the collector's full passes (pauses of 100s of ms).
        gc.freeze()
        memo.runtime = runtime
        memo.workloads = workloads.start(runtime)
        memo.binder = binder.start(runtime, verdicts=memo.workloads)
        memo.resize = resize.start(runtime, memo.binder)
        memo.inference = inference.start(runtime, memo.binder)
        memo.repair = repair.start(runtime, memo.workloads)
        if health is not None:
            health.runtime = runtime
        if options.leader_elect:
            memo.elector = LeaderElector(
                runtime,
                options.lease_namespace,
                options.lease_name,
                timings=options.lease_timings,
                on_lost=on_lost,
                client=KubeClient(runtime.client.credentials, connections=2),
            )
            runtime.spawn("leader-election", memo.elector.run)
        else:
            log.warning("leader election is off: run one replica only")
            runtime.lead()

    @kopf.on.cleanup(registry=registry)
    async def stop_runtime(memo: kopf.Memo, **_: Any) -> None:
        elector: LeaderElector | None = getattr(memo, "elector", None)
        if elector is not None:
            await elector.release()
            await elector.close()
        runtime: Runtime | None = getattr(memo, "runtime", None)
        if runtime is not None:
            await runtime.stop()

    topologies.register(registry)
    workloads.register(registry)
    inference.register(registry)
    return registry
