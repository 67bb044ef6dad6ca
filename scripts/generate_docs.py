"""Regenerate the README's tables from the code: generate's options, the providers, and every model.

Run after changing a flag, a profile or a catalog entry: ``python scripts/generate_docs.py``. Each table
sits between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->`` in README.md; a test fails when
the committed README differs from what this renders, so the tables cannot drift from the code.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def options_table() -> str:
    """Every option of ``imagegen generate``: its flags and metavar as the parser takes them, and its help."""
    import typer

    from imagegen_cli.cli.app import app

    command = typer.main.get_command(app).commands["generate"]  # type: ignore[attr-defined]
    rows = ["| option | meaning |", "|---|---|"]
    for param in command.params:
        if param.param_type_name != "option" or param.name == "help":
            continue
        flags = ", ".join(f"`{flag}`" for flag in [*param.opts, *param.secondary_opts])
        metavar = "" if param.is_flag else f" `{_cell(param.metavar or param.name.upper())}`"
        rows.append(f"| {flags}{metavar} | {_cell(param.help or '')} |")
    return "\n".join(rows)


def providers_table() -> str:
    from imagegen_cli.providers.profiles import BUILTIN_PROFILES
    from imagegen_cli.providers.registry import profile_key_vars

    rows = [
        "| provider | default base URL | key variables (first wins) | dialect | default model |",
        "|---|---|---|---|---|",
    ]
    for profile in BUILTIN_PROFILES.values():
        keys = ", ".join(f"`{var}`" for var in profile_key_vars(profile))
        keys += " (optional)" if profile.key_optional else ""
        dialect = "tasks (submit + poll)" if profile.is_async else "sync"
        default = f"`{profile.default_model}`" if profile.default_model else "none: name one"
        rows.append(f"| `{profile.name}` | `{profile.base_url}` | {keys} | {dialect} | {default} |")
    return "\n".join(rows)


def models_table() -> str:
    from imagegen_cli.model_catalog import n_range, notable_params
    from imagegen_cli.providers.profiles import BUILTIN_PROFILES

    rows = ["| model | sizes | n per call | notes |", "|---|---|---|---|"]
    for profile in BUILTIN_PROFILES.values():
        for caps in profile.models.values():
            ref = f"`{profile.name}:{caps.id}`" + (" (default)" if caps.id == profile.default_model else "")
            if caps.retired:
                replacement = f"; use {caps.replacement}" if caps.replacement else ""
                rows.append(
                    f"| {ref} | {_cell(caps.retired)}{_cell(replacement)} | | refused at OpenAI's URL (exit 2) |"
                )
                continue
            notes = "; ".join(notable_params(caps, profile))
            rows.append(f"| {ref} | {_cell(caps.describe_sizes())} | {n_range(caps)} | {_cell(notes)} |")
    return "\n".join(rows)


def image_inputs_table() -> str:
    """Which models take ``--image`` (and ``--mask``, ``--input-fidelity``), and how each sends them."""
    from imagegen_cli.providers.profiles import BUILTIN_PROFILES

    ways = {
        "edits": "multipart `POST {path}`: `image` (`image[]` for several), `mask`",
        "field": "`{field}` in the JSON body: URLs as given, files as `data:` URIs",
        "upload": "each file uploaded first (`POST {path}`, multipart `file`), then `{field}` URLs",
    }
    rows = [
        "| model | how the images are sent | images | `--mask` | `--input-fidelity` | documented |",
        "|---|---|---|---|---|---|",
    ]
    for profile in BUILTIN_PROFILES.values():
        for caps in profile.models.values():
            inputs = caps.image_inputs
            if inputs is None or caps.retired:
                continue
            how = ways[inputs.way].format(path=inputs.path, field=inputs.field)
            mask = (
                f"yes (`{inputs.mask_field}`)"
                if inputs.mask and inputs.way == "upload"
                else "yes"
                if inputs.mask
                else "—"
            )
            fidelity = "/".join(inputs.input_fidelities) or "—"
            documented = "yes" if inputs.confirmed else "**unconfirmed** (configurable)"
            rows.append(
                f"| `{profile.name}:{caps.id}` | {how} | up to {inputs.max_images} | {mask} | {fidelity} | {documented} |"
            )
    rows.append(
        "| `local:MODEL` | decoded; img2img/inpainting pipeline built with `from_pipe` (editing pipelines take it "
        "as is) | 1 | yes | — | yes |"
    )
    return "\n".join(rows)


def local_models_table() -> str:
    from imagegen_cli.local.catalog import LOCAL_MODELS

    rows = [
        "| model | repo | pipeline | steps | guidance | native size (multiple) | dtype | licence "
        "| memory: dtype / `8bit` / `4bit` |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def gb(value: float | None) -> str:
        return "—" if value is None else f"{value:g}"

    for model in LOCAL_MODELS.values():
        memory = f"~{gb(model.memory_gb)} / {gb(model.memory_8bit_gb)} / {gb(model.memory_4bit_gb)} GB"
        rows.append(
            f"| `{model.id}` | {model.repo or '(built on this machine)'} | {model.pipeline} | {model.steps} | "
            f"{model.guidance:g} | {model.native} ({model.size_multiple}) | {model.dtype} | {_cell(model.licence)} | "
            f"{memory} |"
        )
    return "\n".join(rows)


SECTIONS: dict[str, Callable[[], str]] = {
    "generate-options": options_table,
    "providers": providers_table,
    "models": models_table,
    "local-models": local_models_table,
    "image-inputs": image_inputs_table,
}


def render(text: str) -> str:
    """README text with every generated section replaced by what the code says now."""
    for name, build in SECTIONS.items():
        pattern = re.compile(rf"(<!-- generated:{name} -->\n).*?(<!-- /generated:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- generated:{name} --> section")
        text = pattern.sub(lambda m, b=build: m[1] + b() + "\n" + m[2], text)  # type: ignore[misc]
    return text


def main() -> None:
    sys.path.insert(0, str(ROOT))
    README.write_text(render(README.read_text()))
    print(README)


if __name__ == "__main__":
    main()
