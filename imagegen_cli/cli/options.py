"""Shared option declarations as ``Annotated`` aliases, so every command spells a flag the same way."""

from __future__ import annotations

from typing import Annotated

import typer


def _profiles_for_completion() -> dict[str, object]:
    from imagegen_cli.errors import ImagegenError
    from imagegen_cli.settings import load_settings

    try:
        return dict(load_settings().profiles())
    except ImagegenError:  # a broken config must not break the shell's completion
        from imagegen_cli.providers.profiles import BUILTIN_PROFILES

        return dict(BUILTIN_PROFILES)


def complete_model(incomplete: str) -> list[str]:
    """``-m`` completion: every known model as ``provider:model``."""
    from collections import Counter

    from imagegen_cli.model_catalog import model_refs

    refs = model_refs(_profiles_for_completion())  # type: ignore[arg-type]
    matches = [ref for ref in refs if ref.startswith(incomplete)]
    # A bare id that only one provider offers resolves on its own (`-m dall-e-3`), so offer those too.
    bare = Counter(ref.partition(":")[2] for ref in refs)
    matches += [m for m, count in bare.items() if count == 1 and m.startswith(incomplete) and ":" not in m]
    return matches


def complete_provider(incomplete: str) -> list[str]:
    """``--provider`` completion: provider names."""
    return [name for name in [*_profiles_for_completion(), "local"] if name.startswith(incomplete)]


JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="No progress and no notes on stderr.")]
ProviderOpt = Annotated[
    str | None,
    typer.Option(
        "--provider", metavar="NAME", help="Provider, when the model has no prefix.", autocompletion=complete_provider
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "-m",
        "--model",
        metavar="[PROVIDER:]MODEL",
        help="Model, optionally prefixed by its provider (apimart:z-image-turbo).",
        autocompletion=complete_model,
    ),
]
YesOpt = Annotated[bool, typer.Option("-y", "--yes", help="Do not ask for confirmation.")]
