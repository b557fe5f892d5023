"""What the controllers share: the API client, the watch caches, the loops.

Created at operator start-up, handed to handlers through kopf's memo, closed
at clean-up. The loops are level-based: each pass reads the caches whole and
acts on the difference, so a lost event costs at most one pass of delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from egpu.kube.client import JSON, Credentials, KubeClient
from egpu.state.informer import Informer

log = logging.getLogger("egpu.runtime")


class Trigger:
    """A coalescing wake-up: many kicks while a pass runs mean one more pass."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def kick(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()


@dataclass
class Runtime:
    client: KubeClient
    nodes: Informer
    pods: Informer
    workloads: dict[str, JSON] = field(default_factory=dict)
    topologies: dict[str, JSON] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _background: set[asyncio.Future[None]] = field(default_factory=set)

    @classmethod
    def create(cls, kubeconfig: str | None = None) -> Runtime:
        client = KubeClient(Credentials.load(kubeconfig))
        return cls(
            client=client,
            nodes=Informer(client, "/api/v1/nodes", name="nodes"),
            pods=Informer(client, "/api/v1/pods", name="pods"),
        )

    def spawn(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        async def guarded() -> None:
            while True:
                try:
                    await loop()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:  # a loop must never die for good
                    log.exception("loop %s crashed; restarting in 1s", name)
                    await asyncio.sleep(1)

        self.tasks.append(asyncio.create_task(guarded(), name=name))

    def spawn_once(self, work: Awaitable[None]) -> None:
        """Fire and forget (an Event, say); kept referenced until done."""
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def start(self, timeout: float = 60) -> None:
        self.spawn("informer-nodes", self.nodes.run)
        self.spawn("informer-pods", self.pods.run)
        await asyncio.wait_for(
            asyncio.gather(self.nodes.synced.wait(), self.pods.synced.wait()), timeout
        )

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.close()


def runtime_of(memo: Any) -> Runtime:
    runtime: Runtime = memo.runtime
    return runtime
