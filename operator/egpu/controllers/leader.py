"""One leader among the operator's replicas, elected through a Lease.

Every replica keeps its caches and ledger warm; the one holding the Lease runs the
loops that write (`Runtime.lead`). A leader that cannot renew within the renew
deadline stops its loops at once and asks the operator to exit (the kubelet restarts
it as a standby), before anyone else may take the Lease. A clean shutdown gives the
Lease up, so a standby takes over without waiting for it to expire.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

from egpu.actuators.lease import read_lease, record_of, write_lease
from egpu.controllers.runtime import Runtime
from egpu.engines.leadership import LeaseTimings, Observation, may_take, observe, still_leading
from egpu.kube.client import JSON, ApiError, KubeClient, TransportError
from egpu.observability.metrics import LEADER

log = logging.getLogger("egpu.leader")
RELEASE_ATTEMPTS = 3


def default_identity() -> str:
    host = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{host}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


class LeaderElector:
    def __init__(
        self,
        runtime: Runtime,
        namespace: str,
        name: str = "egpu-operator",
        identity: str | None = None,
        timings: LeaseTimings | None = None,
        on_lost: Callable[[], None] | None = None,
        client: KubeClient | None = None,
    ) -> None:
        self.runtime = runtime
        # The Lease on connections of its own: behind thousands of binds queued on the
        # main client's pool, a renewal would miss the renew deadline.
        self.client = client or runtime.client
        self._releasing = False
        self.namespace, self.name = namespace, name
        self.identity = identity or default_identity()
        self.timings = timings or LeaseTimings()
        self.on_lost = on_lost
        self._observed: Observation | None = None
        self._lease: JSON | None = None
        self._renewed_at = float("-inf")
        self.leading_since: float | None = None

    @property
    def leading(self) -> bool:
        return self.runtime.leading.is_set()

    async def run(self) -> None:
        """Wait to win the Lease, lead while it is renewed; on losing it, stop."""
        while True:
            if await self._try_take():
                break
            await asyncio.sleep(self.timings.retry_s)
        self._renewed_at = time.monotonic()
        self.leading_since = time.time()
        LEADER.set(1)
        log.info("leading as %s (Lease %s/%s)", self.identity, self.namespace, self.name)
        self.runtime.lead()
        while True:
            await asyncio.sleep(self.timings.retry_s)
            if self._releasing:
                return
            # A renewal that hangs must not outlast the renew deadline: past it, a
            # standby may take the Lease while this one still binds.
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the result
            # of a renewal that completes as the task is cancelled, swallowing the stop.
            left = self._renewed_at + self.timings.renew_deadline_s - time.monotonic()
            try:
                async with asyncio.timeout(max(0.0, left)):
                    renewed = await self._try_take()
            except TimeoutError:
                renewed = False
            if renewed:
                self._renewed_at = time.monotonic()
            elif not still_leading(self._renewed_at, self.timings, time.monotonic()):
                self._lose("could not renew the Lease within the renew deadline")
                return

    def _lose(self, why: str) -> None:
        LEADER.set(0)
        log.error("leadership lost (%s): stopping the loops", why)
        self.runtime.stop_leading()
        if self.on_lost is not None:
            self.on_lost()

    async def _try_take(self) -> bool:
        """Take or renew the Lease; False when someone else holds it (or the API server
        cannot be reached)."""
        now = time.monotonic()
        try:
            lease = await read_lease(self.client, self.namespace, self.name)
        except (ApiError, TransportError) as exc:
            log.warning("reading the Lease failed: %s", exc)
            return False
        record = record_of(lease)
        self._observed = observe(self._observed, record, now)
        if self.leading and record is not None and record.holder not in (None, self.identity):
            self._lose(f"the Lease is held by {record.holder}")
            return False
        if not may_take(self._observed, self.identity, self.timings, now):
            return False
        try:
            self._lease = await write_lease(
                self.client,
                self.namespace,
                self.name,
                lease,
                self.identity,
                self.timings.duration_s,
                dt.datetime.now(dt.UTC),
            )
        except ApiError as exc:
            if not exc.conflict:  # a conflict: someone else wrote first
                log.warning("writing the Lease failed: %s", exc)
            return False
        except TransportError as exc:
            log.warning("writing the Lease failed: %s", exc)
            return False
        self._observed = observe(self._observed, record_of(self._lease), now)
        return True

    async def release(self) -> None:
        """Give the Lease up (clean shutdown), so a standby need not wait for it. The
        renewal loop is stopped first; a renewal already on its way is a conflict, and
        the release is tried again on the Lease as it is then."""
        if not self.leading:
            return
        self._releasing = True
        self.runtime.stop_leading()
        LEADER.set(0)
        for _ in range(RELEASE_ATTEMPTS):
            try:
                lease = await read_lease(self.client, self.namespace, self.name)
                record = record_of(lease)
                if record is None or record.holder != self.identity:
                    return
                await write_lease(
                    self.client,
                    self.namespace,
                    self.name,
                    lease,
                    None,
                    self.timings.duration_s,
                    dt.datetime.now(dt.UTC),
                )
                log.info("Lease %s/%s given up", self.namespace, self.name)
                return
            except ApiError as exc:
                if not exc.conflict:
                    log.warning("giving up the Lease failed: %s", exc)
                    return
            except TransportError as exc:
                log.warning("giving up the Lease failed: %s", exc)
                return
        log.warning("giving up the Lease failed: %d conflicts in a row", RELEASE_ATTEMPTS)

    async def close(self) -> None:
        """Close the Lease's own connections (not the runtime's)."""
        if self.client is not self.runtime.client:
            await self.client.close()
