"""PNG compression levels 1-6 on 1024x1024 renders: encode time against file size, to pick the knee.

Local pipelines encode each image once; the level chosen (``PNG_COMPRESS_LEVEL`` in store/writer.py)
trades CPU per image for bytes on disk. The renders are tests/imagesamples.py's photo-like images
(smooth gradients, soft shapes, texture, grain), plus a smoother variant without the grain, closer to
a clean diffusion render.

Run: PYTHONPATH=. .venv/bin/python bench/png_levels.py [REPEAT]
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageFilter  # noqa: E402

from tests.imagesamples import photo_like  # noqa: E402


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    renders: dict[str, list[Image.Image]] = {
        "photo-like": [photo_like(1024, seed) for seed in range(3)],
        "smooth": [photo_like(1024, seed).filter(ImageFilter.GaussianBlur(1.5)) for seed in range(3)],
    }
    for name, images in renders.items():
        print(f"{name} renders, 1024x1024 RGB, {len(images)} images x {repeat} (median encode time, mean size):")
        times: dict[int, list[float]] = {level: [] for level in range(1, 7)}
        sizes: dict[int, list[int]] = {level: [] for level in range(1, 7)}
        for _ in range(repeat):
            for img in images:
                for level in range(1, 7):  # levels interleaved: machine noise hits each alike
                    buffer = io.BytesIO()
                    start = time.perf_counter()
                    img.save(buffer, "PNG", compress_level=level)
                    times[level].append(time.perf_counter() - start)
                    sizes[level].append(len(buffer.getvalue()))
        base_time, base_size = statistics.median(times[1]), statistics.mean(sizes[1])
        for level in range(1, 7):
            median, size = statistics.median(times[level]), statistics.mean(sizes[level])
            print(
                f"  level {level}: {median * 1000:6.1f} ms  {size / 1e6:5.2f} MB"
                f"  ({median / base_time:4.2f}x the time, {size / base_size:4.2f}x the size of level 1)"
            )


if __name__ == "__main__":
    main()
