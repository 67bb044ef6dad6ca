"""One memory budget for the pixels that concurrent saves decode.

Every save of a batch runs in its own worker thread; each decode holds its whole image (a 99-megapixel PNG is
hundreds of megabytes). The budget lets them decode side by side while they fit, and makes the rest wait their
turn: peak memory stays near the budget whatever ``-n`` or the batch's concurrency, instead of growing with it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ["DECODE_BUDGET", "MemoryBudget"]


class MemoryBudget:
    """Bytes that may be held at once; one request larger than the whole waits until it holds all of it."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def take(self, size: int) -> Iterator[None]:
        size = max(0, min(size, self.capacity))
        with self._changed:
            self._changed.wait_for(lambda: self.in_use + size <= self.capacity)
            self.in_use += size
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= size
                self._changed.notify_all()


DECODE_BUDGET = MemoryBudget(512 << 20)  # about one 100-megapixel RGBA image and its re-encode
