"""A warm server against cold processes (issue 23), in one run on this machine.

1. Whole processes: ``imagegen generate -m local:tiny`` run N times one after another, in-process (``--no-server``:
   each process imports torch and diffusers and loads the pipeline) against the same command while an
   ``imagegen serve -m local:tiny`` runs (the CLI finds it and sends its work there). Rounds alternate, so machine
   noise hits both alike. Target: the warm path at most 0.1x the cold path's wall time.
2. Throughput: 16 requests sent at once to the server (it batches them, ``--max-batch 4``) against the same 16
   images made one after another by a warm engine in this process.

Run: .venv/bin/python bench/serve_warm.py [ROUNDS] [SIZE]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakegateway import free_port  # noqa: E402

IMAGEGEN = str(Path(sys.executable).with_name("imagegen"))


def whole_process(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed: {proc.stderr.decode()[-800:]}")
    return elapsed


def concurrent(base: str, count: int, size: str, steps: int) -> float:
    answers: list[int] = []

    def ask(seed: int) -> None:
        body = {"model": "tiny", "prompt": f"prompt {seed}", "seed": seed, "size": size, "steps": steps}
        answers.append(httpx.post(f"{base}/v1/images/generations", json=body, timeout=600).status_code)

    threads = [threading.Thread(target=ask, args=(seed,)) for seed in range(count)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    assert answers == [200] * count, answers
    return elapsed


def sequential_in_process(count: int, size: str, steps: int) -> float:
    from imagegen_cli.events import StopToken
    from imagegen_cli.local.planning import build_local_plan, resolve_source
    from imagegen_cli.local.runner import LocalEngine
    from imagegen_cli.local_options import LocalOptions
    from imagegen_cli.request import GenerationRequest, Size

    engine = LocalEngine()

    def plan(seed: int) -> Any:
        request = GenerationRequest(
            prompt=f"prompt {seed}", provider="local", model="tiny", size=Size.parse(size), seed=seed, steps=steps
        )
        return build_local_plan(request, resolve_source("tiny"), LocalOptions(device="cpu"))

    engine.run(0, plan(99), lambda event: None, StopToken())  # loaded and warm, as the server is
    start = time.perf_counter()
    for seed in range(count):
        engine.run(0, plan(seed), lambda event: None, StopToken())
    return time.perf_counter() - start


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    size = sys.argv[2] if len(sys.argv) > 2 else "256x256"
    work = Path(tempfile.mkdtemp(prefix="imagegen-serve-bench-"))
    env = {**os.environ, "XDG_DATA_HOME": str(work / "data"), "XDG_CONFIG_HOME": str(work / "config"),
           "HF_HUB_OFFLINE": "1",
           # As installed: compiled bytecode is reused (written by the uncounted round into a temporary prefix),
           # even where the environment says not to write it (else every process compiles imagegen again).
           "PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(work / "pycache")}  # fmt: skip
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [IMAGEGEN, "serve", "-m", "local:tiny", "--port", str(port), "--device", "cpu", "--max-batch", "4"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        command = [IMAGEGEN, "generate", "a lighthouse", "-m", "local:tiny", "--size", size, "--seed", "1", "-q"]
        cold_env = {**env, "IMAGEGEN_SERVER": "off"}
        warm_env = {**env, "IMAGEGEN_SERVER": base}
        cold: list[float] = []
        warm: list[float] = []
        for number in range(rounds + 1):  # the first round warms the disk cache and the server's pipeline
            c = whole_process([*command, "-o", str(work / f"cold{number}")], cold_env)
            w = whole_process([*command, "-o", str(work / f"warm{number}")], warm_env)
            if number:
                cold.append(c)
                warm.append(w)
        print(f"1. {rounds} sequential `imagegen generate -m local:tiny --size {size}` processes")
        print(f"   in-process (cold): total {sum(cold):6.2f} s, median {statistics.median(cold):5.2f} s")
        print(f"   on the server (warm): total {sum(warm):6.2f} s, median {statistics.median(warm):5.2f} s")
        ratio = sum(warm) / sum(cold)
        print(f"   warm / cold: {ratio:.3f} (target <= 0.100: {'pass' if ratio <= 0.1 else 'FAIL'})")
        steps = 8
        together = concurrent(base, 16, size, steps)
        one_by_one = sequential_in_process(16, size, steps)
        print(f"2. 16 images, {size}, {steps} steps")
        print(f"   16 concurrent requests to the server: {together:6.2f} s")
        print(f"   16 sequential calls, warm engine in this process: {one_by_one:6.2f} s")
        print(f"   server / sequential: {together / one_by_one:.3f}")
    finally:
        server.terminate()
        server.wait(120)


if __name__ == "__main__":
    main()
