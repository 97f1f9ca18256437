"""``calls.eager``: a coroutine run at once as far as it goes, then as a task would."""

from __future__ import annotations

import asyncio

import pytest

from pydfs.calls import eager


async def at_once() -> str:
    return "done"


async def waits(fut: asyncio.Future[int]) -> int:
    return await fut + 1


def test_a_coroutine_that_never_waits_answers_at_once() -> None:
    assert eager(at_once()) == "done"  # no loop needed: nothing was scheduled


def test_the_rest_runs_as_a_task_with_the_futures_outcome() -> None:
    async def go() -> None:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        pending = eager(waits(fut))
        assert isinstance(pending, asyncio.Future) and not pending.done()
        fut.set_result(41)
        assert await pending == 42

        bad: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        failing = eager(waits(bad))
        bad.set_exception(ValueError("no"))
        with pytest.raises(ValueError, match="no"):
            await failing

        async def yields_bare() -> int:
            await asyncio.sleep(0)
            await asyncio.sleep(0.001)
            return 7

        assert await eager(yields_bare()) == 7  # type: ignore[misc]

    asyncio.run(go())


def test_a_cancelled_rest_is_thrown_into_the_coroutine_which_may_clean_up() -> None:
    async def go() -> None:
        cleaned: list[str] = []
        never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def holds() -> None:
            try:
                await never
            finally:
                await asyncio.sleep(0)  # cleanup that itself waits
                cleaned.append("yes")

        pending = eager(holds())
        assert isinstance(pending, asyncio.Task)
        await asyncio.sleep(0)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        assert cleaned == ["yes"]

    asyncio.run(go())
