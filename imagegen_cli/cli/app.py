"""The ``imagegen`` Typer application and its entry point."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Annotated

import typer

from imagegen_cli import __version__
from imagegen_cli.cli.config_cmd import config_app
from imagegen_cli.cli.doctor import doctor
from imagegen_cli.cli.generate import EXAMPLES, generate
from imagegen_cli.cli.keys import keys_app
from imagegen_cli.cli.models import models_app
from imagegen_cli.cli.tasks import tasks_app
from imagegen_cli.signals import StopSignal

app = typer.Typer(
    name="imagegen",
    help="Generate images from a prompt, with a local GPU pipeline or a remote gateway.\n\n"
    "Example:\n\n\b\n"
    '  imagegen generate "a red fox in the snow" -m apimart:z-image-turbo --ratio 16:9',
    no_args_is_help=True,
    add_completion=True,
    # Rich tracebacks print local variables, which can hold API keys: never show them.
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("generate", epilog=EXAMPLES)(generate)
app.add_typer(models_app, name="models")
app.add_typer(tasks_app, name="tasks")
app.add_typer(keys_app, name="keys")
app.add_typer(config_app, name="config")
app.command("doctor", epilog="Examples:\n\n\b\n  imagegen doctor\n  imagegen doctor --online --json")(doctor)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"imagegen {__version__}")
        raise typer.Exit


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Generate images from a prompt, with a local GPU pipeline or a remote gateway."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # The same orderly stop as Ctrl-C, then exit 143: SIGTERM is delivered again as SIGINT, so whoever handles
    # Ctrl-C at this moment (asyncio's runner, a local run between steps, Python's default) handles it.
    StopSignal.terminated = True
    signal.raise_signal(signal.SIGINT)


def main() -> None:
    """Console-script entry point."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    app(prog_name="imagegen")
