"""A Z-Image-Turbo-sized transformer (random weights) at 1024x1024: imagegen eager, imagegen --compile, plain loop.

Needs a CUDA GPU with ~16 GB free for the full-size transformer (6B parameters in bf16). The text
encoder and VAE are tiny: only the denoising loop is being timed. ``--tiny`` runs the same code path on
a CPU with a tiny transformer, to check the script itself.

Run: .venv/bin/python bench/gpu_zimage.py [--tiny] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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
TINY = {
    "dim": 32,
    "n_layers": 2,
    "n_refiner_layers": 1,
    "n_heads": 2,
    "n_kv_heads": 2,
    "cap_feat_dim": 2560,
    "axes_dims": [8, 4, 4],
    "axes_lens": [1024, 512, 512],
}


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import torch

    from imagegen_cli.local.planning import LocalOptions, ModelSource, build_local_plan
    from imagegen_cli.local.runner import LocalRun, Placement, place
    from imagegen_cli.request import GenerationRequest, Size
    from imagegen_cli.result import JobResult, SilentSink
    from imagegen_cli.saving import JobRecorder
    from imagegen_cli.store.writer import ImageWriter, OutputSpec

    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: run with --tiny to check the script on a CPU")
    device, dtype = ("cpu", torch.float32) if args.tiny else ("cuda", torch.bfloat16)
    size = 128 if args.tiny else 1024
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    pipe = build(TINY if args.tiny else FULL, device, dtype)
    kwargs = {"prompt": "a lighthouse", "height": size, "width": size, "num_inference_steps": 8, "guidance_scale": 0.0}

    def plain() -> None:
        pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(0))

    out = Path("/tmp/imagegen-gpu-bench")
    results: dict[str, list[float]] = {}

    def imagegen_runner(compile_model: bool) -> Any:
        request = GenerationRequest(
            prompt="a lighthouse", provider="local", model="bench", size=Size(size, size), steps=8, guidance=0.0, seed=0
        )
        source = ModelSource("bench", "memory", "ZImagePipeline", None)
        plan = build_local_plan(request, source, LocalOptions(device=device, compile=compile_model))
        spec = OutputSpec.from_args(
            str(out), default_dir=None, template=None, fmt=None, overwrite=False, metadata=True, n=1
        )
        result = JobResult("local", "bench", 1)
        writer = ImageWriter(spec, prompt="x", provider="local", model="bench", n=1)
        run = LocalRun(plan, writer, JobRecorder(result, None, SilentSink()), SilentSink())
        placement = Placement(device, "bf16" if device == "cuda" else "fp32", dtype)
        place(torch, pipe, plan, placement, result.notes)
        return lambda: run._generate(torch, pipe, placement, "bench")

    for name, make in (
        ("plain diffusers loop", lambda: plain),
        ("imagegen eager", lambda: imagegen_runner(False)),
        ("imagegen --compile", lambda: imagegen_runner(True)),
    ):
        step = make()
        step()  # warm-up (and compilation)
        sync()
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - start)
        results[name] = times
    base = statistics.median(results["plain diffusers loop"])
    for name, times in results.items():
        median = statistics.median(times)
        print(f"{name:<22} {median:7.3f} s per {size}x{size} image, 8 steps   ({median / base:4.2f}x plain)")


if __name__ == "__main__":
    main()
