"""The ``imagegen`` Typer application and its entry point."""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from difflib import get_close_matches
from types import FrameType
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from imagegen_cli import __version__
from imagegen_cli.cli.config_cmd import config_app
from imagegen_cli.cli.doctor import doctor
from imagegen_cli.cli.gallery_cmd import GALLERY_EXAMPLES, gallery
from imagegen_cli.cli.generate import EXAMPLES, generate
from imagegen_cli.cli.keys import keys_app
from imagegen_cli.cli.models import models_app
from imagegen_cli.cli.render import InterruptNotice
from imagegen_cli.cli.serve_cmd import SERVE_EXAMPLES, serve
from imagegen_cli.cli.show import EXAMPLES as SHOW_EXAMPLES
from imagegen_cli.cli.show import show
from imagegen_cli.cli.tasks import tasks_app
from imagegen_cli.errors import ExitCode
from imagegen_cli.signals import StopSignal, interrupted_exit_code, stop_all

DEFAULT_COMMAND = "generate"

# httpx imports its own command line (click, pygments, rich.syntax: ~50 ms of start-up) whenever those happen to be
# installed, and imagegen never runs it. A None entry makes that optional import fail at once, as it does where they
# are missing (httpx then defines a stub). Set before any command imports httpx: start-up is a feature.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


class DefaultToGenerate(TyperGroup):
    """The root group: ``imagegen "a cat" [OPTIONS]`` is ``imagegen generate "a cat" [OPTIONS]`` (as in ``llm``).

    A first argument that is neither a command nor a root option (``--help``, ``--version``, ...) starts
    ``generate``, so ``imagegen -m local:tiny "a fox"`` works too. A near miss of a command's name
    (``imagegen modles``) is still "No such command ... Did you mean 'models'?", never a paid generation.
    """

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**{**attrs, "subcommand_metavar": "PROMPT|COMMAND [ARGS]..."})

    def main(self, *args: Any, **kwargs: Any) -> Any:
        InterruptNotice.said = False  # one command, one notice (tests and scripts may run several in a process)
        return super().main(*args, **kwargs)

    def get_params(self, ctx: Any) -> list[Any]:
        # Typer adds --install-completion/--show-completion after building the group: for bash they install and
        # print the project's colon-aware script (cli/completion.py), not Typer's generic one.
        from imagegen_cli.cli.completion import bash_aware

        params = super().get_params(ctx)
        for param in params:
            callback = param.callback
            if param.name in ("install_completion", "show_completion") and callback and not hasattr(callback, "ours"):
                param.callback = bash_aware(callback, install=param.name == "install_completion")
        return params

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:  # bare ``imagegen``: the help, on stdout, exit 0 (Click: stderr, 2)
            typer.echo(ctx.get_help())
            ctx.exit(0)
        if args and self._starts_generate(ctx, args[0]):
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)

    def _starts_generate(self, ctx: Any, first: str) -> bool:
        if first in self.commands:
            return False
        root_options = {name for param in self.get_params(ctx) for name in (*param.opts, *param.secondary_opts)}
        if first.partition("=")[0] in root_options:
            return False
        one_word = first.isascii() and first.replace("-", "").isalpha()
        return not (one_word and get_close_matches(first, list(self.commands), cutoff=0.75))


app = typer.Typer(
    name="imagegen",
    cls=DefaultToGenerate,
    help="Generate images from a prompt, with a local GPU pipeline or a remote gateway.\n\n"
    'A prompt with no command runs generate: imagegen "a cat" is imagegen generate "a cat".\n\n'
    "Examples:\n\n\b\n"
    '  imagegen generate "a red fox in the snow" -m apimart:z-image-turbo --ratio 16:9\n'
    '  imagegen "a lighthouse" -m local:tiny -n 2 --seed 7 -o out/',
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
app.command("show", epilog=SHOW_EXAMPLES)(show)
app.command("serve", epilog=SERVE_EXAMPLES)(serve)
app.command("gallery", epilog=GALLERY_EXAMPLES)(gallery)
app.command("doctor", epilog="Examples:\n\n\b\n  imagegen doctor\n  imagegen doctor --online --timeout 5 --json")(
    doctor
)


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
    # The same orderly stop as Ctrl-C, then exit 143: whoever handles Ctrl-C at this moment (asyncio's runner, a
    # local run between steps, Python's default) handles it. It is called directly, not re-raised as SIGINT: a
    # job started in the background of a script has SIGINT ignored, and `kill PID` must still stop it.
    StopSignal.terminated = True
    handler = signal.getsignal(signal.SIGINT)
    if stop_all(terminated=True):
        return
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def console_main() -> None:
    """The ``imagegen`` command: :func:`main`, then the quick exit (a caller in this process uses ``main``)."""
    try:
        main()
    except SystemExit as exc:
        _leave(exc)


def _leave(exc: SystemExit) -> NoReturn:
    """Exit with ``exc``'s code, without Python's tear-down of every module and object once the work is done.

    That tear-down keeps nothing and costs ~40 ms: a tenth of a run on a warm ``imagegen serve``. What an exit must
    do still happens: the output streams are flushed and the atexit handlers run (logging's flush, temporary
    folders' removal). Where anything else could still be working (a thread that is not a daemon), an output that
    cannot be flushed (a closed pipe: Python's own exit says so), or a code that is not a number, Python exits as
    usual.
    """
    code = 0 if exc.code is None else exc.code
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    # Python's own exit waits for the threads that are not daemons, and for no other: those the quick one leaves.
    working = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if not isinstance(code, int) or working or run_exit_handlers is None:
        raise exc
    try:
        _flush()
        run_exit_handlers()
        _flush()
    except (OSError, ValueError):
        raise exc from None
    os._exit(code)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()


def main() -> None:
    """Run the CLI on ``sys.argv``; ends in SystemExit with the exit code, as Typer's commands do."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    InterruptNotice.said = False
    try:
        app(prog_name="imagegen")
    except KeyboardInterrupt:
        # Typer was still building the command from its annotations: nothing else is there to say it.
        InterruptNotice.say()
        raise SystemExit(int(interrupted_exit_code())) from None
    except SystemExit as exc:
        if exc.code == ExitCode.INTERRUPTED and not InterruptNotice.said:
            # Outside a command's error handler (parsing, a callback), Typer turns Ctrl-C into exit 130 silently.
            InterruptNotice.say()
            raise SystemExit(int(interrupted_exit_code())) from None
        raise
