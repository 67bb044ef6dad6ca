"""Sample images for the writer's tests and benchmarks: photo-like content, animations, other formats."""

from __future__ import annotations

import functools
import io
import random
from typing import Any

from PIL import Image, ImageChops, ImageDraw, ImageFilter


@functools.lru_cache(maxsize=8)
def photo_like(size: int = 1024, seed: int = 0) -> Image.Image:
    """A deterministic image with what a render has: smooth gradients, soft shapes, texture and grain.

    At 1024x1024 it is a 1.8 MB PNG (compress level 6): like a photo, most of its bytes are fine detail,
    so the PNG cost of saving one is realistic (a flat test image compresses to nothing).
    """
    rng = random.Random(seed)

    def noise(side: int) -> Image.Image:
        return Image.frombytes("L", (side, side), rng.randbytes(side * side))

    top = tuple(rng.randrange(256) for _ in range(3))
    bottom = tuple(rng.randrange(256) for _ in range(3))
    img = Image.composite(
        Image.new("RGB", (size, size), bottom),
        Image.new("RGB", (size, size), top),
        Image.linear_gradient("L").resize((size, size)),
    )
    draw = ImageDraw.Draw(img)
    for _ in range(40):
        x, y, r = rng.randrange(size), rng.randrange(size), rng.randrange(8, max(9, size // 4))
        color = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r // 2, x + r, y + r // 2), fill=color)
        else:
            draw.polygon([(x + rng.randrange(-r, r), y + rng.randrange(-r, r)) for _ in range(5)], fill=color)
    img = img.filter(ImageFilter.GaussianBlur(2))
    texture = Image.blend(
        noise(max(1, size // 8)).resize((size, size), Image.Resampling.BICUBIC),
        noise(max(1, size // 2)).resize((size, size), Image.Resampling.BICUBIC),
        0.5,
    )
    mask = noise(6).resize((size, size), Image.Resampling.BICUBIC).point(lambda v: max(0, v - 96) * 2)
    textured = Image.merge(
        "RGB", [ImageChops.add(ImageChops.multiply(band, texture), band, 2.0, -64) for band in img.split()]
    )
    img = Image.composite(textured, img, mask)
    grain = Image.merge("RGB", [noise(size) for _ in range(3)]).point(lambda v: 128 + (v - 128) // 24)
    return ImageChops.add(img, grain, 1.0, -128)


def encode(img: Image.Image, fmt: str, **options: Any) -> bytes:
    """``img`` in ``fmt`` (a Pillow format name) as bytes."""
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def animated_gif(frames: int = 3, size: int = 32) -> bytes:
    """A looping GIF whose frames differ (so a one-frame save is visible)."""
    images = [
        Image.new("RGB", (size, size), (60 * i % 256, 200 - 50 * i % 256, 40 + 70 * i % 256)) for i in range(frames)
    ]
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=80, loop=0)


def frames_of(data: bytes) -> list[bytes]:
    """Every frame's RGBA pixels."""
    with Image.open(io.BytesIO(data)) as img:
        out = []
        for index in range(getattr(img, "n_frames", 1)):
            img.seek(index)
            out.append(img.convert("RGBA").tobytes())
        return out


def pixels(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    """Mode, size and raw pixels of the first frame, decoded by Pillow."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.mode, img.size, img.tobytes()


EPS = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\n"
    b"newpath 0 0 moveto 10 10 lineto stroke showpage\n%%EOF\n"
)
SVG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="320" height="200px" viewBox="0 0 32 20">'
    b'<rect width="32" height="20" fill="#c84"/><circle cx="16" cy="10" r="6" fill="#48c"/></svg>\n'
)
