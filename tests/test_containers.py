"""Fuzzing the chunk and segment writer (``store/containers/``) with hypothesis.

Any valid PNG, JPEG, WebP or GIF, whatever its mode, encoder options, frames and existing metadata,
stays decodable and pixel-identical once metadata is inserted, and the metadata reads back. Malformed
input (truncated, bit-flipped, spliced, random) is either refused with one line and nothing written, or
(when the damage happens to leave a valid image) saved with exactly the pixels Pillow decodes from it.
"""

from __future__ import annotations

import io
import json
import random
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image, PngImagePlugin

from imagegen_cli.errors import DownloadError
from imagegen_cli.meta import ImageMeta
from imagegen_cli.store.containers import ContainerError, GifLayout, JpegLayout, PngLayout, WebpLayout, parse, sniff
from imagegen_cli.store.writer import ImageWriter, OutputSpec
from tests.imagesamples import frames_of

VALID = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MALFORMED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODES = {
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"],
    "JPEG": ["L", "RGB", "CMYK"],
    "WEBP": ["RGB", "RGBA"],
    "GIF": ["L", "P", "RGB"],
}


def random_image(mode: str, size: tuple[int, int], seed: int) -> Image.Image:
    rng = random.Random(seed)
    base = Image.frombytes("RGBA", size, rng.randbytes(size[0] * size[1] * 4))
    if mode == "I;16":
        return base.convert("L").convert("I;16")
    if mode == "P":
        return base.convert("RGB").quantize(rng.choice([2, 16, 256]))
    return base.convert(mode)


@st.composite
def valid_images(draw: st.DrawFn) -> bytes:
    fmt = draw(st.sampled_from(list(MODES)))
    mode = draw(st.sampled_from(MODES[fmt]))
    size = (draw(st.integers(1, 40)), draw(st.integers(1, 40)))
    frames = draw(st.integers(1, 3)) if fmt in ("GIF", "WEBP", "PNG") and mode not in ("1", "I;16") else 1
    images = [random_image(mode, size, draw(st.integers(0, 2**32))) for _ in range(frames)]
    options: dict[str, Any] = {}
    if frames > 1:
        options.update(save_all=True, append_images=images[1:], duration=50, loop=0)
    if fmt == "PNG":
        options["compress_level"] = draw(st.integers(0, 9))
        options["optimize"] = draw(st.booleans())
        if draw(st.booleans()):
            info = PngImagePlugin.PngInfo()
            info.add_text(draw(st.sampled_from(["parameters", "Comment", "imagegen"])), draw(st.text(max_size=30)))
            options["pnginfo"] = info
    elif fmt == "JPEG":
        options["quality"] = draw(st.integers(1, 100))
        options["progressive"] = draw(st.booleans())
        options["optimize"] = draw(st.booleans())
        if mode != "L":
            options["subsampling"] = draw(st.integers(0, 2))
        if draw(st.booleans()):
            exif = Image.Exif()
            exif[ExifTags.Base.Orientation] = draw(st.integers(1, 8))
            options["exif"] = exif
    elif fmt == "WEBP":
        options["lossless"] = draw(st.booleans())
        options["quality"] = draw(st.integers(0, 100))
        if draw(st.booleans()):
            exif = Image.Exif()
            exif[ExifTags.Base.Make] = "gateway"
            options["exif"] = exif
    elif fmt == "GIF" and draw(st.booleans()):
        options["comment"] = draw(st.binary(min_size=1, max_size=300))
    buffer = io.BytesIO()
    images[0].save(buffer, fmt, **options)
    return buffer.getvalue()


metas = st.fixed_dictionaries(
    {
        "prompt": st.text(max_size=400),
        "negative_prompt": st.text(max_size=40),
        "seed": st.integers(0, 2**63),
        "model": st.text(max_size=20),
    }
)


def writer_in(directory: str, metadata: bool = True) -> ImageWriter:
    spec = OutputSpec.from_args(
        directory, default_dir=None, template="{uid}", fmt=None, overwrite=False, metadata=metadata, n=1
    )
    return ImageWriter(spec, prompt="fuzz", provider="fuzz", model="m", n=1)


def compressed_data(data: bytes) -> bytes:
    layout = parse(data, {"PNG": "png", "JPEG": "jpeg", "WebP": "webp", "GIF": "gif"}[sniff(data)])
    if isinstance(layout, PngLayout):
        return layout.idat()
    if isinstance(layout, JpegLayout):
        return layout.scans()
    if isinstance(layout, WebpLayout):
        return layout.bitstream()
    return layout.frame_data()  # type: ignore[attr-defined,no-any-return]


@VALID
@given(valid_images(), metas)
def test_valid_images_stay_pixel_identical_with_metadata(data: bytes, meta: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        saved = writer_in(directory).save_bytes(data, index=1, seed=meta["seed"], meta=ImageMeta.from_record(meta))
        written = Path(saved.path).read_bytes()
        assert sorted(p.name for p in Path(directory).iterdir()) == [Path(saved.path).name]
    assert frames_of(written) == frames_of(data)
    assert compressed_data(written) == compressed_data(data)
    with Image.open(io.BytesIO(written)) as img:
        if img.format == "PNG":
            record = json.loads(img.text["imagegen"])
        elif img.format == "GIF":
            # Ours is the first comment extension; Pillow joins it with any the image came with.
            (ours, *_) = GifLayout.parse(written).comment_texts()
            assert img.info["comment"].startswith(ours)
            record = json.loads(ours.decode().rsplit("\nimagegen: ", 1)[1])
        else:
            record = json.loads(img.getexif()[ExifTags.Base.ImageDescription])
    assert record.get("truncated") or record["prompt"] == meta["prompt"]
    assert record["seed"] == meta["seed"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_images(), st.sampled_from(["png", "jpeg", "webp", "gif"]))
def test_any_valid_image_converts_once_with_metadata(data: bytes, fmt: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        spec = OutputSpec.from_args(
            directory, default_dir=None, template="{uid}", fmt=fmt, overwrite=False, metadata=True, n=1
        )
        writer = ImageWriter(spec, prompt="fuzz", provider="fuzz", model="m", n=1)
        saved = writer.save_bytes(data, index=1, seed=7, meta=ImageMeta.from_record({"prompt": "convert me"}))
        written = Path(saved.path).read_bytes()
    with Image.open(io.BytesIO(data)) as source, Image.open(io.BytesIO(written)) as img:
        img.load()
        assert img.size == source.size and img.format == {"jpeg": "JPEG"}.get(fmt, fmt.upper())
    assert compressed_data(written)  # and it parses as a well-formed container


def mutate(data: bytes, how: str, at: float, blob: bytes) -> bytes:
    pos = int(at * len(data))
    if how == "truncate":
        return data[:pos]
    if how == "flip":
        index = min(pos, len(data) - 1)
        return data[:index] + bytes([data[index] ^ (blob[0] if blob and blob[0] else 0x5A)]) + data[index + 1 :]
    if how == "insert":
        return data[:pos] + blob + data[pos:]
    if how == "overwrite":
        return data[:pos] + blob + data[pos + len(blob) :]
    if how == "splice":  # a block repeated: duplicated chunks, segments, frames
        return data[:pos] + data[pos // 2 : pos] + data[pos:]
    return blob  # random bytes


@MALFORMED
@given(
    valid_images(),
    st.sampled_from(["truncate", "flip", "insert", "overwrite", "splice", "random"]),
    st.floats(0, 1),
    st.binary(min_size=1, max_size=64),
)
def test_malformed_images_are_refused_in_one_line_and_never_written(
    data: bytes, how: str, at: float, blob: bytes
) -> None:
    broken = mutate(data, how, at, blob)
    assume(broken != data)
    with tempfile.TemporaryDirectory() as directory:
        try:
            saved = writer_in(directory).save_bytes(
                broken, index=1, seed=None, meta=ImageMeta.from_record({"prompt": "x"})
            )
        except DownloadError as exc:
            assert "\n" not in exc.message and "image 1 is " in exc.message
            assert list(Path(directory).iterdir()) == []  # no image, no .part file
            return
        written = Path(saved.path).read_bytes()
    # Accepted: the damage left a well-formed image (a flipped bit in pixel data, say). It must decode
    # to exactly what Pillow decodes from the input.
    assert frames_of(written) == frames_of(broken)


@MALFORMED
@given(st.binary(max_size=2000), st.sampled_from(["png", "jpeg", "webp", "gif"]))
def test_the_parsers_refuse_garbage_with_one_line(data: bytes, fmt: str) -> None:
    try:
        parse(data, fmt)
    except ContainerError as exc:
        assert "\n" not in str(exc) and str(exc)


def test_gif87a_becomes_gif89a_for_its_comment() -> None:
    buffer = io.BytesIO()
    Image.new("L", (4, 4), 7).save(buffer, "GIF")
    data = buffer.getvalue()
    assert data[:6] == b"GIF87a"
    with tempfile.TemporaryDirectory() as directory:
        saved = writer_in(directory).save_bytes(data, index=1, seed=1, meta=ImageMeta.from_record({"prompt": "x"}))
        written = Path(saved.path).read_bytes()
    assert written[:6] == b"GIF89a" and frames_of(written) == frames_of(data)
