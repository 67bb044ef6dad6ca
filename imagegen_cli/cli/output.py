"""One output object for every command: results to stdout, progress/notes/errors to stderr."""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

from imagegen_cli.errors import ExitCode, ImagegenError, Stop, clean_text, interrupted_code, redact

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from imagegen_cli.generation import GenerationResult, Reporter


def _stderr_is_live() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"


class Output:
    """Human, JSON or quiet output; never prints a secret."""

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
    def line(self, text: str) -> None:
        sys.stdout.write(redact(text) + "\n")
        sys.stdout.flush()

    def json(self, data: Any) -> None:
        sys.stdout.write(redact(json.dumps(data, ensure_ascii=False, indent=2)) + "\n")
        sys.stdout.flush()

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

    def error(self, exc: ImagegenError) -> None:
        self._err("error", exc.message, "bold red")
        if exc.hint:
            self._err("hint", exc.hint, "dim")

    def reporter(self) -> Reporter:
        from imagegen_cli.generation import SilentReporter

        if self.quiet or not _stderr_is_live():
            return SilentReporter()
        return RichReporter(self.console)

    # ---- the generate result
    def generation(self, result: GenerationResult) -> None:
        if self.json_mode:
            self.json(result_document(result))
        else:
            for image in sorted(result.images, key=lambda i: i.index):
                if image.path != "-":
                    self.line(image.path)
            if result.no_wait and result.job_id:
                self.line(result.job_id)
        for error in result.errors:
            self.error(error)
        if result.no_wait and result.job_id:
            self.note(
                f"submitted {len(result.tasks)} task(s); fetch the images with: imagegen tasks wait {result.job_id}"
            )
        elif result.pending:
            ids = " ".join(t.remote_id for t in result.pending)
            verb = ("terminated" if Stop.terminated else "interrupted") if result.interrupted else "timed out"
            self._err("error", f"{verb}; still pending on {result.provider}: {ids}", "bold red")
            if result.job_id:
                self._err("hint", f"resume with: imagegen tasks wait {result.job_id}", "dim")


def result_document(result: GenerationResult) -> dict[str, Any]:
    """The ``--json`` document of DESIGN.md's output contract."""
    images = []
    for image in sorted(result.images, key=lambda i: i.index):
        entry: dict[str, Any] = {"path": image.path, "index": image.index}
        if image.seed is not None:
            entry["seed"] = image.seed
        entry.update(width=image.width, height=image.height)
        if image.url:
            entry["url"] = image.url
        if image.revised_prompt:
            entry["revised_prompt"] = image.revised_prompt
        images.append(entry)
    document: dict[str, Any] = {
        "status": result.status(),
        "job": result.job_id,
        "provider": result.provider,
        "model": result.model,
        "images": images,
        "tasks": [
            {
                "id": result.job_id or t.remote_id,
                "remote_id": t.remote_id,
                "status": t.status,
                **({"error": t.error} if t.error else {}),
            }
            for t in result.tasks
        ],
        "notes": list(result.notes),
        "errors": [{"code": e.code, "message": clean_text(e.message, 2000)} for e in result.errors],
    }
    if result.pending and not result.no_wait and not result.interrupted:
        document["errors"].append({"code": "timeout", "message": "timed out while tasks were still pending"})
    usage = result.usage_total()
    if usage:
        document["usage"] = usage
    return document


class RichReporter:
    """A rich progress display on stderr, one row per call."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress: Progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.rows: dict[str, TaskID] = {}

    def start(self, key: str, description: str, total: int | None) -> None:
        if not self.rows:
            self.progress.start()
        self.rows[key] = self.progress.add_task(clean_text(description, 80), total=total)

    def update(self, key: str, completed: int | None = None, description: str | None = None) -> None:
        if key in self.rows:
            self.progress.update(
                self.rows[key],
                completed=completed,
                description=clean_text(description, 80) if description else None,
            )

    def finish(self, key: str) -> None:
        if key in self.rows:
            self.progress.remove_task(self.rows.pop(key))
        if not self.rows:
            self.progress.stop()


@contextmanager
def reported(output: Output) -> Iterator[None]:
    """Map the project's errors to one line plus hint and the documented exit code."""
    try:
        yield
    except ImagegenError as exc:
        if os.environ.get("IMAGEGEN_DEBUG"):
            sys.stderr.write(redact("".join(traceback.format_exception(exc))))
        output.error(exc)
        raise typer.Exit(int(exc.exit_code)) from None
    except KeyboardInterrupt:
        sys.stderr.write("terminated\n" if Stop.terminated else "interrupted\n")
        raise typer.Exit(int(interrupted_code())) from None
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
