"""Background tasks end with their context: cancelled, awaited, a failure raised."""

from __future__ import annotations

import asyncio

import pytest

from lorafaas.background import cancel_and_wait, running_in_background


async def test_tasks_run_in_the_context_and_are_cancelled_on_exit() -> None:
    ticks: list[int] = []

    async def tick() -> None:
        while True:
            ticks.append(1)
            await asyncio.sleep(0)

    async with running_in_background(tick(), tick()) as tasks:
        await asyncio.sleep(0.01)
    assert ticks and all(task.cancelled() for task in tasks)


async def test_a_task_that_failed_raises_its_failure_on_exit() -> None:
    async def fail() -> None:
        raise ValueError("broken loop")

    with pytest.raises(ValueError, match="broken loop"):
        async with running_in_background(fail()):
            await asyncio.sleep(0.01)


async def test_cancel_and_wait_ends_tasks_already_done_too() -> None:
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    pending = asyncio.create_task(asyncio.sleep(60))
    await cancel_and_wait([done, pending])
    assert pending.cancelled()
