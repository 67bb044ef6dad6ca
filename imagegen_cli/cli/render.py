"""One output object for every command: results to stdout, progress/notes/errors to stderr.

Also the progress sink the core reports to (rich rows on a terminal, plain lines elsewhere), and the
error handler that maps every failure to one line, a hint and the documented exit code.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from imagegen_cli.errors import ExitCode, ImagegenError, clean_text, redact
from imagegen_cli.status import JobStatus

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from imagegen_cli.result import JobResult, RunResult
    from imagegen_cli.store.writer import SavedImage


USAGE_HINT = "imagegen COMMAND --help lists the flags and the values they take"


def stderr_is_live() -> bool:
    """Animated progress only for a person at a terminal (not CI, not a dumb terminal)."""
    return sys.stderr.isatty() and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"


class InterruptNotice:
    """Every stop by Ctrl-C or SIGTERM says so on stderr, once: ``interrupted`` (``terminated``).

    The core says how far an interrupted job got (``interrupted: 1 of 2 image(s) saved``); when nothing had
    started (torch still importing, a pipeline loading) or the stop came before a command's error handler,
    this line is all there is to say, and ``main()`` makes sure it is said.
    """

    said = False

    @classmethod
    def say(cls) -> None:
        from imagegen_cli.signals import StopSignal

        if not cls.said:
            cls.said = True
            sys.stderr.write("terminated\n" if StopSignal.terminated else "interrupted\n")
            sys.stderr.flush()


class JsonArray:
    """A JSON array written item by item as they come, laid out as ``Output.json`` lays out a list.

    ``close`` writes the ``]``; a listing that fails half way leaves the array open, so that no parser takes the
    part for the whole (the exit code and the ``error:`` line say what happened).
    """

    def __init__(self, output: Output) -> None:
        self.output = output
        self.empty = True

    def add(self, item: object) -> None:
        text = json.dumps(item, ensure_ascii=False, indent=2, allow_nan=False).replace("\n", "\n  ")
        self.output.write(("[\n  " if self.empty else ",\n  ") + text)
        self.empty = False

    def close(self) -> None:
        self.output.write("[]\n" if self.empty else "\n]\n")


class Output:
    """Human, JSON or quiet output; never prints a secret or a terminal escape from a gateway."""

    def __init__(self, *, json_mode: bool = False, quiet: bool = False) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(
                stderr=True,
                highlight=False,
                markup=False,
                soft_wrap=True,
                no_color=bool(os.environ.get("NO_COLOR")) or None,
            )
        return self._console

    # ---- stdout: results only
    def write(self, text: str) -> None:
        """Every piece of stdout goes through here, redacted and flushed at once."""
        sys.stdout.write(redact(text))
        sys.stdout.flush()

    def line(self, text: str) -> None:
        self.write(text + "\n")

    def json(self, data: object) -> None:
        # allow_nan=False: NaN is not JSON; the options refuse non-finite numbers before this point.
        self.write(json.dumps(data, ensure_ascii=False, indent=2, allow_nan=False) + "\n")

    def json_array(self) -> JsonArray:
        return JsonArray(self)

    # ---- stderr: notes, warnings, errors
    def _err(self, prefix: str, text: str, style: str) -> None:
        message = f"{prefix}: {clean_text(text, 2000)}"
        if sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
            self.console.print(message, style=style)
        else:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()

    def note(self, text: str) -> None:
        if not self.quiet:
            self._err("note", text, "yellow")

    def error(self, exc: ImagegenError, where: str = "") -> None:
        """``error: MESSAGE`` (``line 3: error: MESSAGE`` in a batch), then its hint."""
        from imagegen_cli.errors import LineErrors

        for each in exc.errors if isinstance(exc, LineErrors) else (exc,):
            self._err(f"{where}error" if where else "error", each.message, "bold red")
        hint = exc.hint or (USAGE_HINT if exc.exit_code == ExitCode.USAGE else None)  # a usage error always has one
        if hint:
            self._err(f"{where}hint" if where else "hint", hint, "dim")

    def sink(self, *, batch: bool) -> CliSink:
        return CliSink(self, batch=batch, live=not self.quiet and stderr_is_live())

    # ---- a run's result
    def run_result(self, run: RunResult, *, batch: bool, drawn: Callable[[str], None] | None = None) -> None:
        """Paths (or the JSON document), then every error once, then the batch summary; ``drawn`` draws each
        image under its path (``--preview``)."""
        if self.json_mode:
            self.json(run.document())
        elif not batch:
            # A batch printed its paths as they were saved; a single run prints them in index order.
            for image in run.images:
                if image.path != "-":
                    self.line(image.path)
                    if drawn is not None:
                        drawn(image.path)
        seen: set[str] = set()
        for job in run.jobs:
            where = f"line {job.line}: " if job.line is not None else ""
            for note in job.notes[job.planned_notes :]:
                self.note(where + note)  # said while running (a skipped offload, a journal problem)
            if not self.json_mode and job.no_wait and job.job_id and job.resumable:
                self.line(job.job_id)
            for error in job.errors:
                # The same failure of several calls (a dead base URL, -n 4) is said once.
                said = where + error.message
                if said not in seen:
                    seen.add(said)
                    self.error(error, where)
                    InterruptNotice.said |= error.code == "interrupted"
            if job.no_wait and job.job_id and job.resumable:
                self.note(
                    f"submitted {len(job.tasks)} task(s); fetch the images with: imagegen tasks wait {job.job_id}"
                )
        if int(run.exit_code()) in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
            # Stopped before any job began (torch importing, the pipeline loading): no job had anything to say.
            InterruptNotice.say()
        if batch and not self.quiet:
            counts = run.counts()
            parts = [f"{counts['lines']} lines", f"{counts['succeeded']} succeeded", f"{counts['failed']} failed"]
            for key in ("partial", "submitted", "running", "cancelled", "expired"):
                if counts[key]:
                    parts.append(f"{counts[key]} {key}")
            parts.append(f"{counts['skipped']} skipped (already saved)")
            if counts["not_started"]:
                parts.append(f"{counts['not_started']} not started")
            sys.stderr.write(f"batch: {' · '.join(parts)} · {counts['images']} images in {run.elapsed:.1f}s\n")
            sys.stderr.flush()


class CliSink:
    """The CLI's progress sink: rich rows (and a batch line) on a terminal; plain stderr lines elsewhere."""

    def __init__(self, output: Output, *, batch: bool, live: bool) -> None:
        self.output = output
        self.batch = batch
        self.live = live
        self.progress: Progress | None = None
        self.rows: dict[str, TaskID] = {}
        self.lines_done = self.images = 0
        self.started = time.monotonic()
        self.planned: list[JobResult] = []  # a batch's lines, once planned
        self.cluster = ""  # --engine ray: the workers' states, on the batch's (or the run's) one line
        self.finished: list[JobResult] = []

    def _progress(self) -> Progress:
        if self.progress is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.output.console,
                transient=True,
            )
            self.progress.start()
        return self.progress

    def start(self, key: str, description: str, total: int | None) -> None:
        if self.live:
            self.rows[key] = self._progress().add_task(clean_text(description, 80), total=total)

    def update(self, key: str, completed: int | None = None, description: str | None = None) -> None:
        if key in self.rows and self.progress is not None:
            self.progress.update(
                self.rows[key], completed=completed, description=clean_text(description, 80) if description else None
            )

    def finish(self, key: str) -> None:
        if key in self.rows and self.progress is not None:
            self.progress.remove_task(self.rows.pop(key))

    def note(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(f"note: {clean_text(text, 2000)}", markup=False, highlight=False)
        else:
            self.output.note(text)

    def workers(self, states: tuple[tuple[str, str, int], ...]) -> None:
        """A cluster's workers changed state: shown on the one progress line, with images per second."""
        busy = sum(1 for _, state, _ in states if state not in ("starting", "idle", "lost"))
        shown = ", ".join(f"{name} {state} ({made} made)" for name, state, made in states[:4])
        more = f" +{len(states) - 4}" if len(states) > 4 else ""
        self.cluster = f"ray: {busy}/{len(states)} busy ({shown}{more})"
        if self.batch:
            self._batch_row()
        elif self.live:
            self._cluster_row()

    def _cluster_row(self) -> None:
        rate = self.images / max(time.monotonic() - self.started, 1e-3)
        text = clean_text(f"{self.cluster} · {rate:.2f} images/s", 120)
        if "cluster" not in self.rows:
            self.rows["cluster"] = self._progress().add_task(text, total=None)
        assert self.progress is not None
        self.progress.update(self.rows["cluster"], completed=self.images, description=text)

    def batch_planned(self, jobs: list[JobResult]) -> None:
        self.planned = list(jobs)
        self._batch_row()

    def _batch_row(self) -> None:
        """One row for the whole batch: images saved of all asked (so rich can show an ETA), and the lines' counts."""
        if not (self.batch and self.live and self.planned):
            return
        total = sum(job.requested for job in self.planned)
        done = {id(job) for job in self.finished}
        failed = sum(1 for job in self.finished if not job.skipped and job.status() == JobStatus.FAILED)
        skipped = sum(1 for job in self.finished if job.skipped)
        running = sum(1 for job in self.planned if job.started and id(job) not in done)
        text = (
            f"batch: {len(self.finished)}/{len(self.planned)} lines · {running} running · {failed} failed"
            f" · {skipped} skipped"
        )
        if self.cluster:
            rate = self.images / max(time.monotonic() - self.started, 1e-3)
            text = f"{text} · {rate:.2f} images/s · {self.cluster}"
        if "batch" not in self.rows:
            self.rows["batch"] = self._progress().add_task(text, total=total)
        assert self.progress is not None
        self.progress.update(self.rows["batch"], completed=self.images, description=text)

    def image_saved(self, job: JobResult, image: SavedImage) -> None:
        self.images += 1
        self._batch_row()
        if self.cluster and not self.batch and self.live:
            self._cluster_row()
        if not self.batch:
            return
        if not self.output.json_mode and image.path != "-":
            self.output.line(image.path)  # a batch streams its paths, so a pipe sees them as they land
        if not self.live and not self.output.quiet:
            sys.stderr.write(f"line {job.line}: saved {image.path}\n")
            sys.stderr.flush()

    def job_finished(self, job: JobResult) -> None:
        self.lines_done += 1
        if self.planned:
            self.finished.append(job)
            self._batch_row()
            return
        if self.batch and self.live:
            key = "batch"
            if key not in self.rows:
                self.rows[key] = self._progress().add_task("batch", total=None)
            self.update(
                key, completed=self.lines_done, description=f"batch: {self.lines_done} lines, {self.images} images"
            )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        self.rows.clear()


@contextmanager
def report_errors(output: Output) -> Iterator[None]:
    """Map the project's errors to one line plus hint and the documented exit code."""
    from imagegen_cli.signals import interrupted_exit_code

    try:
        yield
    except ImagegenError as exc:
        if os.environ.get("IMAGEGEN_DEBUG"):
            sys.stderr.write(redact("".join(traceback.format_exception(exc))))
        output.error(exc)
        raise typer.Exit(int(exc.exit_code)) from None
    except KeyboardInterrupt:
        InterruptNotice.say()
        raise typer.Exit(int(interrupted_exit_code())) from None
    except BrokenPipeError:
        # `imagegen ... | head -1`: the reader left. Exit quietly as other Unix tools do.
        _silence_stdout()
        raise typer.Exit(int(ExitCode.BROKEN_PIPE)) from None
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - a bug: one line unless IMAGEGEN_DEBUG asks for the traceback
        if os.environ.get("IMAGEGEN_DEBUG"):
            sys.stderr.write(redact("".join(traceback.format_exception(exc))))
        output.error(
            ImagegenError(
                f"internal error: {type(exc).__name__}: {exc}",
                hint="rerun with IMAGEGEN_DEBUG=1 for the traceback, and report it",
            )
        )
        raise typer.Exit(int(ExitCode.FAILURE)) from None


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
