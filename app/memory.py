"""The process's memory budget: every byte a request will hold is reserved before it is allocated.

A request holds one ``Reservation`` and grows it before each allocation it is about to make (its
body, a download, its decoded images and tensors); it shrinks it as it lets go, and releases the
rest when it ends. When the budget has no room, a grow waits up to ``server.memory_wait_s`` in line,
then is refused ``Overloaded`` (503 with Retry-After). Nothing admitted is failed to make room.

Who goes first: strictly in order of arrival. A newcomer joins the line behind every earlier waiter
even when it would fit now, so a stream of small requests cannot starve a big one (the price: a big
request at the head holds up small ones behind it, for at most ``memory_wait_s``). A request that
already holds memory (a chunked body, a second download) waits in a line of its own that goes before
the newcomers': what it holds comes back only when it completes. A waiter that gives up (its wait ran
out, its client went away) leaves the line, and the waiters behind it are considered at once.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from app.errors import Overloaded


@dataclass(eq=False)
class _Waiter:
    nbytes: int
    granted: asyncio.Future[None]


class MemoryBudget:
    """Bytes of memory the requests of this process may hold at once (``server.memory_budget_bytes``)."""

    def __init__(
        self,
        capacity: int,
        wait_s: float,
        retry_after_s: int,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        self.capacity = capacity
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self.held = 0
        self.refused = 0  # grows refused since the last take_refused()
        self._on_change = on_change
        self._growing: deque[_Waiter] = deque()  # requests that hold memory already: served first
        self._arriving: deque[_Waiter] = deque()

    def configure(
        self, capacity: int, wait_s: float, retry_after_s: int, on_change: Callable[[int], None] | None
    ) -> None:
        """New settings (a reload); what is held stays held, and a bigger budget lets waiters in at once."""
        self.capacity, self.wait_s, self.retry_after_s, self._on_change = capacity, wait_s, retry_after_s, on_change
        self._admit_waiting()

    def open(self) -> Reservation:
        """An empty reservation, for one request to grow as it goes."""
        return Reservation(self)

    async def reserve(self, nbytes: int, wait_s: float | None = None) -> Reservation:
        """``nbytes`` reserved once there is room; raises Overloaded after ``wait_s`` (default: budget.wait_s)."""
        reservation = Reservation(self)
        await reservation.grow(nbytes, wait_s)
        return reservation

    @property
    def waiting(self) -> int:
        return len(self._growing) + len(self._arriving)

    def take_refused(self) -> int:
        refused, self.refused = self.refused, 0
        return refused

    async def _take(self, nbytes: int, admitted: bool, wait_s: float) -> None:
        """Add ``nbytes`` to what is held, waiting in line for room; raises Overloaded."""
        if nbytes > self.capacity:
            raise self.refusal(nbytes, f"{nbytes} bytes exceed the whole budget of {self.capacity}")
        line = self._growing if admitted else self._arriving
        if self._may_go_now(line, nbytes):
            self._add(nbytes)
            return
        if wait_s <= 0:
            raise self.refusal(nbytes, "no room and no wait")
        waiter = _Waiter(nbytes, asyncio.get_running_loop().create_future())
        line.append(waiter)
        try:
            granted = await _granted_within(waiter.granted, wait_s)
        except BaseException:  # cancelled: the client went away
            self._forget(line, waiter)
            raise
        if not granted:
            self._forget(line, waiter)
            raise self.refusal(nbytes, f"no room within {wait_s:g} s")

    def _forget(self, line: deque[_Waiter], waiter: _Waiter) -> None:
        """A waiter gives up: out of the line, or, granted in the same turn, its bytes given back."""
        if _is_granted(waiter.granted):
            self._give(waiter.nbytes)
        else:
            self._leave(line, waiter)

    def _may_go_now(self, line: deque[_Waiter], nbytes: int) -> bool:
        """Room, and nobody ahead: growers wait only for growers, newcomers for everyone."""
        ahead = bool(self._growing) or (line is self._arriving and bool(self._arriving))
        return not ahead and self.held + nbytes <= self.capacity

    def _give(self, nbytes: int) -> None:
        """Take ``nbytes`` off what is held, and let in whoever now fits."""
        if nbytes > 0:
            self._add(-nbytes)
            self._admit_waiting()

    def _add(self, nbytes: int) -> None:
        self.held += nbytes
        if self._on_change is not None:
            self._on_change(self.held)

    def _admit_waiting(self) -> None:
        """Grant the heads of the lines, growers first, while they fit; the first that does not fit stops both."""
        for line in (self._growing, self._arriving):
            while line:
                head = line[0]
                if head.granted.done():  # its waiter gave up in this same turn
                    line.popleft()
                    continue
                if self.held + head.nbytes > self.capacity:
                    return
                line.popleft()
                self._add(head.nbytes)
                head.granted.set_result(None)

    def _leave(self, line: deque[_Waiter], waiter: _Waiter) -> None:
        if not waiter.granted.done():
            waiter.granted.cancel()
        if waiter in line:
            line.remove(waiter)
        self._admit_waiting()  # it may have been the head that held the others up

    def refusal(self, nbytes: int, why: str) -> Overloaded:
        self.refused += 1
        return Overloaded(
            "the tier has no memory free for this request now; retry shortly",
            retry_after_s=self.retry_after_s,
            log_message=f"memory budget: {why} ({nbytes} bytes asked, {self.held} of {self.capacity} held)",
        )


async def _granted_within(granted: asyncio.Future[None], wait_s: float) -> bool:
    """Whether ``granted`` completes within ``wait_s``.

    Shielded, so that neither the timeout nor a cancellation leaves an exception on the waiter's future:
    one there would hold the waiting frames, and the request's buffers, in a reference cycle.
    """
    try:
        async with asyncio.timeout(wait_s):
            await asyncio.shield(granted)
    except TimeoutError:
        pass
    return _is_granted(granted)


def _is_granted(granted: asyncio.Future[None]) -> bool:
    return granted.done() and not granted.cancelled()


class Reservation:
    """One request's share of the budget: grown before allocating, shrunk as it lets go, released at its end.

    ``with await budget.reserve(n):`` or ``try: ... finally: reservation.release()``.
    """

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.nbytes = 0

    async def grow(self, nbytes: int, wait_s: float | None = None) -> None:
        """Hold ``nbytes`` more once there is room; raises Overloaded after ``wait_s`` (default: budget.wait_s)."""
        if nbytes <= 0:
            return
        if self.nbytes + nbytes > self.budget.capacity:
            raise self.budget.refusal(nbytes, f"the request would hold {self.nbytes + nbytes} bytes")
        wait = self.budget.wait_s if wait_s is None else wait_s
        await self.budget._take(nbytes, admitted=self.nbytes > 0, wait_s=wait)
        self.nbytes += nbytes

    def grow_now(self, nbytes: int) -> bool:
        """Hold ``nbytes`` more if they fit now and nobody waits; else hold nothing more and say False.

        For what may be left undone without a refusal (the answer cache keeping an entry).
        """
        budget = self.budget
        if budget.waiting or budget.held + nbytes > budget.capacity:
            return False
        budget._add(nbytes)
        self.nbytes += nbytes
        return True

    def shrink(self, nbytes: int) -> None:
        """Hold ``nbytes`` less (at most what is held)."""
        nbytes = min(nbytes, self.nbytes)
        self.nbytes -= nbytes
        self.budget._give(nbytes)

    def release(self) -> None:
        """Give back everything held; safe to call again."""
        self.shrink(self.nbytes)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, typ: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
