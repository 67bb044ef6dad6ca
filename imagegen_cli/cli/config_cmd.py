"""``imagegen config``: show, read and change settings in the TOML config file."""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Annotated, Any

import typer

from imagegen_cli.cli.options import JsonOpt
from imagegen_cli.cli.render import Output, report_errors
from imagegen_cli.errors import UsageError
from imagegen_cli.jsontypes import loads

config_app = typer.Typer(
    help="Show and change settings.\n\nExample: imagegen config set default_model apimart:z-image-turbo",
    no_args_is_help=True,
)

KeyArg = Annotated[str, typer.Argument(metavar="KEY", help="Dotted key, e.g. providers.openai.base_url.")]


@config_app.command("show")
def show(json_out: JsonOpt = False) -> None:
    """Print the config file's settings, with any secret redacted.

    Example: imagegen config show
    """
    output = Output(json_mode=json_out)
    with report_errors(output):
        from imagegen_cli.config import dump_toml, load_config, redact_config

        data = redact_config(load_config())
        if json_out:
            output.json(data)
        else:
            text = dump_toml(data).rstrip()
            output.line(text if text else "# (no settings)")


@config_app.command("path")
def path() -> None:
    """Print the config file's path (IMAGEGEN_CONFIG overrides it).

    Example: imagegen config path
    """
    from imagegen_cli.config import config_path

    Output().line(str(config_path()))


@config_app.command("get")
def get(key: KeyArg, json_out: JsonOpt = False) -> None:
    """Print one setting.

    Example: imagegen config get providers.openai.base_url
    """
    output = Output(json_mode=json_out)
    with report_errors(output):
        from imagegen_cli.config import get_dotted, load_config, redact_config

        try:
            value = get_dotted(redact_config(load_config()), key)
        except KeyError:
            raise UsageError(f"{key} is not set", hint="see: imagegen config show") from None
        if json_out or isinstance(value, dict | list):
            output.json(value)
        else:
            output.line(str(value).lower() if isinstance(value, bool) else str(value))


# Settings whose value is text: what the user typed is the value (`config set output_dir 2024` is a folder
# called 2024, not the number), where other values parse as JSON (true, 3, "8").
TEXT_SETTINGS = ("default_model", "output_dir", "name_template", "format", "server")


def _parse_value(key: str, raw: str) -> object:
    if key in TEXT_SETTINGS:
        return raw
    try:
        return loads(raw)
    except ValueError:
        return raw


def _checked(key: str, value: object, where: str) -> object:
    """Check a value before it is written: settings by their spec, provider tables by loading them."""
    from imagegen_cli.settings import PROVIDERS_KEY, check_setting

    top = key.split(".", 1)[0]
    if top == PROVIDERS_KEY:
        return value
    if "." in key:
        raise UsageError(f"{top} is a value, not a table", hint=f"write: imagegen config set {top} VALUE")
    return check_setting(key, value, where)


# ignore_unknown_options lets a value start with "-" (config set concurrency -1 is then refused as a value,
# not mistaken for an option).
@config_app.command("set", context_settings={"ignore_unknown_options": True})
def set_value(
    key: KeyArg,
    value: Annotated[str, typer.Argument(metavar="VALUE", help="Value; JSON when it parses (true, 3).")],
) -> None:
    """Change one setting (checked before it is written; comments in the file are kept).

    \b
    Example:
      imagegen config set providers.apimart.base_url https://my-proxy.example/v1
    """
    output = Output()
    with report_errors(output):
        from imagegen_cli.config import config_path, is_secret_name, load_config, set_dotted
        from imagegen_cli.providers.registry import load_profiles
        from imagegen_cli.settings import KNOWN_KEYS, SettingError

        top = key.split(".", 1)[0]
        if top not in KNOWN_KEYS:
            raise SettingError(f"unknown setting {top!r}", hint="known: " + ", ".join(sorted(KNOWN_KEYS)))
        if is_secret_name(key.rsplit(".", 1)[-1]):
            raise UsageError("keys do not belong in the config file", hint="use: imagegen keys set PROVIDER")
        path = config_path()
        checked = _checked(key, _parse_value(key, value), "the value given")
        data = load_config()
        set_dotted(data, key, checked)
        load_profiles(data, source=str(path))  # validate provider tables before writing anything
        _edit_file(path, key, checked)
        sys.stderr.write(f"set {key} in {path}\n")


@config_app.command("unset")
def unset(key: KeyArg) -> None:
    """Remove one setting (comments in the file are kept).

    Example: imagegen config unset default_model
    """
    output = Output()
    with report_errors(output):
        from imagegen_cli.config import config_path, load_config, unset_dotted

        if not unset_dotted(load_config(), key):
            raise UsageError(f"{key} is not set")
        _edit_file(config_path(), key, None)


def _edit_file(path: Path, key: str, value: object) -> None:
    """Set (or, with ``None``, remove) a dotted key in the TOML file, keeping its comments and layout."""
    import tomlkit

    from imagegen_cli.config import atomic_write

    try:
        document = tomlkit.parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        document = tomlkit.document()
    parts = key.split(".")
    node: MutableMapping[str, Any] = document  # the document, then the tables on the key's path
    for part in parts[:-1]:
        if part not in node:
            if value is None:
                return
            # Provider tables are written as [providers.NAME] sections, as a person would write them.
            node[part] = tomlkit.table(is_super_table=len(parts) > 2 and part == parts[0])
        node = node[part]
    if value is None:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    atomic_write(path, tomlkit.dumps(document), 0o644)
