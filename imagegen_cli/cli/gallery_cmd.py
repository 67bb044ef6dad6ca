"""``imagegen gallery``: one self-contained HTML contact sheet of images (folders, image files or journal jobs).

The page itself is built by :mod:`imagegen_cli.gallery`; this command resolves its arguments (a folder, an image
file, or a job id from the journal), picks where the page goes, and prints its path. Every argument is checked
before anything is written: a bad one is exit 2 with nothing written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from imagegen_cli.cli.options import JsonOpt
from imagegen_cli.cli.render import Output, report_errors
from imagegen_cli.errors import UsageError

if TYPE_CHECKING:
    from imagegen_cli.store.journal import Journal

GALLERY_EXAMPLES = """Examples:

\b
  imagegen gallery out/
  imagegen gallery out/ --open
  imagegen gallery out/ renders/fox.png -o ~/contact-sheet.html
  imagegen gallery 1m80bnk3kgjv --json
"""
_HINT = "give folders of images, image files (.png .jpg .jpeg .webp .gif) or job ids from: imagegen tasks list"


def gallery(
    sources: Annotated[
        list[str],
        typer.Argument(
            metavar="DIR|IMAGE|JOB...",
            help="Folders (their own image files, by name), image files or journal job ids.",
            show_default=False,
        ),
    ],
    out: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--out",
            metavar="PATH",
            help="The page to write [default: DIR/index.html, or ./gallery.html for files and jobs].",
        ),
    ] = None,
    open_page: Annotated[bool, typer.Option("--open", help="Open the page in the web browser.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Write a self-contained HTML contact sheet of images: thumbnails, prompts, a filter, replay commands."""
    output = Output(json_mode=json_out)
    with report_errors(output):
        from imagegen_cli.gallery import build_gallery, collect_images

        paths, first_dir = resolve_sources(sources)
        if not collect_images(paths):
            raise UsageError("no images to show", hint=_HINT)
        target = gallery_target(out, first_dir)
        result = build_gallery(paths, target)
        if result.placeholders:
            output.note(f"{result.placeholders} image(s) could not be previewed: they have a placeholder tile")
        if json_out:
            output.json({"path": str(result.path.absolute()), "images": result.images})
        else:
            output.line(str(result.path))
        if open_page:
            _open(result.path)


def resolve_sources(sources: list[str]) -> tuple[list[Path], Path | None]:
    """Each argument as paths (a folder, an image file, a job's saved images) and the first folder named.

    Raises :class:`UsageError` for an argument that is none of these, or a job none of whose images is on disk.
    """
    from imagegen_cli.gallery import GALLERY_SUFFIXES

    paths: list[Path] = []
    first_dir: Path | None = None
    journal: Journal | None = None
    try:
        for source in sources:
            path = Path(source)
            if path.is_dir():
                first_dir = first_dir or path
                paths.append(path)
            elif path.is_file():
                if path.suffix.lower() not in GALLERY_SUFFIXES:
                    raise UsageError(f"{source} is not an image file", hint=_HINT)
                paths.append(path)
            else:
                journal = journal or _journal(source)
                paths.extend(_job_images(journal, source))
    finally:
        if journal is not None:
            journal.close()
    return paths, first_dir


def gallery_target(out: str | None, first_dir: Path | None) -> Path:
    """``-o`` as given (a folder: its ``index.html``), else the first folder's ``index.html``, else
    ``./gallery.html``."""
    if out is not None:
        target = Path(out).expanduser()
        return target / "index.html" if target.is_dir() else target
    return first_dir / "index.html" if first_dir is not None else Path("gallery.html")


def _journal(source: str) -> Journal:
    from imagegen_cli.store.journal import Journal, journal_path

    if not journal_path().exists():  # no journal yet: never create one just to say the id is unknown
        raise UsageError(f"{source!r} is not a folder, an image file or a job id", hint=_HINT)
    return Journal.open()


def _job_images(journal: Journal, source: str) -> list[Path]:
    try:
        job = journal.get(source)
    except UsageError:
        raise UsageError(f"{source!r} is not a folder, an image file or a job id", hint=_HINT) from None
    # The same list `imagegen tasks show` prints: the job's saved images, those still on disk.
    saved = [Path(path) for path in job.to_dict()["paths"] if path]
    present = [path for path in saved if path.is_file()]
    if not present:
        raise UsageError(
            f"job {job.id} has no saved image on disk" + (f" ({len(saved)} moved or deleted)" if saved else ""),
            hint=f"see: imagegen tasks show {job.id}",
        )
    return present


def _open(path: Path) -> None:
    """Open the page in the browser; no browser (a server, CI) is not an error: the path was printed."""
    import contextlib
    import webbrowser

    with contextlib.suppress(Exception):  # whatever the browser launcher does, the page is written
        webbrowser.open(path.absolute().as_uri())
