"""Signal state of the process: which signal stopped it, and the stops of the runs going on now.

A run owns its stop (:class:`~imagegen_cli.events.StopToken`); while it runs it is registered here
(:func:`active_stop`), so that the command line's SIGTERM handler, which belongs to the process, can stop every
run of the process in order, whether or not SIGINT is ignored (a script's background job ignores it).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from imagegen_cli.errors import ExitCode

if TYPE_CHECKING:
    from imagegen_cli.events import StopToken


class StopSignal:
    """What the process was stopped by: SIGTERM is handled like Ctrl-C, but exits 143 instead of 130."""

    terminated = False


_ACTIVE: list[StopToken] = []
_LOCK = threading.Lock()


@contextlib.contextmanager
def active_stop(stop: StopToken) -> Iterator[StopToken]:
    """Register ``stop`` as a run of this process for as long as the block runs."""
    with _LOCK:
        _ACTIVE.append(stop)
    try:
        yield stop
    finally:
        with _LOCK:
            _ACTIVE.remove(stop)


def stop_all(*, terminated: bool) -> bool:
    """Request the stop of every run going on; False when none is (the caller stops the process itself)."""
    with _LOCK:
        active = list(_ACTIVE)
    for stop in active:
        stop.request(terminated=terminated)
    return bool(active)


def interrupted_exit_code() -> ExitCode:
    """130 after Ctrl-C, 143 after SIGTERM."""
    return ExitCode.TERMINATED if StopSignal.terminated else ExitCode.INTERRUPTED
