"""imagegen vs a plain diffusers script on the same tiny pipeline: whole-process wall time and peak memory.

Target: imagegen / plain diffusers <= 1.10 in wall time. Both sides load the same pipeline directory with
from_pretrained and make the same two 64x64 images with the same seeds; runs alternate.

Run: .venv/bin/python bench/local_tiny.py [RUNS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

from timing import run_child

HERE = Path(__file__).resolve().parent
IMAGEGEN = str(Path(sys.executable).with_name("imagegen"))


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    work = Path(tempfile.mkdtemp(prefix="imagegen-bench-"))
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(work / "cache"),
        "XDG_DATA_HOME": str(work / "data"),
        "XDG_CONFIG_HOME": str(work / "config"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "2",
    }
    os.environ.update(env)
    from imagegen_cli.local.tiny import ensure_tiny_pipeline

    pipeline = str(ensure_tiny_pipeline())
    commands = {
        "plain diffusers": [sys.executable, str(HERE / "plain_diffusers.py"), pipeline, str(work / "plain"), "2", "7"],
        "imagegen": [
            IMAGEGEN,
            "generate",
            "a lighthouse",
            "-m",
            f"local:{pipeline}",
            "-n",
            "2",
            "--seed",
            "7",
            "--steps",
            "4",
            "--guidance",
            "0",
            "--size",
            "64x64",
            "-q",
            "-o",
            str(work / "imagegen"),
        ],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    peaks: dict[str, list[int]] = {name: [] for name in commands}
    for round_number in range(runs + 1):  # the first round warms the page cache and is not counted
        for name, argv in commands.items():
            elapsed, peak = run_child(argv, env)
            if round_number:
                times[name].append(elapsed)
                peaks[name].append(peak)
    base_t, base_m = statistics.median(times["plain diffusers"]), statistics.median(peaks["plain diffusers"])
    for name in commands:
        t, m = statistics.median(times[name]), statistics.median(peaks[name])
        print(f"{name:<16} wall {t:6.2f} s  ({t / base_t:4.2f}x)   peak RSS {m / 1024:7.1f} MiB  ({m / base_m:4.2f}x)")
    ratio = statistics.median(times["imagegen"]) / base_t
    print(f"target: imagegen / plain <= 1.10 wall   measured: {ratio:.2f}   {'PASS' if ratio <= 1.10 else 'FAIL'}")


if __name__ == "__main__":
    main()
