"""The Typer application: one module per command group, all thin over the core.

Importing it also makes a Ctrl-C that nothing else handles one line (``interrupted``) instead of a traceback:
the console script imports the CLI (typer, every command) before ``main()`` runs and can catch anything.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType

ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], object]


def _one_line_interrupt(previous: ExceptHook) -> ExceptHook:
    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            # Python then ends the process as killed by SIGINT, which a shell reports as 130.
            sys.stderr.write("interrupted\n")
            return
        previous(kind, value, tb)

    return hook


sys.excepthook = _one_line_interrupt(sys.excepthook)
