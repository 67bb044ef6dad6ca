"""Regenerate the shell completion scripts in ``completions/`` from the app itself.

Run after changing commands: ``python scripts/generate_completions.py``. A test fails when the
committed scripts differ from what this prints, so they cannot drift.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = {"bash": "imagegen.bash", "zsh": "_imagegen", "fish": "imagegen.fish"}


def render(shell: str) -> str:
    """The completion script Typer generates for ``shell``."""
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "imagegen_cli", "--show-completion", shell],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return proc.stdout.rstrip("\n") + "\n"


def main() -> None:
    out = ROOT / "completions"
    out.mkdir(exist_ok=True)
    for shell, name in FILES.items():
        (out / name).write_text(render(shell))
        print(out / name)


if __name__ == "__main__":
    main()
