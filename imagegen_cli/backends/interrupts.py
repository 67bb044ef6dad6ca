"""Ctrl-C and SIGTERM during a run: the first Ctrl-C stops between steps, a second one, or SIGTERM, stops now.

Python runs a signal handler only between bytecodes of the main thread, and one denoising step of a big
image on a CPU is a single torch operation that can last minutes: a handler alone cannot stop it. So the
C-level handler also writes each signal to a pipe (``signal.set_wakeup_fd``), and a watcher thread reads it
while the main thread is busy in torch (which releases the GIL):

- first Ctrl-C: the run's stop is requested (a local engine stops after the current step, a gateway engine
  cancels its calls in order; finished images are kept);
- second Ctrl-C: if the main thread handles it within half a second (it was not stuck), it raises
  KeyboardInterrupt with the default handlers restored (a third signal kills); otherwise the watcher ends
  the process at once with 130. Images already saved stay; nothing more is saved.
- SIGTERM means stop now: the stop is requested, and if the run has not ended within ``TERM_GRACE`` seconds (the
  main thread is inside one long torch operation), the watcher ends the process with 143.

The guard belongs to one run (its :class:`~imagegen_cli.events.StopToken`) and says what it does through the
run's ``say`` (the progress sink), never by printing itself; only the last-resort exit writes one line.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

from imagegen_cli.errors import ExitCode
from imagegen_cli.events import StopToken
from imagegen_cli.signals import StopSignal

GRACE_SECONDS = 0.5  # how long the watcher lets a free main thread handle a second signal itself
TERM_GRACE = 5.0  # how long a SIGTERM lets the run end in order (cancelled calls, a file being placed)
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalGuard:
    """Installs the two-stage stop for the duration of a ``with`` block (main thread only)."""

    def __init__(self, stop: StopToken, say: Callable[[str], None] | None = None) -> None:
        self.stop = stop
        self.say = say or (lambda text: None)
        self.seen_by_watcher = 0
        self.seen_by_handler = 0
        self.exiting = threading.Event()
        self.active = threading.current_thread() is threading.main_thread()
        self._previous: dict[int, Any] = {}
        self._old_wakeup = -1
        self._pipe: tuple[int, int] | None = None

    def __enter__(self) -> SignalGuard:
        if not self.active:
            return self
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        self._pipe = (read_end, write_end)
        self._old_wakeup = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, args=(read_end,), name="imagegen-signals", daemon=True).start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if not self.active:
            return
        signal.set_wakeup_fd(self._old_wakeup)
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous)
        self.exiting.set()  # the run is over: a SIGTERM's timer has nothing left to end
        if self._pipe is not None:
            os.close(self._pipe[1])  # the watcher reads end-of-file and ends

    def _note(self, signum: int) -> None:
        terminated = signum == signal.SIGTERM
        if terminated:
            StopSignal.terminated = True  # the process's exit code (143), read by the command's last line
        self.stop.request(terminated=terminated)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        """Main-thread handler: stop between steps, or on the second signal raise KeyboardInterrupt."""
        self.seen_by_handler += 1
        self._note(signum)
        if max(self.seen_by_handler, self.seen_by_watcher) >= 2:
            self.exiting.set()
            for each in SIGNALS:  # from now on the default action: a third signal kills
                signal.signal(each, signal.SIG_DFL)
            raise KeyboardInterrupt

    def _watch(self, read_end: int) -> None:
        try:
            while True:
                data = os.read(read_end, 16)
                if not data:
                    return
                for signum in data:
                    if signum not in SIGNALS:
                        continue
                    self.seen_by_watcher += 1
                    self._note(signum)
                    if signum == signal.SIGTERM:
                        threading.Thread(target=self._end_soon, name="imagegen-sigterm", daemon=True).start()
                    elif self.seen_by_watcher == 1:
                        self.say("stopping after the current step (press Ctrl-C again to stop at once)")
                    elif not self.exiting.wait(GRACE_SECONDS):
                        _hard_exit(self.stop)
        finally:
            os.close(read_end)

    def _end_soon(self) -> None:
        """SIGTERM: the run has ``TERM_GRACE`` seconds to end in order, then the process ends."""
        if not self.exiting.wait(TERM_GRACE):
            _hard_exit(self.stop)


def _hard_exit(stop: StopToken) -> None:
    """The main thread is stuck inside one torch operation: end the process now."""
    code = ExitCode.TERMINATED if stop.terminated else ExitCode.INTERRUPTED
    word = "terminated" if stop.terminated else "interrupted"
    try:
        cursor = "\x1b[?25h" if sys.stderr.isatty() else ""  # a progress bar may have hidden it
        sys.stderr.write(f"{cursor}\n{word}: stopped at once\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(int(code))
