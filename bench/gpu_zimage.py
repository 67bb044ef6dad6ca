"""A Z-Image-Turbo-sized pipeline (random weights) at 1024x1024: where the time goes, per speed variant.

Builds a ZImagePipeline whose transformer has Z-Image-Turbo's shapes (6.15B parameters, bf16) around a small text
encoder and VAE (the hub is unreachable: weights are random), then times 8 denoising steps per image through
imagegen's own engine code (``local.runner.place`` and ``LocalRun``, the PNG encoded as the writer would):

- variants: eager, ``--compile`` (regional compilation), ``--quantize fp8`` (torchao float8, dynamic, per row),
  and both; a variant the machine cannot run (fp8 below compute capability 8.9, or without torchao) is listed as
  skipped with the reason, never faked;
- per variant: seconds per image (median of ``--runs``), the first call (compilation included), FLOPs per image
  (``torch.utils.flop_counter`` over one call), the floor (those FLOPs at the matrix-product rate measured on
  this device in the same run: bf16, and twice that for fp8) and the fraction of the floor reached;
- whole processes: ``imagegen generate`` against a plain diffusers script (``bench/plain_diffusers.py``) on the
  same pipeline saved to disk and loaded with ``from_pretrained``, each a fresh process.

``--tiny`` runs all of it on a CPU with a tiny transformer in seconds: the test suite runs it
(``tests/test_bench_gpu.py``), so a change of imagegen's engine API breaks a test, not this benchmark.

Run: .venv/bin/python bench/gpu_zimage.py [--tiny] [--runs 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FULL = {
    "dim": 3840,
    "n_layers": 30,
    "n_refiner_layers": 2,
    "n_heads": 30,
    "n_kv_heads": 30,
    "cap_feat_dim": 2560,
    "axes_dims": [32, 48, 48],
    "axes_lens": [1024, 512, 512],
}
TINY = {**FULL, "dim": 32, "n_layers": 2, "n_refiner_layers": 1, "n_heads": 2, "n_kv_heads": 2, "axes_dims": [8, 4, 4],
        "cap_feat_dim": 32}  # fmt: skip
VARIANTS = {"eager": (False, None), "--compile": (True, None), "--quantize fp8": (False, "fp8"),
            "fp8 + --compile": (True, "fp8")}  # fmt: skip
STEPS = 8


def build(config: dict[str, Any], device: str, dtype: Any) -> Any:
    import torch
    from diffusers import ZImagePipeline

    from tests.tiny_zimage import tiny_parts, transformer

    with torch.device(device):  # a 6B transformer is built where it runs, not first in CPU memory
        denoiser = transformer(config).to(dtype)
    pipe = ZImagePipeline(**tiny_parts(cap_dim=config["cap_feat_dim"], vae_levels=4), transformer=denoiser)
    pipe.to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def matmul_rate(torch: Any, device: str, dtype: Any, sync: Any) -> float:
    """FLOP/s of large matrix products on this device: the rate the floor is computed at."""
    side = 8192 if device == "cuda" else 512
    a = torch.randn(side, side, device=device, dtype=dtype)
    b = torch.randn(side, side, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync()
    rounds = 20 if device == "cuda" else 5
    start = time.perf_counter()
    for _ in range(rounds):
        a @ b
    sync()
    return 2 * side**3 * rounds / (time.perf_counter() - start)


def fp8_unavailable(torch: Any, device: str) -> str | None:
    """Why ``--quantize fp8`` cannot run here, as imagegen refuses it; None when it can."""
    from imagegen_cli.local.weights import FP8_CAPABILITY, installed

    if device != "cuda":
        return "needs a CUDA GPU"
    if torch.cuda.get_device_capability() < FP8_CAPABILITY:
        return f"compute capability {torch.cuda.get_device_capability()} < 8.9"
    if not installed("torchao"):
        return "torchao is not installed"
    return None


class Variant:
    """One variant on a freshly built pipeline, run through imagegen's engine code."""

    def __init__(self, torch: Any, pipe: Any, device: str, dtype: Any, size: int, compile_: bool, quantize: Any):
        from imagegen_cli.events import ImageReady, StopToken
        from imagegen_cli.local.planning import LocalOptions, ModelSource, build_local_plan
        from imagegen_cli.local.runner import LocalRun, Placement, place
        from imagegen_cli.request import GenerationRequest, Size

        self.torch, self.pipe = torch, pipe
        if quantize == "fp8":
            from torchao.quantization import quantize_

            from imagegen_cli.local.weights import fp8_torchao_config

            quantize_(pipe.transformer, fp8_torchao_config())  # what --quantize fp8 applies at load
        request = GenerationRequest(
            prompt="a lighthouse", provider="local", model="bench", size=Size(size, size), steps=STEPS, guidance=0.0,
            seed=0,
        )  # fmt: skip
        source = ModelSource("bench", "memory", "ZImagePipeline", None)
        # The plan is made for the CPU (planning refuses fp8 without a GPU); the placement below is the real one.
        plan = build_local_plan(request, source, LocalOptions(device="cpu", compile=compile_))
        self.placement = Placement(device, "bf16" if device == "cuda" else "fp32", dtype)
        notes: list[str] = []
        place(pipe, plan, self.placement, notes)

        def emit(event: object) -> None:
            if isinstance(event, ImageReady) and event.pixels is not None:
                event.pixels.save(io.BytesIO(), format="PNG")  # the writer's encoding, kept in memory

        self.run = LocalRun(plan, emit, StopToken())

    def __call__(self) -> None:
        self.run._generate(self.torch, self.pipe, self.placement, "bench")


def flops_per_image(torch: Any, pipe: Any, size: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        pipe("a lighthouse", height=size, width=size, num_inference_steps=STEPS, guidance_scale=0.0,
             generator=torch.Generator("cpu").manual_seed(0))  # fmt: skip
    return int(counter.get_total_flops())


def whole_processes(torch: Any, pipe: Any, device: str, size: int) -> dict[str, float]:
    """Wall seconds of ``imagegen generate -n 4`` and of the plain script, each a fresh process."""
    work = Path(tempfile.mkdtemp(prefix="imagegen-gpu-bench-"))
    folder = work / "pipeline"
    pipe.save_pretrained(folder)
    dtype = "bf16" if device == "cuda" else "fp32"
    imagegen = [str(Path(sys.executable).with_name("imagegen")), "generate", "a lighthouse", "-m", f"local:{folder}",
                "-n", "4", "--seed", "0", "--size", f"{size}x{size}", "--steps", str(STEPS), "--guidance", "0",
                "--dtype", dtype, "--device", device, "--no-server", "-q", "-o", str(work / "imagegen")]  # fmt: skip
    plain = [sys.executable, str(ROOT / "bench" / "plain_diffusers.py"), str(folder), str(work / "plain"), "4", "0",
             "--size", str(size), "--steps", str(STEPS), "--dtype", dtype, "--device", device]  # fmt: skip
    times = {}
    for name, argv in (("plain diffusers script", plain), ("imagegen generate", imagegen)):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, check=False, env={"HF_HUB_OFFLINE": "1", **_env()})
        if done.returncode != 0:
            raise SystemExit(f"{name} failed: {done.stderr.decode()[-800:]}")
        times[name] = time.perf_counter() - start
    return times


def _env() -> dict[str, str]:
    import os

    return {key: value for key, value in os.environ.items() if key != "IMAGEGEN_SERVER"}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="a tiny transformer on the CPU (checks the script)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    parser.add_argument("--no-processes", action="store_true", help="skip the whole-process comparison")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="which, comma-separated (default: all)")
    args = parser.parse_args(argv)
    import torch

    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: run with --tiny to check the script on a CPU")
    device, dtype = ("cpu", torch.float32) if args.tiny else ("cuda", torch.bfloat16)
    size = 64 if args.tiny else 1024
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    config = TINY if args.tiny else FULL
    rate = matmul_rate(torch, device, dtype, sync)
    flops = flops_per_image(torch, build(config, device, dtype), size)
    rows: list[dict[str, Any]] = []
    chosen = [name.strip() for name in args.variants.split(",")]
    unknown = [name for name in chosen if name not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant {unknown[0]!r}: choose from {', '.join(VARIANTS)}")
    for name in chosen:
        compile_, quantize = VARIANTS[name]
        why = fp8_unavailable(torch, device) if quantize else None
        if why:
            rows.append({"variant": name, "skipped": why})
            continue
        step = Variant(torch, build(config, device, dtype), device, dtype, size, compile_, quantize)
        start = time.perf_counter()
        step()  # the first call: compilation included
        sync()
        first = time.perf_counter() - start
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        floor = flops / (rate * (2 if quantize == "fp8" else 1))  # fp8 products run at about twice the bf16 rate
        rows.append({"variant": name, "seconds_per_image": seconds, "first_call": first, "floor": floor,
                     "tflop_per_image": flops / 1e12, "fraction_of_floor": floor / seconds})  # fmt: skip
    device_name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    figures: dict[str, Any] = {"device": device_name, "size": size, "steps": STEPS, "matmul_tflops": rate / 1e12,
                               "variants": rows}  # fmt: skip
    if not args.no_processes:
        figures["processes"] = whole_processes(torch, build(config, device, dtype), device, size)
    print(f"{figures['device']}: {size}x{size}, {STEPS} steps, matrix products at {rate / 1e12:.1f} TFLOP/s")
    print(f"{'variant':<18} {'s/image':>8} {'first call':>10} {'TFLOP/img':>9} {'floor s':>8} {'of floor':>8}")
    for row in rows:
        if "skipped" in row:
            print(f"{row['variant']:<18} skipped: {row['skipped']}")
        else:
            print(f"{row['variant']:<18} {row['seconds_per_image']:8.3f} {row['first_call']:10.2f} "
                  f"{row['tflop_per_image']:9.2f} {row['floor']:8.3f} {row['fraction_of_floor']:8.0%}")  # fmt: skip
    for name, seconds in figures.get("processes", {}).items():
        print(f"whole process, -n 4: {name:<24} {seconds:7.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
