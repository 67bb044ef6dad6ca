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

from imagegen_cli.errors import GatewayError


class Sleeper(Protocol):
    """A deadline that sleeps: it raises instead of sleeping past its end (``transport.Deadline``)."""

    def remaining(self) -> float: ...

    async def sleep(self, seconds: float, what: str = "") -> None: ...


class ProviderThrottle:
    """Adaptive bound on the requests in flight to one provider (``name``, for messages)."""

    def __init__(self, limit: int, name: str) -> None:
        self.name = name
        self.limit = max(1, limit)
        self.allowed = self.limit
        self.in_flight = 0
        self.not_before = 0.0
        self.successes = 0
        self._cond = asyncio.Condition()

    async def acquire(self, deadline: Sleeper) -> None:
        """Wait out any Retry-After and for a free slot; a Retry-After that outlasts ``deadline`` is a rate limit."""
        while True:
            # The Retry-After wait holds no slot, so a cancelled or timed-out wait leaks nothing.
            wait = self.not_before - time.monotonic()
            if wait > 0:
                if wait >= deadline.remaining():
                    raise GatewayError(
                        f"{self.name}: rate limited: the gateway asked to wait {wait:.0f} s (Retry-After), "
                        "more than --timeout leaves",
                        status=429,
                        hint="wait and retry, or raise --timeout",
                    )
                await deadline.sleep(wait, "the rate limit's Retry-After")
            async with self._cond:
                while self.in_flight >= self.allowed:
                    await self._cond.wait()
                # A 429 may have arrived while this request waited for its slot: it waits that out too.
                if self.not_before <= time.monotonic():
                    self.in_flight += 1
                    return

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
