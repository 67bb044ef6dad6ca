"""The same 40-line tiny batch in-process against ``--engine ray`` with 2 workers here (issue 26), in one run.

Whole processes, as a user runs them: ``imagegen generate --prompt-file FILE -m local:tiny`` in this process (one
pipeline, torch's threads over every core) against the same command with ``--engine ray --workers 2`` (a local Ray
instance started by the command, two actors each with its own pipeline and one core). Rounds alternate, so machine
noise hits both alike. Printed: the medians, the ray/in-process ratio, and the ray run's fixed cost (the same
command on a 2-line file: starting Ray and the actors, loading two pipelines).

On one 2-core machine the ray path cannot beat in-process (the same cores, plus Ray); what it shows is the price
of the cluster path where there is no cluster. The scaling model for N GPUs is in bench/README.md.

Run: .venv/bin/python bench/ray_batch.py [ROUNDS] [LINES] [SIZE] [STEPS]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMAGEGEN = str(Path(sys.executable).with_name("imagegen"))


def whole_process(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:6]} failed: {proc.stderr.decode()[-800:]}")
    return elapsed


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    lines = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    size = sys.argv[3] if len(sys.argv) > 3 else "64x64"
    steps = sys.argv[4] if len(sys.argv) > 4 else "4"
    work = Path(tempfile.mkdtemp(prefix="imagegen-ray-bench-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "IMAGEGEN_SERVER": "off", "RAY_USAGE_STATS_ENABLED": "0"}
    env["XDG_DATA_HOME"] = str(work / "data")  # a journal of its own
    env.pop("RAY_ADDRESS", None)  # a local instance per run, as "without an address" means
    batch, pair = work / "batch.txt", work / "pair.txt"
    batch.write_text("".join(f"a lighthouse, variation {k}\n" for k in range(lines)))
    pair.write_text("a lighthouse\na harbour\n")

    def command(prompts: Path, out: str, ray: bool) -> list[str]:
        argv = [IMAGEGEN, "generate", "--prompt-file", str(prompts), "-m", "local:tiny", "--size", size]
        argv += ["--steps", steps, "--seed", "7", "-q", "-o", str(work / out)]
        return argv + (["--engine", "ray", "--workers", "2"] if ray else [])

    whole_process(command(pair, "warmup", False), env)  # builds the tiny pipeline once, outside the timings
    here: list[float] = []
    cluster: list[float] = []
    fixed: list[float] = []
    for number in range(rounds):
        here.append(whole_process(command(batch, f"here{number}", False), env))
        cluster.append(whole_process(command(batch, f"ray{number}", True), env))
        fixed.append(whole_process(command(pair, f"pair{number}", True), env))
        print(f"round {number + 1}: in-process {here[-1]:.2f} s, ray {cluster[-1]:.2f} s, ray on 2 lines {fixed[-1]:.2f} s")
    a, b, c = statistics.median(here), statistics.median(cluster), statistics.median(fixed)
    print(f"{lines} lines at {size}, {steps} steps, {os.cpu_count()} cores, medians of {rounds}:")
    print(f"  in-process          {a:7.2f} s  ({lines / a:.2f} images/s)")
    print(f"  --engine ray (2)    {b:7.2f} s  ({lines / b:.2f} images/s)   ray / in-process = {b / a:.2f}x")
    print(f"  ray's fixed cost    {c:7.2f} s  (2 lines: Ray, 2 actors, 2 pipelines)")
    print(f"  ray per line after  {(b - c) / (lines - 2):7.3f} s  against in-process {a / lines:.3f} s")


if __name__ == "__main__":
    main()
