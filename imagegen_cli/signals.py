"""Signal state: which signal stopped the run (SIGTERM is handled like Ctrl-C but exits 143)."""

from __future__ import annotations

from collections.abc import Callable

from imagegen_cli.errors import ExitCode


class StopSignal:
    """Which signal stopped the run: SIGTERM is handled like Ctrl-C, but exits 143 instead of 130.

    ``hook`` is set while an event loop runs: it stops that loop in order (cancels its main task), which works
    whether or not SIGINT is ignored (a script's background job ignores it, so re-raising SIGINT cannot).
    """

    terminated = False
    hook: Callable[[], None] | None = None


def interrupted_exit_code() -> ExitCode:
    """130 after Ctrl-C, 143 after SIGTERM."""
    return ExitCode.TERMINATED if StopSignal.terminated else ExitCode.INTERRUPTED
