"""A remote ``generate --dry-run`` must take at most 1.5x the time of ``imagegen --help``.

Both commands run alternately in one session, so machine noise hits both alike. Each round pairs a dry run
with the ``--help`` of the same round; the result is the median of those paired ratios. Wall time is the
target; CPU time (user + system of the child) is printed beside it, as it holds steadier on a busy machine.
The dry run plans the calls of a gateway model and prints them: no key, no network, no torch.

Run: .venv/bin/python bench/dry_run_startup.py [RUNS] [--warmup N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMAGEGEN = str(Path(sys.executable).with_name("imagegen"))
TARGET = 1.5
BASELINE = "imagegen --help"
COMMANDS = {
    BASELINE: ["--help"],
    "dry run openai": ["generate", "a red fox", "-m", "openai:gpt-image-1.5", "--dry-run"],
    "dry run apimart": ["generate", "a red fox", "-m", "apimart:z-image-turbo", "--ratio", "16:9", "--dry-run"],
}


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run; exits with its stderr if it fails."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            raise SystemExit(f"{argv[1:]} failed: {errors.read().decode(errors='replace')[-800:]}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="?", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    wall: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpu: dict[str, list[float]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            # An empty user world: the config file and keys of whoever runs it change nothing.
            "XDG_CONFIG_HOME": f"{home}/config",
            "XDG_DATA_HOME": f"{home}/data",
            "XDG_CACHE_HOME": f"{home}/cache",
            # As installed: compiled bytecode is reused (written by the warm-up rounds into a temporary prefix,
            # so nothing lands in the checkout), even where the environment says not to write it.
            "PYTHONDONTWRITEBYTECODE": "",
            "PYTHONPYCACHEPREFIX": f"{home}/pycache",
        }
        for round_number in range(max(1, args.warmup) + args.runs):
            for name, argv in COMMANDS.items():
                seconds, cpu_seconds = measure([IMAGEGEN, *argv], env)
                if round_number >= max(1, args.warmup):
                    wall[name].append(seconds)
                    cpu[name].append(cpu_seconds)
    worst = 0.0
    for name in COMMANDS:
        ratio = statistics.median(d / h for d, h in zip(wall[name], wall[BASELINE], strict=True))
        cpu_ratio = statistics.median(d / h for d, h in zip(cpu[name], cpu[BASELINE], strict=True))
        print(
            f"{name:<18} wall median {statistics.median(wall[name]) * 1000:7.1f} ms  ratio {ratio:4.2f}   "
            f"cpu median {statistics.median(cpu[name]) * 1000:7.1f} ms  ratio {cpu_ratio:4.2f}"
        )
        if name != BASELINE:
            worst = max(worst, ratio)
    verdict = "PASS" if worst <= TARGET else "FAIL"
    print(f"target: remote dry run / --help <= {TARGET:.2f} (wall, paired median)   measured: {worst:.2f}   {verdict}")


if __name__ == "__main__":
    main()
