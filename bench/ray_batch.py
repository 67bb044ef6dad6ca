"""The same 40-line tiny batch in-process against ``--engine ray`` with 2 workers here (issue 26), in one run.

Whole processes, as a user runs them: ``imagegen generate --prompt-file FILE -m local:tiny`` in this process (one
pipeline, torch's threads over every core) against the same command with ``--engine ray --workers 2`` (a local Ray
instance started by the command, two actors each with its own pipeline and one core). Rounds alternate, so machine
noise hits both alike. Printed: the medians, the ray/in-process ratio, and the ray run's fixed cost (the same
command on a 2-line file: starting Ray and the actors, loading two pipelines).

On one 2-core machine the ray path cannot beat in-process (the same cores, plus Ray); what it shows is the price
of the cluster path where there is no cluster. The scaling model for N GPUs is in bench/README.md.

Then the driver's ceiling, the number the scaling model of bench/README.md needs: per 1024x1024 image, what the
driver does with a worker's PNG (claim in the journal, check the PNG, add the record, write and place the file,
journal it), and with ``--worker-writes`` (claim and journal only); images per second one driver sustains.

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
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


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
    # As installed: compiled bytecode is reused (written by the uncounted round into a temporary prefix), even
    # where the environment says not to write it (else every process compiles imagegen again).
    env |= {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(work / "pycache")}
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
    fixed_here: list[float] = []
    for number in range(rounds):
        here.append(whole_process(command(batch, f"here{number}", False), env))
        cluster.append(whole_process(command(batch, f"ray{number}", True), env))
        fixed.append(whole_process(command(pair, f"pair{number}", True), env))
        fixed_here.append(whole_process(command(pair, f"pairhere{number}", False), env))
        times = f"in-process {here[-1]:.2f} s, ray {cluster[-1]:.2f} s, ray on 2 lines {fixed[-1]:.2f} s"
        print(f"round {number + 1}: {times}")
    a, b, c = statistics.median(here), statistics.median(cluster), statistics.median(fixed)
    d = statistics.median(fixed_here)
    print(f"{lines} lines at {size}, {steps} steps, {os.cpu_count()} cores, medians of {rounds}:")
    print(f"  in-process          {a:7.2f} s  ({lines / a:.2f} images/s)")
    print(f"  --engine ray (2)    {b:7.2f} s  ({lines / b:.2f} images/s)   ray / in-process = {b / a:.2f}x")
    print(f"  2 lines, ray        {c:7.2f} s  (the fixed cost: Ray, 2 actors, 2 pipelines)")
    print(f"  2 lines, in-process {d:7.2f} s  (the fixed cost: imports, 1 pipeline)")
    print(f"  per line beyond 2   ray {(b - c) / (lines - 2):.3f} s, in-process {(a - d) / (lines - 2):.3f} s")


def driver_ceiling(count: int = 40) -> None:
    """Per-image driver work for a 1024x1024 render, measured on this machine's disk and journal."""
    import numpy as np
    from PIL import Image

    work = Path(tempfile.mkdtemp(prefix="imagegen-driver-"))
    os.environ["XDG_DATA_HOME"] = str(work / "data")
    from imagegen_cli.meta import ImageMeta
    from imagegen_cli.store.journal import Journal
    from imagegen_cli.store.writer import ImageWriter, OutputSpec, encode_png

    # A render-like picture (smooth shapes and grain), not noise: PNG sizes as a model's output has them.
    rng = np.random.default_rng(7)
    small = Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).resize((1024, 1024), Image.BICUBIC)
    grain = rng.normal(0, 3, (1024, 1024, 3))
    picture = Image.fromarray(np.clip(np.asarray(small) + grain, 0, 255).astype(np.uint8))
    png = encode_png(picture)
    spec = OutputSpec.from_args(str(work / "out"), default_dir=None, template=None, fmt=None, overwrite=False,
                                metadata=True, n=count)  # fmt: skip
    meta = ImageMeta.from_record({"prompt": "a lighthouse", "provider": "local", "model": "tiny", "steps": 8})
    with Journal.open() as journal:
        job = journal.create_job(provider="local", model="tiny", dialect="local", base_url="", request={}, calls=[],
                                 n=2 * count, out_dir=str(spec.directory), output=spec.to_dict())  # fmt: skip
        writer = ImageWriter(spec, prompt="a lighthouse", provider="local", model="tiny", n=2 * count)
        start = time.perf_counter()
        for index in range(1, count + 1):
            journal.claim_image(job, index)
            saved = writer.save_bytes(
                png, index=index, seed=index, meta=meta.saved_as(index=index, seed=index, job=job)
            )
            journal.record_image(job, index=index, path=saved.path, url=None, seed=index, width=1024, height=1024,
                                 remote_id=None)  # fmt: skip
        save = (time.perf_counter() - start) / count
        start = time.perf_counter()
        for index in range(count + 1, 2 * count + 1):
            journal.claim_image(job, index)
            journal.record_image(job, index=index, path=str(work / f"{index}.png"), url=None, seed=index, width=1024,
                                 height=1024, remote_id=None)  # fmt: skip
        journalled = (time.perf_counter() - start) / count
    print(f"driver, per 1024x1024 image ({len(png) / 1e6:.2f} MB PNG, mean of {count}):")
    for what, seconds in (("a worker's PNG saved (claim, check, record, write, journal)", save),
                          ("--worker-writes (claim, journal)", journalled)):  # fmt: skip
        print(f"  {what:62} {seconds * 1000:7.1f} ms -> {1 / seconds:6.0f} images/s")


if __name__ == "__main__":
    if sys.argv[1:2] == ["driver"]:
        driver_ceiling()
    else:
        main()
        driver_ceiling()
