"""``imagegen show``: the generation parameters embedded in images, read back (imagegen's record or A1111's text).

Several files: every readable one is printed, each unreadable one gets an ``error:``/``hint:`` pair on stderr,
and the exit code is 2 when any failed (0 when all were read). Never imports torch or diffusers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from imagegen_cli.cli.options import JsonOpt
from imagegen_cli.cli.render import Output
from imagegen_cli.errors import ExitCode, UsageError, clean_text

EXAMPLES = (
    "Examples:\n\n\b\n"
    "  imagegen show out/2026-12-05-a-fox-s7-0.png\n"
    "  imagegen show out/*.webp --json\n"
    "  imagegen show out/2026-12-05-a-fox-s7-0.png --preview\n"
    "  imagegen show downloaded-a1111.png"
)
_HINT = "show reads PNG, JPEG, WebP, GIF and SVG files saved by imagegen (or by A1111 with its parameters)"
_ORDER = (
    "prompt", "negative_prompt", "provider", "model", "seed", "index", "width", "height", "size", "ratio",
    "steps", "guidance", "scheduler", "quality", "style", "job", "line", "created", "generator",
)  # fmt: skip


def show(
    images: Annotated[list[Path], typer.Argument(help="Image files to read.", show_default=False)],
    json_out: JsonOpt = False,
    preview: Annotated[bool, typer.Option("--preview", help="Also draw each image in the terminal.")] = False,
) -> None:
    """Print the generation parameters embedded in each image."""
    import sys

    from imagegen_cli.cli.preview import previewer
    from imagegen_cli.cli.render import report_errors
    from imagegen_cli.store.reader import NoParameters, read_meta

    output = Output(json_mode=json_out)
    viewer = None
    if preview:
        with report_errors(output):
            viewer = previewer(sys.stdout, output)
    documents: list[dict[str, Any]] = []
    failed = False
    for index, path in enumerate(images):
        try:
            record = read_meta(path).to_record()
        except NoParameters as exc:
            failed = True
            output.error(UsageError(str(exc), _HINT))
            continue
        if json_out:
            documents.append({"path": str(path.absolute()), "record": record})
        else:
            if index:
                output.line("")
            output.line(_safe(str(path)))
            for key, value in _ordered(record):
                output.line(f"  {key}: {_safe(value)}")
            if viewer is not None:
                viewer.draw(path)
    if json_out:
        output.json(documents)
    if failed:
        raise typer.Exit(int(ExitCode.USAGE))


def _ordered(record: dict[str, Any]) -> list[tuple[str, Any]]:
    first = [(key, record[key]) for key in _ORDER if key in record]
    return first + sorted((key, value) for key, value in record.items() if key not in _ORDER)


def _safe(value: object) -> str:
    """One terminal-safe line: no escape sequence or control character from a file reaches the terminal."""
    import json

    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return clean_text(text, 4000)
