"""The first and the cached ``--compile`` (issue 24): what a fresh process pays once the machine has compiled.

Three whole processes of ``imagegen generate -m local:MODEL --seed 1`` with an empty imagegen cache: without
``--compile`` (the baseline), with ``--compile`` (compiles: the cache is empty), and with ``--compile`` again
(a new process: the compiled code comes from imagegen's compile cache). Rounds alternate; each round starts from
an empty cache. The compile's cost is each ``--compile`` process minus the baseline of its round. Target: the
cached compile at most 10 % of the first.

Run: .venv/bin/python bench/compile_cache.py [ROUNDS] [MODEL] [SIZE]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMAGEGEN = str(Path(sys.executable).with_name("imagegen"))


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{argv[:5]} failed: {done.stderr.decode()[-800:]}")
    return time.perf_counter() - start


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    model = sys.argv[2] if len(sys.argv) > 2 else "tiny"
    size = sys.argv[3] if len(sys.argv) > 3 else "64x64"
    work = Path(tempfile.mkdtemp(prefix="imagegen-compile-bench-"))
    tiny_home = Path(tempfile.mkdtemp(prefix="imagegen-compile-tiny-"))  # the tiny pipeline, built once
    command = [IMAGEGEN, "generate", "a lighthouse", "-m", f"local:{model}", "--seed", "1", "--size", size,
               "--no-server", "-q"]  # fmt: skip
    first: list[float] = []
    cached: list[float] = []
    for number in range(rounds):
        cache = work / f"cache{number}"
        shutil.copytree(tiny_home, cache, dirs_exist_ok=True)
        env = {**os.environ, "XDG_CACHE_HOME": str(cache), "XDG_DATA_HOME": str(work / "data"), "HF_HUB_OFFLINE": "1"}
        env.pop("TORCHINDUCTOR_CACHE_DIR", None)
        env.pop("TRITON_CACHE_DIR", None)
        base = timed([*command, "-o", str(work / f"plain{number}")], env)
        compiled = timed([*command, "--compile", "-o", str(work / f"first{number}")], env)
        again = timed([*command, "--compile", "-o", str(work / f"again{number}")], env)
        first.append(compiled - base)
        cached.append(again - base)
        print(f"round {number + 1}: eager {base:6.2f} s, first --compile {compiled:6.2f} s, cached {again:6.2f} s")
        if number == 0:
            shutil.copytree(cache / "imagegen" / "models", tiny_home / "imagegen" / "models", dirs_exist_ok=True)
    ratio = statistics.median(cached) / statistics.median(first)
    print(f"compile cost: first {statistics.median(first):.2f} s, cached {statistics.median(cached):.2f} s "
          f"(median over {rounds} rounds); cached / first = {ratio:.2f} (target <= 0.10: "
          f"{'pass' if ratio <= 0.10 else 'FAIL'})")  # fmt: skip


if __name__ == "__main__":
    main()
