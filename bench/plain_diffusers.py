"""The baseline: the same generation as imagegen's, written as a plain diffusers script.

Usage: python bench/plain_diffusers.py PIPELINE_DIR OUT_DIR N SEED [--size 64] [--steps 4] [--dtype fp32]
       [--device cpu]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from diffusers import DiffusionPipeline


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("out", type=Path)
    parser.add_argument("n", type=int)
    parser.add_argument("seed", type=int)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    pipe = DiffusionPipeline.from_pretrained(args.source, dtype=dtype).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    generators = [torch.Generator("cpu").manual_seed(args.seed + i) for i in range(args.n)]
    images = pipe(
        "a lighthouse",
        num_images_per_prompt=args.n,
        generator=generators,
        num_inference_steps=args.steps,
        guidance_scale=0.0,
        height=args.size,
        width=args.size,
    ).images
    for index, image in enumerate(images, 1):
        image.save(args.out / f"plain-{index}.png")


if __name__ == "__main__":
    main()
