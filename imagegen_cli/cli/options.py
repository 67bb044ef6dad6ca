"""Shared option declarations as ``Annotated`` aliases, so every command spells a flag the same way."""

from __future__ import annotations

from typing import Annotated

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="No progress and no notes on stderr.")]
ProviderOpt = Annotated[
    str | None, typer.Option("--provider", metavar="NAME", help="Provider, when the model has no prefix.")
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "-m",
        "--model",
        metavar="[PROVIDER:]MODEL",
        help="Model, optionally prefixed by its provider (apimart:z-image-turbo).",
    ),
]
YesOpt = Annotated[bool, typer.Option("-y", "--yes", help="Do not ask for confirmation.")]
