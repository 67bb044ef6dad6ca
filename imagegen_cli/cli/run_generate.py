"""Run what ``generate`` parsed: plan every line, print the dry run or run the batch, print the result, exit.

Kept apart from the flag declarations (``cli/generate.py``) so that each stays readable.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from imagegen_cli.cli.preview import previewer
from imagegen_cli.errors import ExitCode

if TYPE_CHECKING:
    from imagegen_cli.backends import PlannedJob
    from imagegen_cli.cli.render import Output
    from imagegen_cli.options import GenerateOptions, PromptLine
    from imagegen_cli.settings import Settings


def run_generate(
    output: Output,
    lines: list[PromptLine],
    options: GenerateOptions,
    settings: Settings,
    *,
    dry_run: bool,
    batch: bool,
    preview: bool = False,
    gallery: bool = False,
) -> None:
    """Plan every line, then print the dry run, or run and print the result; exits with the run's code."""
    from imagegen_cli import api
    from imagegen_cli.batch import describe_jobs

    jobs = api.plan(lines, options, settings=settings)
    if dry_run:
        from imagegen_cli.cli.dry_run import print_dry_run

        print_dry_run(output, describe_jobs(jobs), batch=batch)
        return
    _require_local_extra(jobs, settings)
    # Checked before anything is sent: a missing extra is said before a paid generation, not after.
    viewer = previewer(sys.stdout, output, to_stdout=options.output.out == "-") if preview else None
    notes: dict[str, list[str]] = {}
    for job in jobs:
        for note in job.plan.notes:
            notes.setdefault(note, []).append(str(job.line.number))
    for note, where in notes.items():
        # A note shared by every line of a batch is said once, not once per line.
        output.note(note if not batch else f"line{'s' if len(where) > 1 else ''} {_span(where)}: {note}")
    run = api.run_batch(lines, options, settings=settings, sink=output.sink(batch=batch), jobs=jobs)
    if gallery:
        run.gallery = _contact_sheet(output, [image.path for image in run.images if image.path != "-"])
    output.run_result(run, batch=batch, drawn=viewer.draw if viewer and not batch else None)
    if viewer and batch:  # a batch printed its paths as it saved them: the pictures follow, each under its path
        for image in run.images:
            output.line(image.path)
            viewer.draw(image.path)
    if run.gallery and not output.json_mode:
        output.line(run.gallery)  # last: `... --gallery | tail -1` is the page
    code = run.exit_code()
    if code != ExitCode.OK:
        raise typer.Exit(int(code))


def _require_local_extra(jobs: list[PlannedJob], settings: Settings) -> None:
    """A local line on an install without the local extra stops here, before anything is journalled, unless a
    running ``imagegen serve`` can make it; when no model was given or configured (the built-in default), the hint
    points to a remote model first."""
    from imagegen_cli.local.hub import missing_local_module, require_local_extra
    from imagegen_cli.local.served import served_whole
    from imagegen_cli.settings import BUILT_IN

    for job in jobs:
        if job.plan.provider_name != "local":
            continue
        if missing_local_module() and served_whole(job.plan):
            continue  # a thin client: a running imagegen serve makes this line, no torch here
        unchosen = job.options.model is None and job.options.provider is None
        default = settings.default_model if unchosen and settings.default_model_source == BUILT_IN else None
        require_local_extra(f"local:{job.plan.model_name}", default=default)


def _span(numbers: list[str]) -> str:
    return numbers[0] if len(numbers) == 1 else f"{numbers[0]}-{numbers[-1]}" if len(numbers) > 4 else ",".join(numbers)


def _contact_sheet(output: Output, paths: list[str]) -> str | None:
    """``--gallery``: the page of the run's images, beside them (``gallery-DATE-TIME.html``); None when none was
    saved or the page cannot be written (a note: the images are saved, the run did not fail)."""
    if not paths:
        output.note("--gallery: no image was saved to a file")
        return None
    import secrets
    import time
    from pathlib import Path

    from imagegen_cli.errors import ImagegenError
    from imagegen_cli.gallery import build_gallery

    # A name of its own: two runs into one folder in the same second never share (and replace) a page.
    page = Path(paths[0]).parent / f"gallery-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}.html"
    try:
        return str(build_gallery([Path(path) for path in paths], page, title=f"imagegen: {len(paths)} images").path)
    except ImagegenError as exc:
        output.note(f"--gallery: {exc.message}")
        return None
