"""``build_gallery`` on a folder of small images: the first build against a rebuild from the thumbnail cache.

Makes COUNT (default 2,000) SIDExSIDE PNGs (default 64), each with imagegen's record in an iTXt chunk as the
writer embeds it,
in a temporary folder, with a temporary cache directory (XDG_CACHE_HOME) so no user cache is read or filled.
Then, in this process: one first build (every file read, decoded, thumbnailed, cached) and ROUNDS rebuilds
(every file only hashed, thumbnails and records read from the cache). Prints the seconds of each, the median
rebuild, the ratio first/rebuild, and the page's size. Target: a rebuild of 10,000 images in under 10 s on the
2-core development machine. The ratio grows with the images' size: a rebuild only hashes the bytes, while a
first build decodes them (64x64 PNGs are cheap to decode; try SIDE 1024 with a smaller COUNT).

Run: PYTHONPATH=. .venv/bin/python bench/gallery.py [COUNT] [ROUNDS] [SIDE]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_images(folder: Path, count: int, side: int) -> None:
    from PIL import Image, PngImagePlugin

    from imagegen_cli.meta import ImageMeta
    from imagegen_cli.store.metadata import png_texts

    for n in range(count):
        record = ImageMeta(
            prompt=f"a red fox number {n} in the snow, golden hour",
            provider="local",
            model="tiny",
            seed=n,
            width=side,
            height=side,
            created="2026-12-05T10:00:00Z",
        ).to_record()
        info = PngImagePlugin.PngInfo()
        for key, text in png_texts(record):
            info.add_itxt(key, text)
        # Distinct pixels in each (every file hashes differently, as real images do), noisy enough for a real size.
        color = (n % 251, (n * 7) % 253, (n * 13) % 255)
        image = Image.blend(
            Image.new("RGB", (side, side), color), Image.effect_noise((side, side), 40).convert("RGB"), 0.3
        )
        image.putpixel((n % side, (n // side) % side), (255, 255, 255))
        image.save(folder / f"{n:06d}.png", pnginfo=info)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    side = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    with tempfile.TemporaryDirectory(prefix="imagegen-gallery-bench-") as temp:
        base = Path(temp)
        os.environ["XDG_CACHE_HOME"] = str(base / "cache")
        folder = base / "images"
        folder.mkdir()
        started = time.perf_counter()
        make_images(folder, count, side)
        print(f"made {count} {side}x{side} images in {time.perf_counter() - started:.1f} s", flush=True)

        from imagegen_cli.gallery import build_gallery

        out = folder / "index.html"
        started = time.perf_counter()
        first = build_gallery([folder], out)
        first_s = time.perf_counter() - started
        assert first.images == count and first.cached == 0, first
        print(f"first build: {first_s:.2f} s ({first.images} images, page {out.stat().st_size / 1e6:.1f} MB)")
        rebuilds = []
        for _ in range(rounds):
            started = time.perf_counter()
            again = build_gallery([folder], out)
            rebuilds.append(time.perf_counter() - started)
            assert again.cached == count, again
        median = statistics.median(rebuilds)
        print("rebuilds:    " + ", ".join(f"{seconds:.2f} s" for seconds in rebuilds) + f" (median {median:.2f} s)")
        print(f"ratio first/rebuild: {first_s / median:.1f}x; per image: rebuild {median / count * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
