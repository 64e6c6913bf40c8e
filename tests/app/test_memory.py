"""The memory budget (app/memory.py): room is reserved before it is used, in order of arrival, within a bounded wait.

The schedules here are driven step by step from the test: every waiter waits far longer than the test takes
(except where a wait running out is the point), and ``turns()`` lets the event loop run the tasks a step
made ready, so what is granted, and in which order, is decided by the budget alone.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from app.errors import Overloaded
from app.memory import MemoryBudget, Reservation
from handlers import ports

LONG = 60.0  # a wait no test reaches


async def turns(count: int = 5) -> None:
    """Let the loop run what is ready (granted waiters resuming), a few rounds deep; no time passes."""
    for _ in range(count):
        await asyncio.sleep(0)


class Recorder:
    """A budget whose every change is checked against its capacity, and the order grants were made in."""

    def __init__(self, capacity: int, wait_s: float = LONG) -> None:
        self.budget = MemoryBudget(capacity, wait_s, retry_after_s=3, on_change=self._changed)
        self.granted: list[str] = []
        self.reservations: dict[str, Reservation] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def _changed(self, held: int) -> None:
        assert 0 <= held <= self.budget.capacity

    def arrive(self, name: str, nbytes: int, wait_s: float | None = None) -> asyncio.Task[None]:
        async def reserve() -> None:
            self.reservations[name] = await self.budget.reserve(nbytes, wait_s)
            self.granted.append(name)

        self.tasks[name] = asyncio.ensure_future(reserve())
        return self.tasks[name]

    def grow(self, name: str, nbytes: int) -> asyncio.Task[None]:
        async def grow() -> None:
            await self.reservations[name].grow(nbytes)
            self.granted.append(f"{name}+")

        self.tasks[f"{name}+"] = asyncio.ensure_future(grow())
        return self.tasks[f"{name}+"]


@pytest.mark.gen_test
async def test_a_reservation_that_fits_is_granted_at_once_and_given_back_once() -> None:
    changes: list[int] = []
    budget = MemoryBudget(100, LONG, retry_after_s=1, on_change=changes.append)
    with await budget.reserve(60) as held:
        assert (held.nbytes, budget.held) == (60, 60)
        await held.grow(30)
        held.shrink(50)
        assert (held.nbytes, budget.held) == (40, 40)
    held.release()  # again: nothing more to give back
    assert budget.held == 0
    assert changes == [60, 90, 40, 0]


@pytest.mark.gen_test
async def test_a_newcomer_that_would_fit_still_waits_behind_an_earlier_big_one() -> None:
    r = Recorder(100)
    r.arrive("first", 70)
    await turns()
    r.arrive("big", 60)  # no room: waits
    await turns()
    r.arrive("small", 10)  # room for it, but "big" came first
    await turns()
    assert r.granted == ["first"]
    r.reservations["first"].release()
    await turns()
    assert r.granted == ["first", "big", "small"]
    assert r.budget.held == 70


@pytest.mark.gen_test
async def test_a_request_growing_what_it_holds_goes_before_newcomers() -> None:
    r = Recorder(100)
    r.arrive("body", 40)
    r.arrive("other", 50)
    await turns()
    r.arrive("newcomer", 20)  # waits: 90 held
    await turns()
    r.grow("body", 30)  # also waits, but ahead of the newcomer
    await turns()
    r.reservations["other"].release()
    await turns()
    assert r.granted == ["body", "other", "body+", "newcomer"]
    assert r.budget.held == 90


@pytest.mark.gen_test
async def test_a_wait_that_runs_out_is_refused_with_retry_after_and_lets_the_next_in() -> None:
    r = Recorder(100)
    r.arrive("first", 60)
    await turns()
    late = r.arrive("big", 50, wait_s=0.05)
    r.arrive("small", 30)  # fits, but behind "big" until "big" gives up
    with pytest.raises(Overloaded) as refused:
        await late
    assert refused.value.headers() == {"Retry-After": "3"}
    assert refused.value.code == "overloaded" and refused.value.status == 503
    await turns()
    assert r.granted == ["first", "small"]
    assert (r.budget.held, r.budget.waiting, r.budget.take_refused()) == (90, 0, 1)


@pytest.mark.gen_test
async def test_no_wait_and_no_room_is_refused_at_once() -> None:
    budget = MemoryBudget(100, wait_s=0.0, retry_after_s=1)
    held = await budget.reserve(80)
    with pytest.raises(Overloaded):
        await budget.reserve(30)
    assert (budget.held, budget.waiting) == (80, 0)
    held.release()


@pytest.mark.gen_test
async def test_more_than_the_whole_budget_is_refused_without_waiting() -> None:
    budget = MemoryBudget(100, LONG, retry_after_s=1)
    with pytest.raises(Overloaded):
        await budget.reserve(101)
    held = await budget.reserve(60)
    with pytest.raises(Overloaded):
        await held.grow(41)
    assert (budget.held, budget.waiting, held.nbytes) == (60, 0, 60)


@pytest.mark.gen_test
async def test_a_waiter_whose_client_goes_away_leaves_the_line_and_holds_nothing() -> None:
    r = Recorder(100)
    r.arrive("first", 90)
    await turns()
    gone = r.arrive("gone", 50)
    r.arrive("next", 10)  # behind "gone"
    await turns()
    gone.cancel()
    await turns()
    assert gone.cancelled()
    assert r.granted == ["first", "next"]
    assert (r.budget.held, r.budget.waiting) == (100, 0)


@pytest.mark.gen_test
async def test_bytes_granted_to_a_waiter_cancelled_in_the_same_turn_are_given_back() -> None:
    r = Recorder(100)
    r.arrive("first", 100)
    await turns()
    waiter = r.arrive("waiter", 40)
    await turns()
    r.reservations["first"].release()  # grants "waiter" its 40 bytes ...
    waiter.cancel()  # ... but it is cancelled before it runs again
    await turns()
    assert waiter.cancelled()
    assert (r.budget.held, r.budget.waiting) == (0, 0)


@pytest.mark.gen_test
async def test_a_bigger_budget_on_reload_lets_waiters_in() -> None:
    r = Recorder(100)
    r.arrive("first", 100)
    r.arrive("second", 50)
    await turns()
    r.budget.configure(200, LONG, 1, None)
    await turns()
    assert r.granted == ["first", "second"]


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.gen_test
async def test_seeded_bursts_are_granted_in_arrival_order_never_beyond_the_budget(seed: int) -> None:
    """Random arrivals (small, and now and then almost the whole budget) and releases, in a seeded order: the
    budget is never exceeded, grants follow arrivals exactly (no big request starves behind small ones), and
    everyone is granted in the end."""
    rng = random.Random(seed)
    r = Recorder(1000)
    arrived: list[str] = []
    for step in range(120):
        holders = [name for name in r.granted if r.reservations[name].nbytes]
        if holders and rng.random() < 0.45:
            r.reservations[rng.choice(holders)].release()
        else:
            name = f"r{step}"
            arrived.append(name)
            r.arrive(name, rng.choice([rng.randint(1, 150), rng.randint(600, 1000)]))
        await turns()
        assert r.granted == arrived[: len(r.granted)], "a later arrival was granted before an earlier one"
    while len(r.granted) < len(arrived):
        for name in r.granted:
            r.reservations[name].release()
        await turns()
    assert r.granted == arrived
    for name in arrived:
        r.reservations[name].release()
    assert (r.budget.held, r.budget.waiting) == (0, 0)


@pytest.mark.gen_test
async def test_the_budget_is_what_the_handlers_port_asks_for() -> None:
    budget: ports.MemoryGate = MemoryBudget(100, LONG, retry_after_s=1)  # mypy checks the shape
    hold: ports.HeldMemory = await budget.reserve(10)
    await hold.grow(5)
    hold.release()
    assert budget.open().nbytes == 0
