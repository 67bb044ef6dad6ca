"""``imagegen models`` must take at most 1.5x the wall time of ``imagegen --help``.

Run: .venv/bin/python bench/models_startup.py [RUNS]
"""

from __future__ import annotations

import sys
from pathlib import Path

from timing import report, time_commands

IMAGEGEN = str(Path(sys.executable).with_name("imagegen"))


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    times = time_commands(
        {
            "imagegen --help": [IMAGEGEN, "--help"],
            "imagegen models": [IMAGEGEN, "models"],
            "imagegen models --json": [IMAGEGEN, "models", "--json"],
        },
        runs,
        env={"COLUMNS": "200"},
    )
    ratios = report(times, "imagegen --help")
    worst = max(ratios["imagegen models"], ratios["imagegen models --json"])
    print(f"target: models / --help <= 1.50   measured: {worst:.2f}   {'PASS' if worst <= 1.5 else 'FAIL'}")


if __name__ == "__main__":
    main()
