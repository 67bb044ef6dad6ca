"""Regenerate the shell completion scripts in ``completions/`` from the app itself.

Run after changing commands: ``python scripts/generate_completions.py``. A test fails when the
committed scripts differ from what this prints, so they cannot drift.

zsh and fish get Typer's scripts as they are. bash gets the package's own script, which completes
``provider:model`` words that bash splits at the colon (``imagegen_cli/cli/completion.py`` says how); it is also
what ``imagegen --install-completion`` installs for bash.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = {"bash": "imagegen.bash", "zsh": "_imagegen", "fish": "imagegen.fish"}

# The line of Typer's bash script that states the protocol the app answers; if a Typer upgrade changes it,
# rendering fails here instead of shipping a script that no longer talks to the app.
TYPER_BASH_PROTOCOL = 'env COMP_WORDS="${COMP_WORDS[*]}"'


def render(shell: str) -> str:
    """The completion script for ``shell``: Typer's, or for bash the colon-aware one of the package."""
    from imagegen_cli.cli.completion import bash_script

    if shell != "bash":
        env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
        proc = subprocess.run(  # noqa: S603 - our own interpreter running our own module
            [sys.executable, "-m", "imagegen_cli", "--show-completion", shell],
            capture_output=True, text=True, env=env, check=True,
        )  # fmt: skip
        return proc.stdout.rstrip("\n") + "\n"
    # Typer's own bash script (its "source" instruction; --show-completion bash prints ours) states the protocol
    # the app answers: if a Typer upgrade changes it, rendering fails here instead of shipping a broken script.
    env = {**os.environ, "_IMAGEGEN_COMPLETE": "source_bash"}
    typers = subprocess.run(
        [sys.executable, "-m", "imagegen_cli"], capture_output=True, text=True, env=env, check=True
    ).stdout
    if TYPER_BASH_PROTOCOL not in typers or "=complete_bash $1" not in typers:
        raise SystemExit("Typer's bash completion protocol changed: update BASH in imagegen_cli/cli/completion.py")
    return bash_script()


def main() -> None:
    out = ROOT / "completions"
    out.mkdir(exist_ok=True)
    for shell, name in FILES.items():
        (out / name).write_text(render(shell))
        print(out / name)


if __name__ == "__main__":
    main()
