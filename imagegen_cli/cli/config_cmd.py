"""``imagegen config``: show, read and change settings in the TOML config file."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from imagegen_cli.cli.options import JsonOpt
from imagegen_cli.cli.output import Output, reported
from imagegen_cli.errors import UsageError

config_app = typer.Typer(
    help="Show and change settings.\n\nExample: imagegen config set default_model apimart:z-image-turbo",
    no_args_is_help=True,
)

KeyArg = Annotated[str, typer.Argument(metavar="KEY", help="Dotted key, e.g. providers.openai.base_url.")]
KNOWN_TOP = {
    "default_model",
    "output_dir",
    "name_template",
    "format",
    "timeout",
    "concurrency",
    "metadata",
    "providers",
}


@config_app.command("show")
def show(json_out: JsonOpt = False) -> None:
    """Print the config file's settings, with any secret redacted.

    Example: imagegen config show
    """
    output = Output(json_mode=json_out)
    with reported(output):
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
    with reported(output):
        from imagegen_cli.config import get_dotted, load_config, redact_config

        try:
            value = get_dotted(redact_config(load_config()), key)
        except KeyError:
            raise UsageError(f"{key} is not set", hint="see: imagegen config show") from None
        if json_out or isinstance(value, dict | list):
            output.json(value)
        else:
            output.line(str(value).lower() if isinstance(value, bool) else str(value))


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


@config_app.command("set")
def set_value(key: KeyArg, value: Annotated[str, typer.Argument(help="Value; JSON when it parses (true, 3).")]) -> None:
    """Change one setting.

    Example: imagegen config set providers.apimart.base_url https://my-proxy.example/v1
    """
    output = Output()
    with reported(output):
        from imagegen_cli.config import SECRET_KEY_NAMES, load_config, save_config, set_dotted
        from imagegen_cli.providers.registry import load_profiles

        top = key.split(".", 1)[0]
        if top not in KNOWN_TOP:
            raise UsageError(f"unknown setting {top!r}", hint="known: " + ", ".join(sorted(KNOWN_TOP)))
        if SECRET_KEY_NAMES.search(key.rsplit(".", 1)[-1]) and not key.endswith("_env"):
            raise UsageError("keys do not belong in the config file", hint="use: imagegen keys set PROVIDER")
        data = load_config()
        set_dotted(data, key, _parse_value(value))
        load_profiles(data)  # validate provider tables before writing anything
        saved = save_config(data)
        import sys

        sys.stderr.write(f"set {key} in {saved}\n")


@config_app.command("unset")
def unset(key: KeyArg) -> None:
    """Remove one setting.

    Example: imagegen config unset default_model
    """
    output = Output()
    with reported(output):
        from imagegen_cli.config import load_config, save_config, unset_dotted

        data = load_config()
        if not unset_dotted(data, key):
            raise UsageError(f"{key} is not set")
        save_config(data)
