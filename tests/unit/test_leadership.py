"""Leader election: the rules, and two electors over one Lease of an in-memory API with
optimistic concurrency: one leads; a dead leader is replaced only after the Lease
expired by the standby's own clock; a leader that cannot renew stops its loops."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from egpu.controllers.leader import LeaderElector
from egpu.controllers.runtime import Runtime
from egpu.engines.leadership import (
    LeaseRecord,
    LeaseTimings,
    Observation,
    may_take,
    observe,
    still_leading,
)
from egpu.kube.client import ApiError, TransportError
from fakeapi import FakeInformer

pytestmark = pytest.mark.unit
FAST = LeaseTimings(duration_s=0.6, renew_deadline_s=0.4, retry_s=0.05)


def test_timings_must_nest() -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        LeaseTimings(duration_s=10, renew_deadline_s=10, retry_s=2)


def test_a_standby_waits_a_whole_duration_of_an_unchanged_record() -> None:
    held = LeaseRecord("other", "2026-01-01T00:00:00.000000Z", 15, 1)
    first = observe(None, held, now=100.0)
    assert not may_take(first, "me", LeaseTimings(), now=110.0)
    assert observe(first, held, now=112.0) is first, "unchanged: the clock keeps running"
    assert may_take(first, "me", LeaseTimings(), now=115.0)
    renewed = observe(first, LeaseRecord("other", "2026-01-01T00:00:10.000000Z", 15, 1), 112.0)
    assert not may_take(renewed, "me", LeaseTimings(), now=115.0), "a renewal restarts it"


def test_anyone_may_take_a_free_lease_and_the_holder_may_renew() -> None:
    assert may_take(Observation(None, 0.0), "me", LeaseTimings(), 0.0)
    assert may_take(Observation(LeaseRecord(None, None, None), 0.0), "me", LeaseTimings(), 0.0)
    assert may_take(Observation(LeaseRecord("me", "t", 15), 0.0), "me", LeaseTimings(), 0.0)
    assert still_leading(0.0, LeaseTimings(), 9.9) and not still_leading(0.0, LeaseTimings(), 10.0)


class LeaseApi:
    """One Lease, updated only onto the resourceVersion read (409 otherwise)."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.rv = 0
        self.down = False
        self.stalled = False

    async def _check(self) -> None:
        if self.down:
            raise TransportError("the API server is unreachable")
        if self.stalled:  # answers nothing, for far longer than any Lease
            await asyncio.sleep(3600)

    async def get(self, path: str, **_: Any) -> dict[str, Any]:
        await self._check()
        if self.lease is None:
            raise ApiError(404, {"reason": "NotFound"}, "GET", path)
        return copy.deepcopy(self.lease)

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        await self._check()
        if self.lease is not None:
            raise ApiError(409, {"reason": "AlreadyExists"}, "POST", path)
        return self._store(body)

    async def request(self, method: str, path: str, body: Any = None, **_: Any) -> Any:
        await self._check()
        assert method == "PUT" and self.lease is not None
        if body["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            raise ApiError(409, {"reason": "Conflict"}, "PUT", path)
        return self._store(body)

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.rv += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.rv)
        return copy.deepcopy(self.lease)

    @property
    def holder(self) -> str:
        return str(((self.lease or {}).get("spec") or {}).get("holderIdentity") or "")


def elector(api: LeaseApi, name: str, lost: list[str]) -> tuple[LeaderElector, Runtime]:
    runtime = Runtime(client=api, nodes=FakeInformer(), pods=FakeInformer())  # type: ignore[arg-type]
    return (
        LeaderElector(
            runtime, "ns", identity=name, timings=FAST, on_lost=lambda: lost.append(name)
        ),
        runtime,
    )


def test_one_of_two_leads_and_the_other_takes_over_when_it_dies() -> None:
    async def go() -> None:
        api, lost = LeaseApi(), []
        a, ra = elector(api, "a", lost)
        b, rb = elector(api, "b", lost)
        ta = asyncio.create_task(a.run())
        await asyncio.sleep(0.1)
        tb = asyncio.create_task(b.run())
        await asyncio.sleep(0.3)
        assert ra.leading.is_set() and not rb.leading.is_set() and api.holder == "a"
        ta.cancel()  # a dies without a word (SIGKILL): its Lease just stops being renewed
        died = asyncio.get_running_loop().time()
        await asyncio.wait_for(rb.leading.wait(), 5)
        waited = asyncio.get_running_loop().time() - died
        assert waited >= FAST.duration_s - FAST.retry_s - 0.1, "took over before the Lease ran out"
        assert api.holder == "b" and api.lease["spec"]["leaseTransitions"] == 1  # type: ignore[index]
        tb.cancel()
        await asyncio.gather(ta, tb, return_exceptions=True)

    asyncio.run(go())


def test_a_leader_that_cannot_renew_stops_its_loops_in_time() -> None:
    async def go() -> None:
        api, lost = LeaseApi(), []
        a, ra = elector(api, "a", lost)
        gone = asyncio.Event()
        a.on_lost = gone.set
        wrote: list[str] = []

        async def writer() -> None:
            while True:
                wrote.append("x")
                await asyncio.sleep(0.01)

        ra.spawn_leading("writer", writer)
        task = asyncio.create_task(a.run())
        await asyncio.sleep(0.2)
        assert ra.leading.is_set() and wrote
        api.down = True  # cut off from the API server
        cut = asyncio.get_running_loop().time()
        await asyncio.wait_for(gone.wait(), 5)
        stopped = asyncio.get_running_loop().time() - cut
        assert stopped < FAST.duration_s, "it must stop before a standby may take over"
        assert not ra.leading.is_set()
        await asyncio.sleep(0.05)
        count = len(wrote)
        await asyncio.sleep(0.1)
        assert len(wrote) == count, "its writing loops are stopped"
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())


def test_a_clean_stop_gives_the_lease_up() -> None:
    async def go() -> None:
        api, lost = LeaseApi(), []
        a, _ = elector(api, "a", lost)
        task = asyncio.create_task(a.run())
        await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await a.release()
        assert api.holder == ""
        b, rb = elector(api, "b", lost)
        task_b = asyncio.create_task(b.run())
        await asyncio.sleep(0.1)
        assert rb.leading.is_set(), "taken at once, without waiting for the Lease to expire"
        task_b.cancel()
        await asyncio.gather(task_b, return_exceptions=True)

    asyncio.run(go())


def test_a_leader_whose_lease_calls_hang_stops_within_the_renew_deadline() -> None:
    async def go() -> None:
        api, lost = LeaseApi(), []
        a, ra = elector(api, "a", lost)
        gone = asyncio.Event()
        a.on_lost = gone.set
        task = asyncio.create_task(a.run())
        await asyncio.sleep(0.2)
        assert ra.leading.is_set()
        api.stalled = True  # its Lease requests hang; a standby takes over after 0.6 s
        stalled = asyncio.get_running_loop().time()
        await asyncio.wait_for(gone.wait(), 5)
        stopped = asyncio.get_running_loop().time() - stalled
        assert stopped < FAST.duration_s, f"still leading {stopped:.2f}s after the stall"
        assert not ra.leading.is_set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())


class RenewingMeanwhile(LeaseApi):
    """The leader's own renewal lands between the read and the write of its release
    (the renewal loop still runs while the operator stops)."""

    def __init__(self) -> None:
        super().__init__()
        self.renew_on_next_read = False

    async def get(self, path: str, **kw: Any) -> dict[str, Any]:
        lease = await super().get(path, **kw)
        if self.renew_on_next_read:
            self.renew_on_next_read = False
            self._store(copy.deepcopy(self.lease))  # type: ignore[arg-type]
        return lease


def test_a_clean_stop_gives_the_lease_up_even_when_a_renewal_lands_in_between() -> None:
    async def go() -> None:
        api, lost = RenewingMeanwhile(), []
        a, _ = elector(api, "a", lost)
        task = asyncio.create_task(a.run())
        await asyncio.sleep(0.1)
        api.renew_on_next_read = True
        await a.release()  # while its renewal loop still runs, as at the operator's stop
        assert api.holder == "", "the Lease is still held: a standby waits it out"
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())


class CancelledAsItRenews(LeaseApi):
    """The operator's stop (a task cancel) lands in the very step in which a renewal
    completes, as it may when the loop is busy."""

    def __init__(self) -> None:
        super().__init__()
        self.cancel_on_write: asyncio.Task[None] | None = None

    async def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        lease = await super().request(method, path, body, **kw)
        if self.cancel_on_write is not None:
            self.cancel_on_write.cancel()
        return lease


def test_a_stop_that_lands_as_a_renewal_completes_still_stops_the_elector() -> None:
    async def go() -> None:
        api, lost = CancelledAsItRenews(), []
        a, ra = elector(api, "a", lost)
        task = asyncio.create_task(a.run())
        await asyncio.wait_for(ra.leading.wait(), 5)
        api.cancel_on_write = task
        done, _ = await asyncio.wait({task}, timeout=3)
        assert task in done, "the elector swallowed its cancellation and renews on"
        assert task.cancelled()

    asyncio.run(go())


class Saturated:
    """The operator's main client with every connection busy (a large backlog of binds
    queued ahead): nothing it is asked comes back for far longer than any Lease."""

    async def get(self, path: str, **_: Any) -> Any:
        await asyncio.sleep(3600)

    async def create(self, path: str, body: Any) -> Any:
        await asyncio.sleep(3600)

    async def request(self, *_: Any, **__: Any) -> Any:
        await asyncio.sleep(3600)


def test_the_lease_is_renewed_on_its_own_connections_whatever_else_is_queued() -> None:
    async def go() -> None:
        api, lost = LeaseApi(), []
        runtime = Runtime(client=Saturated(), nodes=FakeInformer(), pods=FakeInformer())  # type: ignore[arg-type]
        a = LeaderElector(
            runtime,
            "ns",
            identity="a",
            timings=FAST,
            on_lost=lambda: lost.append("a"),
            client=api,  # type: ignore[arg-type]
        )
        task = asyncio.create_task(a.run())
        await asyncio.sleep(3 * FAST.duration_s)
        assert runtime.leading.is_set() and not lost and api.holder == "a"
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())
