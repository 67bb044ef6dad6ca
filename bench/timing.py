"""Shared helpers for the benchmarks: alternate commands in one run and compare medians."""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence


def time_commands(
    commands: dict[str, Sequence[str]], runs: int, env: dict[str, str] | None = None, warmup: int = 2
) -> dict[str, list[float]]:
    """Wall times per command; runs alternate so machine noise hits every command alike."""
    full_env = {**os.environ, **(env or {})}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_number in range(warmup + runs):
        for name, argv in commands.items():
            start = time.perf_counter()
            proc = subprocess.run(list(argv), env=full_env, capture_output=True, check=False)
            elapsed = time.perf_counter() - start
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed ({proc.returncode}): {proc.stderr.decode()[:500]}")
            if round_number >= warmup:
                times[name].append(elapsed)
    return times


def report(times: dict[str, list[float]], baseline: str) -> dict[str, float]:
    """Print medians and ratios against ``baseline``; return the ratios."""
    base = statistics.median(times[baseline])
    ratios = {}
    for name, values in times.items():
        median = statistics.median(values)
        ratios[name] = median / base
        print(f"{name:<28} median {median * 1000:8.1f} ms   ratio vs {baseline}: {median / base:5.2f}")
    return ratios


def run_child(argv: Sequence[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one child process; exits with its stderr if it fails."""
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty child cannot block on it
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), env=env, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            raise SystemExit(f"{list(argv)[:4]} failed: {errors.read().decode(errors='replace')[-800:]}")
    return elapsed, usage.ru_maxrss
