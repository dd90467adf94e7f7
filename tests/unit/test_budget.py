"""ByteBudget: the bytes the copier may hold at once, across all copies."""

from __future__ import annotations

import asyncio

import pytest

from replicator.budget import ByteBudget


async def test_an_acquire_waits_until_enough_is_released() -> None:
    budget = ByteBudget(100)
    first = await budget.acquire(70)
    waiting = asyncio.create_task(budget.acquire(50))
    await asyncio.sleep(0)
    assert not waiting.done() and budget.used == 70
    await budget.release(first)
    assert await asyncio.wait_for(waiting, 1) == 50
    assert budget.used == 50


async def test_a_body_larger_than_the_whole_budget_waits_for_all_of_it_instead_of_forever() -> None:
    budget = ByteBudget(100)
    small = await budget.acquire(10)
    large = asyncio.create_task(budget.acquire(1000))
    await asyncio.sleep(0)
    assert not large.done()
    await budget.release(small)
    assert await asyncio.wait_for(large, 1) == 100  # what to give back: the whole budget
    assert budget.used == 100


async def test_hold_gives_the_bytes_back_when_the_copy_fails() -> None:
    budget = ByteBudget(100)
    with pytest.raises(RuntimeError):
        async with budget.hold(60):
            assert budget.used == 60
            raise RuntimeError("the copy failed")
    assert budget.used == 0
