"""imagegen vs a plain diffusers script on the same tiny pipelines: whole-process wall time and peak memory.

Target: imagegen / plain diffusers <= 1.10 in wall time, for each architecture. Both sides load the same
pipeline directory with from_pretrained and make the same two 64x64 images with the same seeds; runs
alternate. Architectures: the built-in tiny Stable Diffusion (``sd``) and the test zoo's (``tests/zoo.py``).

Run: .venv/bin/python bench/local_tiny.py [RUNS] [ARCH,ARCH...]     (default: 8 runs of sd,sdxl,flux)
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
    archs = (sys.argv[2] if len(sys.argv) > 2 else "sd,sdxl,flux").split(",")
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
    sys.path.insert(0, str(HERE.parent))
    from tests.zoo import build

    verdicts = []
    for arch in archs:
        pipeline = str(build(arch, work / "zoo"))
        print(f"== {arch}")
        verdicts.append(compare(arch, pipeline, work, env, runs))
    print("all PASS" if all(verdicts) else "some FAIL")


def compare(arch: str, pipeline: str, work: Path, env: dict[str, str], runs: int) -> bool:
    """Alternate both processes ``runs`` times (plus one uncounted round); print medians; True when within target."""
    commands = {
        "plain diffusers": [
            sys.executable,
            str(HERE / "plain_diffusers.py"),
            pipeline,
            str(work / arch / "plain"),
            "2",
            "7",
        ],
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
            str(work / arch / "imagegen"),
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
    return ratio <= 1.10


if __name__ == "__main__":
    main()
