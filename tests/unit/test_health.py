"""/healthz and /readyz: alive unless a loop crash-loops; ready only when synced and
leading."""

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

        async def broken() -> None:
            raise RuntimeError("boom")

        runtime.spawn("broken", broken)
        await asyncio.sleep(0.2)
        alive, why = health.alive()
        assert not alive and "broken (RuntimeError: boom)" in why
        assert not health.ready()[0]
        for task in runtime.tasks:
            task.cancel()
        await asyncio.gather(*runtime.tasks, return_exceptions=True)

    asyncio.run(go())


def test_a_standby_is_alive_but_not_ready() -> None:
    runtime = Runtime(client=None, nodes=FakeInformer(), pods=FakeInformer())  # type: ignore[arg-type]
    health = Health(runtime)
    assert health.alive()[0]
    assert health.ready() == (False, "standby: another replica leads")
    assert Health().ready() == (False, "caches not synced yet")
