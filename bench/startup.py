"""Start-up: ``imagegen --help`` against ``llm --help`` and ``python -c pass``, alternating in one run.

Target: imagegen --help <= 0.3x the wall time of llm --help.
Set up once: python3 -m venv .bench && .bench/bin/pip install llm   (or set LLM=/path/to/llm)
Run: .venv/bin/python bench/startup.py [RUNS]
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from timing import report, time_commands

ROOT = Path(__file__).resolve().parent.parent
IMAGEGEN = str(Path(sys.executable).with_name("imagegen"))


def find_llm() -> str:
    for candidate in (os.environ.get("LLM"), str(ROOT / ".bench" / "bin" / "llm"), shutil.which("llm")):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("llm not found: python3 -m venv .bench && .bench/bin/pip install llm (or set LLM=...)")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    times = time_commands(
        {
            "python -c pass": [sys.executable, "-c", "pass"],
            "imagegen --help": [IMAGEGEN, "--help"],
            "llm --help": [find_llm(), "--help"],
        },
        runs,
    )
    ratios = report(times, "llm --help")
    ratio = ratios["imagegen --help"]
    print(
        f"target: imagegen --help / llm --help <= 0.30   measured: {ratio:.2f}   {'PASS' if ratio <= 0.3 else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
