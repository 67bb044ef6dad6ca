"""Signal state: which signal stopped the run (SIGTERM is handled like Ctrl-C but exits 143)."""

from __future__ import annotations

from imagegen_cli.errors import ExitCode


class StopSignal:
    """Which signal stopped the run: SIGTERM is handled like Ctrl-C, but exits 143 instead of 130."""

    terminated = False


def interrupted_exit_code() -> ExitCode:
    """130 after Ctrl-C, 143 after SIGTERM."""
    return ExitCode.TERMINATED if StopSignal.terminated else ExitCode.INTERRUPTED
