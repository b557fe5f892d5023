"""The loops' coalescing wake-up: kicks wake a waiting loop, and a stop (a task
cancel) is never lost, even when it lands in the same step as a kick."""

from __future__ import annotations

import asyncio

import pytest

from egpu.controllers.runtime import Trigger

pytestmark = pytest.mark.unit


def test_a_kick_wakes_the_waiter_and_a_timeout_wakes_it_too() -> None:
    async def go() -> None:
        trigger = Trigger()
        waiter = asyncio.create_task(trigger.wait(10))
        await asyncio.sleep(0)
        trigger.kick()
        await asyncio.wait_for(waiter, 1)
        await asyncio.wait_for(trigger.wait(0.01), 1)  # nothing kicked: the timeout

    asyncio.run(go())


def test_a_stop_that_lands_with_a_kick_is_not_swallowed() -> None:
    async def go() -> None:
        trigger = Trigger()
        waiter = asyncio.create_task(trigger.wait(10))
        await asyncio.sleep(0)  # the waiter now waits
        trigger.kick()
        waiter.cancel()  # the operator stops in the same step
        await asyncio.gather(waiter, return_exceptions=True)
        assert waiter.cancelled(), "the loop would run on past its stop"

    asyncio.run(go())
