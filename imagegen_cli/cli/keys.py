"""``imagegen keys``: store, list and remove API keys (a 0600 file; never from argv)."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer

from imagegen_cli.cli.options import JsonOpt
from imagegen_cli.cli.render import Output, report_errors
from imagegen_cli.errors import UsageError

keys_app = typer.Typer(
    help='Store, list and remove API keys.\n\nExample: printf %s "$KEY" | imagegen keys set openai',
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(metavar="PROVIDER", help="Provider name, e.g. openai.")]


def _known_providers() -> set[str]:
    from imagegen_cli.settings import load_settings

    return set(load_settings().profiles())


# A key typed after the provider is taken in as an extra argument (not a declared one, which would show in
# the usage line) only to be refused without being echoed: argv lands in shell history and `ps`.
@keys_app.command("set", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def set_key(ctx: typer.Context, name: NameArg) -> None:
    """Save a provider's key: read from a hidden prompt, or from stdin when piped.

    Example: imagegen keys set apimart
    """
    output = Output()
    with report_errors(output):
        from imagegen_cli.config import store_key

        options = [arg for arg in ctx.args if arg.startswith("-")]
        if options:
            raise UsageError(f"no such option: {options[0]}", hint="see: imagegen keys set --help")
        if ctx.args:
            raise UsageError(
                "keys are never taken from the command line",
                hint=f'type it at the prompt, or pipe it: printf %s "$KEY" | imagegen keys set {name}',
            )

        if name not in _known_providers():
            raise UsageError(f"unknown provider {name!r}", hint="known: " + ", ".join(sorted(_known_providers())))
        if sys.stdin.isatty():
            key = getpass.getpass(f"API key for {name}: ", stream=sys.stderr)
        else:
            key = sys.stdin.readline()
        key = key.strip()
        if not key:
            raise UsageError(
                "no key given",
                hint=f'type it at the prompt, or pipe it: printf %s "$KEY" | imagegen keys set {name}',
            )
        if any(c.isspace() for c in key):
            raise UsageError("the key contains whitespace", hint="paste the key alone")
        path = store_key(name, key)
        sys.stderr.write(f"saved the {name} key in {path}\n")


@keys_app.command("list")
def list_keys(json_out: JsonOpt = False) -> None:
    """List providers and where their key comes from (never the key itself).

    Example: imagegen keys list --json
    """
    output = Output(json_mode=json_out)
    with report_errors(output):
        from imagegen_cli.config import find_key
        from imagegen_cli.providers.registry import profile_key_vars
        from imagegen_cli.settings import load_settings

        rows = []
        for name, profile in sorted(load_settings().profiles().items()):
            found = find_key(name, profile_key_vars(profile))
            rows.append(
                {
                    "provider": name,
                    "source": found[1].kind if found else None,
                    "where": found[1].name if found else None,
                }
            )
        if json_out:
            output.json(rows)
            return
        for row in rows:
            where = f"{row['source']} {row['where']}" if row["source"] else "-"
            output.line(f"{row['provider']:<10} {where}")


@keys_app.command("rm")
def remove(name: NameArg) -> None:
    """Remove a stored key.

    Example: imagegen keys rm openai
    """
    output = Output()
    with report_errors(output):
        from imagegen_cli.config import remove_key

        if not remove_key(name):
            raise UsageError(f"no stored key for {name}", hint="see: imagegen keys list")
        sys.stderr.write(f"removed the {name} key\n")


@keys_app.command("path")
def path() -> None:
    """Print the keys file's path.

    Example: imagegen keys path
    """
    from imagegen_cli.config import keys_path

    Output().line(str(keys_path()))
