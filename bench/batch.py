"""Batch throughput, per-image overhead and memory, against the fake gateway (tests/fakegateway.py).

1. Throughput: 200 prompts, 0.5 s latency per call, --concurrency 16, against the ideal ceil(200/16) x 0.5 s.
   Target: <= 1.25x the ideal.
2. Overhead per image: 50 prompts against a zero-latency gateway, imagegen (--concurrency 1) against a
   curl + sed + base64 loop making the same calls one by one.
3. Peak RSS of the 200-prompt batch against a single-image run. Target: <= 1.5x.

Run: .venv/bin/python bench/batch.py
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from timing import run_child  # noqa: E402

from tests.fakegateway import TEST_KEY, FakeGateway  # noqa: E402

IMAGEGEN = str(Path(sys.executable).with_name("imagegen"))


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="imagegen-batch-bench-"))
    prompts = work / "prompts.txt"
    prompts.write_text("\n".join(f"a lighthouse number {i}" for i in range(200)) + "\n")
    with FakeGateway() as gateway:
        env = {
            **os.environ,
            "XDG_DATA_HOME": str(work / "data"),
            "XDG_CONFIG_HOME": str(work / "config"),
            "IMAGEGEN_OPENAI_BASE_URL": gateway.base_url("openai"),
            "IMAGEGEN_OPENAI_API_KEY": TEST_KEY,
            "CI": "1",
        }
        common = ["-m", "openai:dall-e-2", "--size", "256x256", "-q"]

        # 1 + 3: 200 prompts at 0.5 s latency, and one image, for peak memory.
        gateway.latency = 0.5
        batch_t, batch_rss = run_child(
            [
                IMAGEGEN,
                "generate",
                "--prompt-file",
                str(prompts),
                *common,
                "--concurrency",
                "16",
                "-o",
                str(work / "batch"),
            ],
            env,
        )
        _, single_rss = run_child([IMAGEGEN, "generate", "one lighthouse", *common, "-o", str(work / "one")], env)
        ideal = math.ceil(200 / 16) * 0.5
        print(
            f"throughput: 200 prompts in {batch_t:.2f} s; ideal {ideal:.2f} s; ratio {batch_t / ideal:.2f} "
            f"(target <= 1.25: {'PASS' if batch_t / ideal <= 1.25 else 'FAIL'})"
        )
        print(
            f"memory: batch peak RSS {batch_rss / 1024:.1f} MiB, single image {single_rss / 1024:.1f} MiB; ratio "
            f"{batch_rss / single_rss:.2f} (target <= 1.50: {'PASS' if batch_rss / single_rss <= 1.5 else 'FAIL'})"
        )

        # 2: per-image overhead at zero latency, 50 images one at a time.
        gateway.latency = 0.0
        small = work / "fifty.txt"
        small.write_text("\n".join(f"a koi number {i}" for i in range(50)) + "\n")
        ig_t, _ = run_child(
            [
                IMAGEGEN,
                "generate",
                "--prompt-file",
                str(small),
                *common,
                "--concurrency",
                "1",
                "-o",
                str(work / "fifty"),
            ],
            env,
        )
        url = gateway.base_url("openai") + "/images/generations"
        loop = (
            f'mkdir -p {work}/curl; for i in $(seq 1 50); do curl -s -X POST "{url}" '
            f'-H "Authorization: Bearer $KEY" -H "Content-Type: application/json" '
            '-d "{\\"model\\": \\"dall-e-2\\", \\"prompt\\": \\"a koi number $i\\", \\"size\\": \\"256x256\\", '
            '\\"response_format\\": \\"b64_json\\"}" '
            f'| sed -E \'s/.*"b64_json": *"([^"]+)".*/\\1/\' | base64 -d > {work}/curl/$i.png; done'
        )
        curl_t, _ = run_child(["bash", "-c", loop], {**env, "KEY": TEST_KEY})
        print(
            f"overhead: imagegen {ig_t / 50 * 1000:.1f} ms per image, curl + base64 loop {curl_t / 50 * 1000:.1f} ms "
            f"per image; ratio {ig_t / curl_t:.2f} (imagegen also checks, tags and journals every image)"
        )


if __name__ == "__main__":
    main()
