"""The baseline: the same generation as imagegen's, written as a plain diffusers script.

Usage: python bench/plain_diffusers.py PIPELINE_DIR OUT_DIR N SEED
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from diffusers import DiffusionPipeline


def main() -> None:
    source, out, n, seed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    out.mkdir(parents=True, exist_ok=True)
    pipe = DiffusionPipeline.from_pretrained(source, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    generators = [torch.Generator("cpu").manual_seed(seed + i) for i in range(n)]
    images = pipe(
        "a lighthouse",
        num_images_per_prompt=n,
        generator=generators,
        num_inference_steps=4,
        guidance_scale=0.0,
        height=64,
        width=64,
    ).images
    for index, image in enumerate(images, 1):
        image.save(out / f"plain-{index}.png")


if __name__ == "__main__":
    main()
