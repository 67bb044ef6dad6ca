"""Per-provider rate adaptation: fewer requests in flight after a 429, and Retry-After honoured by all.

A batch sends many calls to one gateway at once. When the gateway answers 429, every request to it
waits out the Retry-After (not only the one that got it), and the number of requests in flight is
halved; each success lets one more through again, up to the configured bound. The batch slows down
instead of failing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Sleeper(Protocol):
    """A deadline that sleeps: it raises instead of sleeping past its end (``transport.Deadline``)."""

    async def sleep(self, seconds: float, what: str = "") -> None: ...


class ProviderThrottle:
    """Adaptive bound on the requests in flight to one provider."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.allowed = self.limit
        self.in_flight = 0
        self.not_before = 0.0
        self.successes = 0
        self._cond = asyncio.Condition()

    async def acquire(self, deadline: Sleeper | None = None) -> None:
        """Wait out a Retry-After (never past ``deadline``), then for a free slot."""
        # The Retry-After wait comes first and holds no slot, so a cancelled or timed-out wait leaks nothing.
        wait = self.not_before - time.monotonic()
        if wait > 0:
            if deadline is not None:
                await deadline.sleep(wait, "the rate limit's Retry-After")
            else:
                await asyncio.sleep(wait)
        async with self._cond:
            while self.in_flight >= self.allowed:
                await self._cond.wait()
            self.in_flight += 1

    async def release(self, status: int | None, retry_after: float | None = None) -> None:
        async with self._cond:
            self.in_flight -= 1
            if status == 429:
                self.allowed = max(1, self.allowed // 2)
                self.successes = 0
                if retry_after:
                    self.not_before = max(self.not_before, time.monotonic() + retry_after)
            elif status is not None and status < 400:
                self.successes += 1
                if self.allowed < self.limit and self.successes >= self.allowed:
                    self.allowed += 1
                    self.successes = 0
            self._cond.notify_all()
