"""Shared option declarations as ``Annotated`` aliases, so every command spells a flag the same way."""

from __future__ import annotations

from collections.abc import Iterable
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


def _starting(values: Iterable[str], incomplete: str) -> list[str]:
    return [value for value in values if value.startswith(incomplete)]


def complete_format(incomplete: str) -> list[str]:
    """``--format`` completion: the formats written."""
    from imagegen_cli.request import OUTPUT_FORMATS

    return _starting(OUTPUT_FORMATS, incomplete)


def complete_quality(incomplete: str) -> list[str]:
    """``--quality`` completion: every level some model takes."""
    from imagegen_cli.request import QUALITIES

    return _starting(QUALITIES, incomplete)


def complete_resolution(incomplete: str) -> list[str]:
    """``--resolution`` completion: the tiers."""
    from imagegen_cli.request import TIERS

    return _starting(TIERS, incomplete)


def complete_ratio(incomplete: str) -> list[str]:
    """``--ratio`` completion: the ratio table's ratios, then every other ratio a known model takes."""
    from imagegen_cli.model_catalog import listed_models
    from imagegen_cli.request import TIER_TABLE

    ratios = dict.fromkeys(TIER_TABLE)
    for profile in _profiles_for_completion().values():
        for caps in listed_models(profile).values():  # type: ignore[arg-type]
            ratios.update(dict.fromkeys(caps.ratios))
    return _starting(ratios, incomplete)


def complete_style(incomplete: str) -> list[str]:
    """``--style`` completion."""
    from imagegen_cli.request import STYLES

    return _starting(STYLES, incomplete)


def complete_response_format(incomplete: str) -> list[str]:
    """``--response-format`` completion."""
    from imagegen_cli.request import RESPONSE_FORMATS

    return _starting(RESPONSE_FORMATS, incomplete)


def complete_device(incomplete: str) -> list[str]:
    """``--device`` completion."""
    from imagegen_cli.local_options import DEVICES

    return _starting(DEVICES, incomplete)


def complete_engine(incomplete: str) -> list[str]:
    """``--engine`` completion."""
    from imagegen_cli.options import ENGINES

    return _starting(ENGINES, incomplete)


def complete_dtype(incomplete: str) -> list[str]:
    """``--dtype`` completion."""
    from imagegen_cli.local_options import DTYPES

    return _starting(DTYPES, incomplete)


def complete_offload(incomplete: str) -> list[str]:
    """``--offload`` completion."""
    from imagegen_cli.local_options import OFFLOADS

    return _starting(OFFLOADS, incomplete)


def complete_quantize(incomplete: str) -> list[str]:
    """``--quantize`` completion."""
    from imagegen_cli.local_options import QUANTIZE

    return _starting(QUANTIZE, incomplete)


def complete_scheduler(incomplete: str) -> list[str]:
    """``--scheduler`` completion: the names (the aliases and diffusers class names are accepted too)."""
    from imagegen_cli.local.schedulers import SCHEDULERS

    return _starting(SCHEDULERS, incomplete)


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
