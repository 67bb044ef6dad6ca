"""``imagegen models``: what can I use, what is downloaded, what does each model accept."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from imagegen_cli.cli.options import JsonOpt, YesOpt, complete_model, complete_provider
from imagegen_cli.cli.render import Output, report_errors
from imagegen_cli.errors import ExitCode, ImagegenError, UsageError

models_app = typer.Typer(
    help="List models and what each accepts; download or remove local weights.\n\n"
    "Example: imagegen models show apimart:z-image-turbo",
)
ModelArg = Annotated[str, typer.Argument(metavar="MODEL", help="[PROVIDER:]MODEL", autocompletion=complete_model)]


def _profiles() -> Any:
    from imagegen_cli.settings import load_settings

    return load_settings().profiles()


ListProvider = Annotated[
    str | None, typer.Option("--provider", metavar="NAME", help="Only this provider.", autocompletion=complete_provider)
]
ListLocal = Annotated[bool, typer.Option("--local", help="Only local models.")]
ListRemote = Annotated[bool, typer.Option("--remote", help="Only remote models.")]
ListLive = Annotated[bool, typer.Option("--live", help="Ask the provider's models endpoint (needs --provider).")]
ListAll = Annotated[bool, typer.Option("--all", help="With --live: also the listed models that make no images.")]
ListTimeout = Annotated[
    float, typer.Option("--timeout", metavar="SECONDS", min=0.1, help="With --live: overall bound for the request.")
]


@models_app.callback(invoke_without_command=True)
def models_root(
    ctx: typer.Context,
    provider: ListProvider = None,
    local: ListLocal = False,
    remote: ListRemote = False,
    live: ListLive = False,
    all_models: ListAll = False,
    timeout: ListTimeout = 30.0,
    json_out: JsonOpt = False,
) -> None:
    """List models; ``imagegen models [OPTIONS]`` alone is ``imagegen models list [OPTIONS]``."""
    if ctx.invoked_subcommand is None:
        list_models(
            provider=provider,
            local=local,
            remote=remote,
            live=live,
            all_models=all_models,
            timeout=timeout,
            json_out=json_out,
        )


def _sizes(model: dict[str, Any]) -> str:
    if model["mode"] == "local":
        return f"{model['native_size']} (×{model['size_multiple']})"
    if model["size_mode"] == "pixels":
        return " ".join(model["sizes"])
    if model["size_mode"] == "free":
        limits = model["size_limits"]
        return "any WxH" + (f" (×{limits['multiple']})" if "multiple" in limits else "")
    if model["size_mode"] == "none":
        return "-"
    tiers = f" @{'/'.join(model['tiers'])}" if model["tiers"] else ""
    return " ".join(model["ratios"]) + tiers


def _row(model: dict[str, Any]) -> list[str]:
    if model["mode"] == "local":
        state = model["state"]
        if model["size_on_disk"]:
            from imagegen_cli.local.catalog import human_size

            state += f" ({human_size(model['size_on_disk'])})"
        steps = f"{model['steps']} step{'s' if model['steps'] != 1 else ''}"
        # The state first: it is what a narrow terminal must still show when the notes are shortened.
        notes = f"{state}; {steps}, guidance {model['guidance']:g}, ~{model['memory_gb']:g} GB"
        return [model["provider"], model["id"], "local", _sizes(model), "1+", notes]
    return [model["provider"], model["id"], model["mode"], _sizes(model), model["n"], ", ".join(model["notable"])]


HEADER = ["PROVIDER", "MODEL", "MODE", "SIZES", "N/CALL", "NOTES"]
SHRINKABLE = (3, 5)  # SIZES and NOTES give way to the terminal's width; ids and modes never do
# The narrowest SIZES and NOTES get: a size or two ("1024x1024…"), a local model's state ("not downloaded…").
MIN_WIDTH = {3: 12, 5: 16}


def table_width() -> int | None:
    """The width to fit the table to, or ``None`` for full rows.

    On a terminal: its width (``COLUMNS`` first, as ``shutil.get_terminal_size`` reads it). Piped or
    redirected: ``COLUMNS`` when it is set (a caller that asks for a width gets it), else full rows, so
    ``imagegen models | grep`` sees every note.
    """
    import os
    import shutil

    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else None


def _shorten(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    # End on a word boundary when one is near, so "1024x1536" is never cut into "10…".
    space = cut.rfind(" ")
    if space >= width // 2:
        cut = cut[: space + 1]
    return cut.rstrip(" ,;") + "…"


def _table(rows: list[list[str]], header: list[str], width: int | None = None) -> list[str]:
    """Aligned columns; with ``width``, SIZES and NOTES are shortened with … to fit (not below MIN_WIDTH)."""
    table = [header, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    if width is not None:
        fixed = sum(w for i, w in enumerate(widths) if i not in SHRINKABLE) + 2 * (len(header) - 1)
        budget = width - fixed
        sizes_need, notes_need = (widths[i] for i in SHRINKABLE)
        if sizes_need + notes_need > budget:
            # Half the room each; what one does not need goes to the other.
            sizes_min, notes_min = (MIN_WIDTH[i] for i in SHRINKABLE)
            sizes = min(sizes_need, max(budget // 2, sizes_min))
            notes = min(notes_need, max(budget - sizes, notes_min))
            sizes = min(sizes_need, max(budget - notes, sizes_min))
            widths[SHRINKABLE[0]], widths[SHRINKABLE[1]] = sizes, notes
            table = [[_shorten(c, widths[i]) if i in SHRINKABLE else c for i, c in enumerate(r)] for r in table]
    return ["  ".join([*(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)), r[-1]]).rstrip() for r in table]


@models_app.command("list")
def list_models(
    provider: ListProvider = None,
    local: ListLocal = False,
    remote: ListRemote = False,
    live: ListLive = False,
    all_models: ListAll = False,
    timeout: ListTimeout = 30.0,
    json_out: JsonOpt = False,
) -> None:
    """List every model: provider, id, sync/async/local, sizes, n per call, notable parameters.

    Example: imagegen models list --provider apimart --json
    """
    output = Output(json_mode=json_out)
    with report_errors(output):
        from imagegen_cli.model_catalog import catalog

        if local and remote:
            raise UsageError("--local and --remote exclude each other")
        profiles = _profiles()
        if live:
            _list_live(output, profiles, provider, json_out, all_models=all_models, timeout=timeout)
            return
        if all_models:
            raise UsageError("--all goes with --live")
        entries = catalog(profiles, provider=provider, local=not remote, remote=not local)
        if json_out:
            output.json({"providers": entries})
            return
        rows = [_row(model) for entry in entries for model in entry["models"]]
        for line in _table(rows, HEADER, table_width()):
            output.line(line)


def _list_live(
    output: Output, profiles: Any, provider: str | None, json_out: bool, *, all_models: bool, timeout: float
) -> None:
    from imagegen_cli.errors import clean_text
    from imagegen_cli.model_catalog import listed_models, remote_model_info
    from imagegen_cli.providers.registry import resolve_provider

    if provider is None:
        raise UsageError("--live needs --provider", hint="e.g. imagegen models list --live --provider openai")
    if provider not in profiles:
        raise UsageError(
            f"{provider} has no live model list" if provider == "local" else f"unknown provider {provider!r}"
        )
    profile = profiles[provider]
    models: list[dict[str, Any]] = []
    shown: list[str] = []
    hidden: list[str] = []
    listed: set[str] = set()
    reason: str | None = None
    if profile.models_path is None:
        reason = f"{provider} has no usable live model list; showing the built-in models"
    else:
        from imagegen_cli.providers.live_models import fetch_live_models

        resolved = resolve_provider(profiles, provider, None, None)
        resolved.check_transport()
        resolved.require_key()
        try:
            live = fetch_live_models(resolved, timeout)
        except ImagegenError as exc:
            if exc.exit_code == ExitCode.AUTH:
                raise
            reason = f"{provider}'s live model list is not available ({exc.message}); showing the built-in models"
        else:
            # Gateway text reaches the terminal: ids are cleaned of escapes (an OSC 52 could write the clipboard).
            listed = {clean_text(i, 200) for i in live.listed}
            shown = [clean_text(str(item["id"]), 200) for item in live.images]
            hidden = [clean_text(i, 200) for i in live.hidden]
            # A built-in model the server lists is always shown, whatever its type fields say.
            shown += [i for i in hidden if i in profile.models]
            hidden = [i for i in hidden if i not in profile.models]
            if all_models:
                shown, hidden = shown + hidden, []
    catalogue = listed_models(profile)
    ids = [*shown, *catalogue] if reason is None else list(catalogue)
    for model_id in dict.fromkeys(ids):
        info = remote_model_info(profile, profile.caps_for(model_id))
        info["live"] = model_id in listed if reason is None else None
        info["builtin"] = model_id in profile.models
        if info["live"] is False:
            info["notable"] = ["not listed by the provider", *info["notable"]]
        elif not info["builtin"]:
            info["notable"] = ["provider-level limits", *info["notable"]]
        models.append(info)
    if reason:
        output.note(reason)
    elif hidden:
        output.note(f"{len(hidden)} listed model(s) that make no images not shown (--all shows them)")
    if json_out:
        output.json({"provider": provider, "live": reason is None, "note": reason, "models": models, "hidden": hidden})
        return
    for line in _table([_row(m) for m in models], HEADER, table_width()):
        output.line(line)


@models_app.command("show")
def show(model: ModelArg, json_out: JsonOpt = False) -> None:
    """Everything about one model, how each flag maps for it, and an example command.

    Example: imagegen models show openai:gpt-image-2
    """
    output = Output(json_mode=json_out)
    with report_errors(output):
        from imagegen_cli.local.catalog import LOCAL_MODELS
        from imagegen_cli.model_catalog import example_command, find_model, flag_mapping, local_flag_mapping
        from imagegen_cli.providers.registry import profile_key_vars

        profiles = _profiles()
        provider, info = find_model(profiles, model)
        if info["mode"] == "local":
            info["flags"] = local_flag_mapping(LOCAL_MODELS[info["id"]])
        else:
            profile = profiles[provider]
            info["flags"] = flag_mapping(profile, profile.caps_for(info["id"]))
            info["base_url"] = profile.base_url
            info["key_env"] = profile_key_vars(profile)
        info["example"] = example_command(info)
        if json_out:
            output.json(info)
            return
        skip = {"flags", "example", "ref", "notable", "quality_map", "size_on_disk"}
        for key, value in info.items():
            if key in skip or value in (None, "", [], {}):
                continue
            text = " ".join(map(str, value)) if isinstance(value, list) else value
            if isinstance(value, dict):  # readable fields, not a Python repr (--json has the structure)
                text = ", ".join(
                    f"{k.replace('_', ' ')} {v:g}" if isinstance(v, float) else f"{k.replace('_', ' ')} {v}"
                    for k, v in value.items()
                )
            elif isinstance(value, bool):
                text = "yes" if value else "no"
            output.line(f"{key + ':':<18}{text}")
        if info["mode"] == "local" and info["size_on_disk"]:
            from imagegen_cli.local.catalog import human_size

            output.line(f"{'size_on_disk:':<18}{human_size(info['size_on_disk'])}")
        if info.get("flags"):
            output.line("")
            output.line("How the flags map:")
            for flag, text in info["flags"].items():
                output.line(f"  {flag:<19}{text}")
        output.line("")
        output.line("Example:")
        output.line(f"  {info['example']}")


@models_app.command("pull")
def pull(model: ModelArg) -> None:
    """Download a local model's weights into the Hugging Face cache (resumable).

    Example: imagegen models pull sd-turbo
    """
    output = Output()
    with report_errors(output):
        from imagegen_cli.local.hub import pull as pull_weights

        _refuse_remote(model, "there is nothing to download")
        output.line(pull_weights(model))


@models_app.command("rm")
def remove(model: ModelArg, yes: YesOpt = False) -> None:
    """Remove a local model's weights from the Hugging Face cache, and its --compile caches (asks unless --yes).

    Example: imagegen models rm sd-turbo --yes
    """
    output = Output()
    with report_errors(output):
        from imagegen_cli.local.catalog import cache_state, human_size
        from imagegen_cli.local.compile_cache import model_folders
        from imagegen_cli.local.compile_cache import remove_model as remove_compiled
        from imagegen_cli.local.hub import local_files
        from imagegen_cli.local.hub import remove as remove_weights

        _refuse_remote(model, "there are no local weights to remove")
        name, folder = local_files(model)
        built = name.startswith("local:")  # the tiny pipeline, built here rather than downloaded
        compiled = model_folders(model.removeprefix("local:"))  # --compile's caches of this model
        if not folder.exists() and compiled:
            _confirm(yes, f"Remove the {len(compiled)} compile cache(s) of {model}?")
            remove_compiled(model.removeprefix("local:"))
            output.line("\n".join(str(each) for each in compiled))
            return
        if not folder.exists():
            raise UsageError(
                f"{name} is not {'built' if built else 'in the Hugging Face cache'}",
                hint="see: imagegen models list --local",
            )
        if not yes:
            files = [f for f in folder.rglob("*") if f.is_file()] if built else []
            size = human_size(sum(f.stat().st_size for f in files) if built else cache_state(name).size_bytes)
            also = f" and its {len(compiled)} compile cache(s)" if compiled else ""
            _confirm(yes, f"Remove {name} ({size}) from {folder.parent}{also}?")
        remove_weights(model)
        remove_compiled(model.removeprefix("local:"))
        # A repo by its id (the cache folder is huggingface_hub's); the tiny build by the folder it was in.
        output.line("\n".join([str(folder) if built else name, *(str(each) for each in compiled)]))


def _confirm(yes: bool, question: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError("refusing to delete without confirmation", hint="pass --yes")
    if not typer.confirm(question, err=True):
        raise typer.Exit(int(ExitCode.FAILURE))


def _refuse_remote(model: str, why: str) -> None:
    """``models pull/rm`` of a gateway's model: say it is remote, and how to use it, not "unknown local model"."""
    from imagegen_cli.local.catalog import LOCAL_MODELS
    from imagegen_cli.model_catalog import listed_models

    name = model.removeprefix("local:")
    if model.startswith("local:") or name in LOCAL_MODELS or ("/" in name and ":" not in name):
        return
    profiles = _profiles()
    prefix, sep, _ = name.partition(":")
    if sep and prefix in profiles:
        ref = name
    else:
        owners = [provider for provider, profile in profiles.items() if name in listed_models(profile)]
        if not owners:
            return  # neither local nor remote: the local error ("unknown local model") says what there is
        ref = f"{owners[0]}:{name}"
    raise UsageError(f"{ref} is a remote model: {why}", hint=f'use it directly: imagegen generate "a red fox" -m {ref}')
