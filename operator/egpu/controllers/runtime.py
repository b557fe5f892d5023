"""What the controllers share: the API client, the watch caches, the one ledger, the loops.

Created at operator start-up, handed to handlers through kopf's memo, closed at
clean-up. Every replica keeps its caches and the ledger warm; only the leader runs the
loops that write (`spawn_leading`), so a standby that takes over starts binding at
once. The loops are level-based: each pass reads the caches and acts on the
difference, so a lost event costs at most one pass of delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from egpu.domain.dra import DRA_API_VERSION
from egpu.domain.topology import Topology
from egpu.kube.client import JSON, ApiError, Credentials, KubeClient
from egpu.state.informer import Informer, Listener
from egpu.state.ledger_sync import HOSTNAME_ONLY, LedgerSync
from egpu.state.pods import is_ours

log = logging.getLogger("egpu.runtime")

# A loop that crashed this many times within the window is crash-looping: /healthz
# says so, and the kubelet restarts the operator.
CRASH_LIMIT = 3
CRASH_WINDOW_S = 60.0
RESTART_DELAY_S = 1.0
DRA_PATH = f"/apis/{DRA_API_VERSION}"


class Trigger:
    """A coalescing wake-up: many kicks while a pass runs mean one more pass."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def kick(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that
        # lands with a kick, and the loop would run on past the operator's stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._event.wait()
        self._event.clear()


@dataclass
class LoopHealth:
    crashes: deque[float] = field(default_factory=lambda: deque(maxlen=CRASH_LIMIT))
    last_error: str = ""

    def crash_looping(self, now: float) -> bool:
        return len(self.crashes) >= CRASH_LIMIT and now - self.crashes[0] <= CRASH_WINDOW_S


@dataclass
class Runtime:
    client: KubeClient
    nodes: Informer
    pods: Informer
    ledger: LedgerSync = field(default_factory=LedgerSync)
    topology_name: str = "default"
    # The namespaces whose pods this operator places (the chart's watchNamespaces);
    # empty: all. The ledger counts every pod on every node whatever this says.
    namespaces: frozenset[str] = frozenset()
    workloads: dict[str, JSON] = field(default_factory=dict)
    topologies: dict[str, JSON] = field(default_factory=dict)
    leading: asyncio.Event = field(default_factory=asyncio.Event)
    health: dict[str, LoopHealth] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _leader_loops: list[tuple[str, Callable[[], Awaitable[None]]]] = field(default_factory=list)
    _background: set[asyncio.Future[None]] = field(default_factory=set)
    # ResourceSlices and ResourceClaims, where the API server serves resource.k8s.io/v1.
    slices: Informer | None = None
    claims: Informer | None = None

    @classmethod
    def create(
        cls,
        kubeconfig: str | None = None,
        topology_name: str = "default",
        namespaces: frozenset[str] = frozenset(),
    ) -> Runtime:
        client = KubeClient(Credentials.load(kubeconfig))
        runtime = cls(
            client=client,
            nodes=Informer(client, "/api/v1/nodes", name="nodes"),
            pods=Informer(client, "/api/v1/pods", name="pods"),
            topology_name=topology_name,
            namespaces=namespaces,
        )
        runtime.feed_ledger()
        return runtime

    # -- the one ledger --------------------------------------------------------------

    def feed_ledger(self) -> None:
        """The caches feed the ledger first, before any controller hears of a change."""
        self.nodes.add_listener(self._feeder(LedgerSync.node_changed))
        self.pods.add_listener(self._feeder(LedgerSync.pod_changed))

    def _feeder(self, change: Callable[[LedgerSync, JSON | None, JSON | None], None]) -> Listener:
        """A cache's listener: a relist rebuilds the ledger, any other event is one change."""

        def feed(event: str, old: JSON | None, new: JSON | None) -> None:
            if event == "RESYNC":
                self.rebuild_ledger()
            else:
                change(self.ledger, old, new)

        return feed

    def manages(self, pod: JSON) -> bool:
        """A pod this operator places: its schedulerName, in a watched namespace."""
        if not is_ours(pod):
            return False
        return (
            not self.namespaces or (pod.get("metadata") or {}).get("namespace") in self.namespaces
        )

    def topology(self) -> Topology:
        """The levels of the GPUTopology that drives placement; by node alone without it."""
        body = self.topologies.get(self.topology_name)
        levels = tuple(
            lv.get("nodeLabel") for lv in ((body or {}).get("spec") or {}).get("levels") or []
        )
        try:
            return Topology(levels=levels) if levels else HOSTNAME_ONLY
        except ValueError as exc:
            log.warning(
                "GPUTopology %s unusable (%s); placing by node only", self.topology_name, exc
            )
            return HOSTNAME_ONLY

    def _dra_objects(self) -> tuple[list[JSON] | None, list[JSON] | None]:
        return (
            None if self.slices is None else list(self.slices.store.values()),
            None if self.claims is None else list(self.claims.store.values()),
        )

    def rebuild_ledger(self, topology: Topology | None = None) -> None:
        slices, claims = self._dra_objects()
        self.ledger.reset(
            topology or self.ledger.ledger.topology,
            list(self.nodes.store.values()),
            list(self.pods.store.values()),
            slices,
            claims,
        )

    def refresh_topology(self) -> bool:
        """Rebuild the ledger when the GPUTopology's levels changed; True if it did."""
        topology = self.topology()
        if topology == self.ledger.ledger.topology:
            return False
        self.rebuild_ledger(topology)
        return True

    def audit_ledger(self) -> list[str]:
        slices, claims = self._dra_objects()
        return self.ledger.audit(
            list(self.nodes.store.values()),
            list(self.pods.store.values()),
            slices or (),
            claims or (),
        )

    # -- loops -----------------------------------------------------------------------

    def spawn(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        health = self.health.setdefault(name, LoopHealth())

        async def guarded() -> None:
            while True:
                try:
                    await loop()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a loop must never die for good
                    health.crashes.append(time.monotonic())
                    health.last_error = f"{type(exc).__name__}: {exc}"
                    log.exception("loop %s crashed; restarting in %ss", name, RESTART_DELAY_S)
                    await asyncio.sleep(RESTART_DELAY_S)

        self.tasks.append(asyncio.create_task(guarded(), name=name))

    def spawn_leading(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """A loop that writes: it runs on the leader only, from when it starts leading."""
        self._leader_loops.append((name, loop))
        if self.leading.is_set():
            self.spawn(name, loop)

    def lead(self) -> None:
        """This replica just won the election: start the writing loops."""
        if self.leading.is_set():
            return
        self.leading.set()
        for name, loop in self._leader_loops:
            self.spawn(name, loop)

    def stop_leading(self) -> None:
        """Leadership lost: stop every writing loop now."""
        self.leading.clear()
        names = {name for name, _ in self._leader_loops}
        for task in self.tasks:
            if task.get_name() in names:
                task.cancel()

    def crash_looping(self) -> list[str]:
        now = time.monotonic()
        return [
            f"{name} ({h.last_error})" for name, h in self.health.items() if h.crash_looping(now)
        ]

    def spawn_once(self, work: Awaitable[None]) -> None:
        """Fire and forget (an Event, say); kept referenced until done."""
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def informers(self) -> list[Informer]:
        return [i for i in (self.nodes, self.pods, self.slices, self.claims) if i is not None]

    @property
    def synced(self) -> bool:
        return all(i.synced.is_set() for i in self.informers)

    async def watch_dra(self) -> bool:
        """Cache ResourceSlices and ResourceClaims when the API server serves them
        (Kubernetes 1.34+); without them every node is a device-plugin node."""
        try:
            await self.client.get(DRA_PATH)
        except ApiError as exc:
            if not exc.not_found:
                raise
            log.info("%s is not served: GPUs through DRA are off", DRA_API_VERSION)
            return False
        self.slices = Informer(self.client, f"{DRA_PATH}/resourceslices", name="resourceslices")
        self.claims = Informer(self.client, f"{DRA_PATH}/resourceclaims", name="resourceclaims")
        self.slices.add_listener(self._feeder(LedgerSync.slice_changed))
        self.claims.add_listener(self._feeder(LedgerSync.claim_changed))
        return True

    async def start(self, timeout: float = 60) -> None:
        await self.watch_dra()
        for informer in self.informers:
            self.spawn(f"informer-{informer.name}", informer.run)
        async with asyncio.timeout(timeout):  # see Trigger.wait for why not wait_for
            await asyncio.gather(*(i.synced.wait() for i in self.informers))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.close()


def runtime_of(memo: Any) -> Runtime:
    runtime: Runtime = memo.runtime
    return runtime
