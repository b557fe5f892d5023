"""/healthz, /readyz and /leaderz: alive unless a loop crash-loops; ready when alive and
synced, leader or standby; /leaderz only on the leader."""

from __future__ import annotations

import asyncio

import pytest

from egpu.controllers import runtime as runtime_module
from egpu.controllers.health import Health
from egpu.controllers.runtime import Runtime
from fakeapi import FakeInformer

pytestmark = pytest.mark.unit


def test_a_crash_looping_loop_makes_the_operator_unhealthy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime_module, "RESTART_DELAY_S", 0.01)

    async def go() -> None:
        runtime = Runtime(client=None, nodes=FakeInformer(), pods=FakeInformer())  # type: ignore[arg-type]
        health = Health(runtime)
        runtime.lead()
        assert health.alive() == (True, "ok") and health.ready() == (True, "leading")
        assert health.leader() == (True, "leading")

        async def broken() -> None:
            raise RuntimeError("boom")

        runtime.spawn("broken", broken)
        await asyncio.sleep(0.2)
        alive, why = health.alive()
        assert not alive and "broken (RuntimeError: boom)" in why
        assert not health.ready()[0] and not health.leader()[0]
        for task in runtime.tasks:
            task.cancel()
        await asyncio.gather(*runtime.tasks, return_exceptions=True)

    asyncio.run(go())


def test_a_synced_standby_is_ready_but_not_the_leader() -> None:
    runtime = Runtime(client=None, nodes=FakeInformer(), pods=FakeInformer())  # type: ignore[arg-type]
    health = Health(runtime)
    assert health.alive()[0]
    assert health.ready() == (True, "standby")
    assert health.leader() == (False, "standby")
    assert Health().ready() == (False, "caches not synced yet")
    assert Health().leader() == (False, "caches not synced yet")
