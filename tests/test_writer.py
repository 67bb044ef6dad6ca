"""The image writer: image data kept byte for byte, metadata readable by Pillow and exiftool, formats,
refusals that name what arrived, file naming, placement without hard links, stale temporary files."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import struct
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import ExifTags, Image

import imagegen_cli.store.placement as placement_module
import imagegen_cli.store.writer as writer_module
from imagegen_cli.errors import DownloadError, UsageError
from imagegen_cli.meta import ImageMeta
from imagegen_cli.store.writer import ImageWriter, OutputSpec, SavedImage
from tests.fakegateway import FakeGateway
from tests.imagesamples import EPS, SVG, animated_gif, encode, frames_of, photo_like, pixels

META: dict[str, Any] = {
    "prompt": "a lighthouse at dusk -- ünïcode 灯塔",
    "negative_prompt": "blur",
    "seed": 42,
    "model": "test-model",
    "provider": "test",
    "generator": "imagegen test",
}
EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(
    EXIFTOOL is None, reason="exiftool not installed (Debian: apt-get install libimage-exiftool-perl)"
)


def make_writer(
    out: Path, *, fmt: str | None = None, metadata: bool = True, template: str | None = None
) -> ImageWriter:
    spec = OutputSpec.from_args(
        str(out), default_dir=None, template=template, fmt=fmt, overwrite=False, metadata=metadata, n=1
    )
    return ImageWriter(spec, prompt=META["prompt"], provider="test", model="test-model", n=1)


def save(out: Path, data: bytes, **kwargs: Any) -> tuple[SavedImage, bytes]:
    saved = make_writer(out, **kwargs).save_bytes(data, index=1, seed=42, meta=ImageMeta.from_record(META))
    return saved, Path(saved.path).read_bytes()


# ------------------------------------------------------------- independent readers of the image data
def png_idat(data: bytes) -> bytes:
    pos, parts = 8, []
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        if data[pos + 4 : pos + 8] == b"IDAT":
            parts.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    return b"".join(parts)


def jpeg_entropy_coded(data: bytes) -> bytes:
    """Everything from the first SOS marker on (the scans, and any tables between progressive scans)."""
    pos = 2
    while data[pos + 1] != 0xDA:
        (length,) = struct.unpack_from(">H", data, pos + 2)
        pos += 2 + length
    return data[pos:]


def jpeg_segments(data: bytes) -> list[bytes]:
    """The marker segments before the first scan."""
    pos, segments = 2, []
    while data[pos + 1] != 0xDA:
        (length,) = struct.unpack_from(">H", data, pos + 2)
        segments.append(data[pos : pos + 2 + length])
        pos += 2 + length
    return segments


def webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    pos, chunks = 12, []
    while pos + 8 <= len(data):
        kind, size = struct.unpack_from("<4sI", data, pos)
        chunks.append((kind, data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (size & 1)
    return chunks


def webp_bitstream(data: bytes) -> list[tuple[bytes, bytes]]:
    return [(kind, payload) for kind, payload in webp_chunks(data) if kind in (b"VP8 ", b"VP8L", b"ALPH", b"ANMF")]


def exiftool(path: str | Path, *tags: str) -> dict[str, Any]:
    assert EXIFTOOL is not None
    proc = subprocess.run(
        [EXIFTOOL, "-j", "-G1", "-a", *tags, str(path)], capture_output=True, text=True, check=True, timeout=60
    )
    result: dict[str, Any] = json.loads(proc.stdout)[0]
    return result


# ------------------------------------------------------------- image data kept, metadata added
SOURCES = {
    # Encoder settings unlike the writer's own, so a decode and re-encode could never give the same bytes.
    "png": ("PNG", {"compress_level": 9}),
    "png-palette": ("PNG", {"bits": 4}),
    "jpeg": ("JPEG", {"quality": 80}),
    "jpeg-progressive": ("JPEG", {"quality": 70, "progressive": True}),
    "webp-lossy": ("WEBP", {"quality": 70}),
    "webp-lossless": ("WEBP", {"lossless": True}),
    "webp-alpha": ("WEBP", {"quality": 60}),
}


def source_image(name: str) -> bytes:
    fmt, options = SOURCES[name]
    img = photo_like(160, seed=len(name))
    if name == "png-palette":
        img = img.quantize(16)
    if name == "webp-alpha":
        img = img.convert("RGBA")
        img.putalpha(Image.linear_gradient("L").resize(img.size))
    return encode(img, fmt, **options)


def image_data(data: bytes) -> Any:
    if data.startswith(b"\x89PNG"):
        return png_idat(data)
    if data.startswith(b"\xff\xd8"):
        return jpeg_entropy_coded(data)
    return webp_bitstream(data)


@pytest.mark.parametrize("name", list(SOURCES))
def test_answers_keep_their_image_data_byte_for_byte(name: str, tmp_path: Path) -> None:
    received = source_image(name)
    saved, written = save(tmp_path / "out", received)
    assert image_data(written) == image_data(received)
    assert pixels(written) == pixels(received)
    assert saved.fmt == name.split("-", maxsplit=1)[0] and (saved.width, saved.height) == (160, 160)
    with Image.open(saved.path) as img:
        if img.format == "PNG":
            assert img.text["parameters"].startswith(META["prompt"] + "\nNegative prompt: blur\n")
            record = json.loads(img.text["imagegen"])
        else:
            exif = img.getexif()
            record = json.loads(exif[ExifTags.Base.ImageDescription])
            comment = exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment]
            assert comment.startswith(b"UNICODE\0") and "Seed: 42" in comment[8:].decode("utf-16-be")
            assert b"<imagegen:parameters>" in img.info["xmp"]
    assert record["prompt"] == META["prompt"] and record["seed"] == 42 and record["width"] == 160


def test_jpeg_keeps_every_other_segment_in_place(tmp_path: Path) -> None:
    received = source_image("jpeg")
    _, written = save(tmp_path / "out", received)
    before, after = jpeg_segments(received), jpeg_segments(written)
    assert after[0] == before[0] and after[0][4:9] == b"JFIF\0"  # JFIF's APP0 stays first
    assert [s for s in after if s[1] != 0xE1] == before  # tables and frame header untouched
    assert next(s[4:10] for s in after if s[1] == 0xE1) == b"Exif\0\0"


def test_webp_gets_a_vp8x_header_with_its_flags(tmp_path: Path) -> None:
    for name, alpha in (("webp-lossy", False), ("webp-alpha", True)):
        _, written = save(tmp_path / name, source_image(name))
        chunks = webp_chunks(written)
        assert chunks[0][0] == b"VP8X"
        flags = chunks[0][1][0]
        assert flags & 0x08 and flags & 0x04  # EXIF, XMP
        assert bool(flags & 0x10) == alpha
        assert [kind for kind, _ in chunks][-2:] == [b"EXIF", b"XMP "]
        assert struct.unpack_from("<I", written, 4)[0] == len(written) - 8


def test_existing_exif_is_kept_and_ours_added(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.Make] = "Gateway Camera"
    received = encode(photo_like(64), "JPEG", quality=90, exif=exif)
    _, written = save(tmp_path / "out", received)
    with Image.open(io.BytesIO(written)) as img:
        merged = img.getexif()
    assert merged[ExifTags.Base.Orientation] == 6 and merged[ExifTags.Base.Make] == "Gateway Camera"
    assert json.loads(merged[ExifTags.Base.ImageDescription])["seed"] == 42
    assert sum(1 for s in jpeg_segments(written) if s[4:10] == b"Exif\0\0") == 1
    assert jpeg_entropy_coded(written) == jpeg_entropy_coded(received)


def test_no_metadata_saves_the_exact_bytes(tmp_path: Path) -> None:
    for name in ("png", "jpeg", "webp-lossy"):
        received = source_image(name)
        _, written = save(tmp_path / name, received, metadata=False)
        assert written == received


def test_answers_are_never_re_encoded_and_a_conversion_encodes_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encodes: list[str] = []
    original = Image.Image.save

    def counting_save(self: Image.Image, fp: Any, format: str | None = None, **params: Any) -> None:
        encodes.append(str(format))
        original(self, fp, format, **params)

    received = {name: source_image(name) for name in ("png", "jpeg", "webp-lossy")}
    monkeypatch.setattr(Image.Image, "save", counting_save)
    for name, data in received.items():
        save(tmp_path / name, data)
    assert encodes == []
    saved, written = save(tmp_path / "converted", received["png"], fmt="jpeg")
    assert encodes == ["JPEG"] and saved.fmt == "jpeg" and written[:3] == b"\xff\xd8\xff"


@needs_exiftool
@pytest.mark.parametrize("name", ["png", "jpeg", "webp-lossy", "gif"])
def test_exiftool_reads_the_metadata(name: str, tmp_path: Path) -> None:
    received = animated_gif() if name == "gif" else source_image(name)
    saved, _ = save(tmp_path / "out", received)
    tags = exiftool(saved.path)
    assert "Warning" not in str(tags.get("ExifTool:Warning", ""))
    if name == "png":
        assert tags["PNG:Parameters"].startswith(META["prompt"] + "\nNegative prompt: blur")
        assert json.loads(tags["PNG:Imagegen"])["prompt"] == META["prompt"]
    elif name == "gif":
        comment = tags["File:Comment"]
        assert comment.startswith(META["prompt"])
        assert json.loads(comment.rsplit("\nimagegen: ", 1)[1])["seed"] == 42
    else:
        assert json.loads(tags["IFD0:ImageDescription"])["prompt"] == META["prompt"]
        assert "Seed: 42" in tags["ExifIFD:UserComment"]
        assert tags["XMP-dc:Description"].startswith(META["prompt"])
        assert json.loads(tags["XMP-imagegen:Parameters"])["prompt"] == META["prompt"]


def test_a_long_prompt_fits_a_jpeg_through_extended_xmp(tmp_path: Path) -> None:
    prompt = "一只在雪中的狐狸, " * 4000  # 40,000 characters: about 120 kB of UTF-8, over a JPEG segment
    writer = make_writer(tmp_path / "out")
    received = source_image("jpeg")
    saved = writer.save_bytes(received, index=1, seed=1, meta=ImageMeta.from_record({**META, "prompt": prompt}))
    written = Path(saved.path).read_bytes()
    assert jpeg_entropy_coded(written) == jpeg_entropy_coded(received)
    with Image.open(saved.path) as img:
        img.load()
        record = json.loads(img.getexif()[ExifTags.Base.ImageDescription])
    assert record["truncated"] and prompt.startswith(record["prompt"].rstrip("…"))
    if EXIFTOOL:  # exiftool joins the extension's portions (and calls a value this long "binary": -b)
        proc = subprocess.run(
            [EXIFTOOL, "-b", "-XMP-imagegen:Parameters", saved.path], capture_output=True, check=True, timeout=60
        )
        assert json.loads(proc.stdout)["prompt"] == prompt


# ------------------------------------------------------------- what arrives: refusals, GIF, SVG
def test_an_eps_answer_never_reaches_ghostscript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import EpsImagePlugin

    calls: list[object] = []

    def ghostscript(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise OSError("Ghostscript must not run")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    with pytest.raises(DownloadError) as caught:
        save(tmp_path / "out", EPS)
    assert calls == []
    assert "image 1 is not a valid image: EPS" in caught.value.message
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (encode(Image.new("RGB", (8, 8)), "TIFF"), "TIFF"),
        (encode(Image.new("RGB", (8, 8)), "BMP"), "BMP"),
        (SVG, "SVG"),
        (b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", "HTML"),
        (b'{"error": "quota"}', "JSON"),
    ],
    ids=["tiff", "bmp", "svg", "html", "json"],
)
def test_other_formats_are_refused_by_name(data: bytes, name: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as caught:
        save(tmp_path / "out", data)
    assert f"image 1 is not a valid image: {name} (" in caught.value.message
    assert "\n" not in caught.value.message
    assert list((tmp_path / "out").iterdir()) == []


def test_an_undecodable_download_names_the_image_not_the_temporary_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for data, what in (
        (b"<html>oops</html>", "HTML (17 bytes)"),
        (source_image("png")[:3000], "PNG IDAT chunk runs past the end of the file (truncated)"),
    ):
        writer = make_writer(out)
        handle, tmp = writer.temp_file()
        with handle:
            handle.write(data)
        with pytest.raises(DownloadError) as caught:
            writer.finish(tmp, index=3, seed=None, meta=ImageMeta.from_record(META))
        message = caught.value.message
        assert "image 3 is not a valid image" in message and what in message
        assert ".part" not in message and str(out) not in message
    assert list(out.iterdir()) == []


def test_a_pixels_bomb_is_refused_from_the_header(tmp_path: Path) -> None:
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    ihdr = struct.pack(">I", 13) + b"IHDR" + header + struct.pack(">I", zlib.crc32(b"IHDR" + header))
    idat_payload = zlib.compress(b"\0" * 100)
    idat = struct.pack(">I", len(idat_payload)) + b"IDAT" + idat_payload
    idat += struct.pack(">I", zlib.crc32(b"IDAT" + idat_payload))
    bomb = b"\x89PNG\r\n\x1a\n" + ihdr + idat + b"\0\0\0\0IEND\xaeB`\x82"
    with pytest.raises(DownloadError, match="possible decompression bomb"):
        save(tmp_path / "out", bomb)


def test_an_animation_bomb_is_refused_from_the_headers(tmp_path: Path) -> None:
    # 120 one-pixel frames on a 1000x1000 canvas: a few kB that would decode to 120 megapixels.
    one = encode(Image.new("P", (1, 1)), "GIF")
    table = 3 << ((one[10] & 7) + 1)
    frame = one[13 + table : -1]
    bomb = one[:6] + struct.pack("<HH", 1000, 1000) + one[10 : 13 + table] + frame * 120 + b";"
    with pytest.raises(DownloadError, match=r"is 120 frames of 1000x1000, over the 100 MP limit"):
        save(tmp_path / "out", bomb)


def test_an_animated_gif_stays_an_animated_gif(tmp_path: Path) -> None:
    received = animated_gif(frames=3)
    saved, written = save(tmp_path / "out", received)
    assert saved.fmt == "gif" and saved.path.endswith(".gif") and saved.notes == ()
    assert frames_of(written) == frames_of(received) and len(frames_of(written)) == 3
    with Image.open(saved.path) as img:
        assert "imagegen: " in img.info["comment"].decode()


def test_converting_an_animated_gif_says_so(tmp_path: Path) -> None:
    received = animated_gif(frames=3)
    saved, written = save(tmp_path / "png", received, fmt="png")
    assert saved.path.endswith(".png") and frames_of(written) == frames_of(received)  # an APNG
    assert saved.notes == ("image 1: animated GIF (3 frames) converted to animated PNG (--format png)",)
    saved, written = save(tmp_path / "jpeg", received, fmt="jpeg")
    assert saved.notes == ("image 1: animated GIF (3 frames) saved as JPEG (--format jpeg): first frame only",)


def test_gif_output_carries_a_comment(tmp_path: Path) -> None:
    saved, written = save(tmp_path / "out", source_image("png"), fmt="gif")
    assert saved.fmt == "gif" and written[:6] == b"GIF89a"
    with Image.open(saved.path) as img:
        comment = img.info["comment"].decode()
    assert json.loads(comment.rsplit("\nimagegen: ", 1)[1])["prompt"] == META["prompt"]


def test_svg_answers_are_kept_with_a_comment(tmp_path: Path) -> None:
    saved, written = save(tmp_path / "out", SVG, fmt="svg")
    assert saved.fmt == "svg" and saved.path.endswith(".svg") and (saved.width, saved.height) == (320, 200)
    root = ET.fromstring(written)
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and len(root) == 2
    (comment,) = re.findall(rb"<!-- imagegen: (.*?) -->", written)
    record = json.loads(comment)
    assert record["prompt"] == META["prompt"] and "--" in record["prompt"]  # the hyphens survive, escaped
    assert written.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<!-- imagegen: ')
    bare, _ = save(tmp_path / "bare", SVG, fmt="svg", metadata=False)
    assert Path(bare.path).read_bytes() == SVG


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (source_image("png"), "SVG output was asked for, but PNG"),
        (b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"/>', "XML root element is <html>"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><rect></svg>', "not well-formed"),
        (
            b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaa">]>'
            b'<svg xmlns="http://www.w3.org/2000/svg">&a;</svg>',
            "declares XML entities",
        ),
    ],
    ids=["png", "xhtml", "broken", "entities"],
)
def test_svg_output_refuses_anything_else(data: bytes, message: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as caught:
        save(tmp_path / "out", data, fmt="svg")
    assert message in caught.value.message
    assert list((tmp_path / "out").iterdir()) == []


def test_an_svg_root_after_a_long_prologue_is_still_svg(tmp_path: Path) -> None:
    long = b'<?xml version="1.0"?>\n<!-- ' + b"x" * 5000 + b" -->\n" + SVG.split(b"?>\n", 1)[1]
    saved, written = save(tmp_path / "out", long, fmt="svg")
    assert saved.fmt == "svg" and (saved.width, saved.height) == (320, 200) and b"imagegen: " in written


def test_local_svg_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="local pipelines draw raster images"):
        make_writer(tmp_path, fmt="svg").save_pil(
            Image.new("RGB", (8, 8)), index=1, seed=1, meta=ImageMeta.from_record(META)
        )


def test_local_renders_use_the_fast_png_level(tmp_path: Path) -> None:
    saved = make_writer(tmp_path).save_pil(photo_like(128), index=1, seed=1, meta=ImageMeta.from_record(META))
    idat = png_idat(Path(saved.path).read_bytes())
    # zlib's header records the level class: FLEVEL 1 is "fast" (levels 2-5); Pillow's default 6 is 2.
    assert idat[1] >> 6 == 1 and writer_module.PNG_COMPRESS_LEVEL == 4
    with Image.open(saved.path) as img:
        assert json.loads(img.text["imagegen"])["seed"] == 42


# ------------------------------------------------------------- -o and --name
def test_output_file_names_for_every_format(tmp_path: Path) -> None:
    for name, fmt in (("result.gif", "gif"), ("art.svg", "svg"), ("a.JPEG", "jpeg"), ("b.webp", "webp")):
        spec = OutputSpec.from_args(
            str(tmp_path / name), default_dir=None, template=None, fmt=None, overwrite=False, metadata=True, n=1
        )
        assert spec.file_name == name and spec.fmt == fmt and spec.directory == tmp_path.resolve()
        assert not (tmp_path / name).exists()


def test_an_unsupported_image_extension_is_a_usage_error(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    result = cli("generate", "cat", "-m", "openai:dall-e-2", "-o", str(tmp_path / "cat.tiff"))
    assert result.returncode == 2
    assert "imagegen cannot write TIFF files (cat.tiff)" in result.stderr and ".gif or .svg" in result.stderr
    assert not (tmp_path / "cat.tiff").exists() and gateway.requests == []
    assert cli("generate", "cat", "-m", "openai:dall-e-2", "--name", "x.heic").returncode == 2
    # An extension that names no image format is still a directory.
    spec = OutputSpec.from_args(
        str(tmp_path / "v1.2"), default_dir=None, template=None, fmt=None, overwrite=False, metadata=True, n=1
    )
    assert spec.file_name is None and spec.directory.name == "v1.2"


def test_a_name_with_an_image_extension_sets_the_format(tmp_path: Path) -> None:
    saved, written = save(tmp_path, source_image("png"), template="x.jpg")
    assert Path(saved.path).name == "x.jpg" and written[:3] == b"\xff\xd8\xff"
    saved, _ = save(tmp_path, source_image("png"), template="{seed}.jpeg")
    assert Path(saved.path).name == "42.jpeg" and saved.fmt == "jpeg"
    saved, _ = save(tmp_path, source_image("png"), template="shot.{ext}")
    assert Path(saved.path).name == "shot.png"
    with pytest.raises(UsageError, match=r"--format png conflicts with the --name template x\.jpg"):
        make_writer(tmp_path, template="x.jpg", fmt="png")


def test_a_name_with_an_image_extension_through_the_cli(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "cat", "-m", "openai:dall-e-2", "--name", "cat.jpg")
    assert result.returncode == 0, result.stderr
    assert Path(result.lines[0]).name == "cat.jpg"
    with Image.open(result.lines[0]) as img:
        assert img.format == "JPEG"


# ------------------------------------------------------------- placement and temporary files
def test_only_a_free_name_is_journalled_before_placing(tmp_path: Path) -> None:
    """A taken name is skipped before the journal hears of it: a crash there could not adopt another file."""
    for expected in ("same.png", "same-2.png", "same-3.png"):
        writer = make_writer(tmp_path, template="same")
        told: list[tuple[int, str]] = []
        writer.on_target = lambda index, path: told.append((index, Path(path).name))
        saved = writer.save_bytes(source_image("png"), index=1, seed=1, meta=ImageMeta.from_record(META))
        assert told == [(1, expected)] and Path(saved.path).name == expected


def race_two_writers(out: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Two writers save to one file name at once, on a filesystem without hard links."""

    def no_link(source: object, target: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    barrier = threading.Barrier(2, timeout=3)
    real_rename = os.rename

    def rename_together(source: Any, target: Any) -> None:
        # Both writers reach the rename before either has made it: the window a check-then-rename loses.
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        real_rename(source, target)

    monkeypatch.setattr(os, "link", no_link)
    monkeypatch.setattr(os, "rename", rename_together)
    writers = [make_writer(out, template="same") for _ in range(2)]
    saved: list[SavedImage] = []
    errors: list[BaseException] = []

    def run(writer: ImageWriter, data: bytes) -> None:
        try:
            saved.append(writer.save_bytes(data, index=1, seed=1, meta=ImageMeta.from_record(META)))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(w, d)) for w, d in zip(writers, [source_image("png")] * 2, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return sorted(Path(s.path) for s in saved)


def test_no_hard_links_two_writers_never_overwrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = race_two_writers(tmp_path / "out", monkeypatch)
    assert [p.name for p in paths] == ["same-2.png", "same.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["same-2.png", "same.png"]


def test_no_hard_links_and_no_renameat2_still_never_overwrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(placement_module, "_renameat2", None)  # an old kernel or libc: the O_EXCL claim
    paths = race_two_writers(tmp_path / "out", monkeypatch)
    assert [p.name for p in paths] == ["same-2.png", "same.png"]
    for path in paths:
        assert pixels(path.read_bytes())[1] == (160, 160)  # whole images, not the empty claims


def test_stale_part_files_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "30"])
    try:
        hour_ago = time.time() - 3700
        files = {
            "dead-old": out / f".imagegen-{dead.pid}-abc.part",
            "legacy-old": out / ".imagegen-k3j2h1.part",
            "live-old": out / f".imagegen-{live.pid}-abc.part",
            "dead-new": out / f".imagegen-{dead.pid}-new.part",
            "other": out / "keep.part",
        }
        for name, path in files.items():
            path.write_bytes(b"partial")
            if name != "dead-new":
                os.utime(path, (hour_ago, hour_ago))
        make_writer(out)
        # A dead owner's file goes at once, however new; a live owner's stays, however old.
        assert sorted(p.name for p in out.iterdir()) == sorted(files[k].name for k in ("live-old", "other"))
    finally:
        live.kill()
        live.wait()


def test_temporary_files_carry_the_owner_pid(tmp_path: Path) -> None:
    handle, path = make_writer(tmp_path).temp_file()
    handle.close()
    assert path.name.startswith(f".imagegen-{os.getpid()}-") and path.name.endswith(".part")


@pytest.mark.parametrize(("fmt", "ext"), [("JPEG", ".jpg"), ("WEBP", ".webp")])
def test_a_download_through_the_cli_is_kept_as_sent(
    fmt: str, ext: str, cli, gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = encode(photo_like(96, seed=5), fmt, quality=75)

    def store_image(width: int, height: int) -> str:  # the CDN serves a photo-like image, not a flat one
        gateway.images["photo"] = sent
        return f"{gateway.image_origin}/files/photo.{fmt.lower()}"

    monkeypatch.setattr(gateway, "_store_image", store_image)
    result = cli("generate", "koi", "-m", "modelmax:imagen-3", "--size", "64x64")
    assert result.returncode == 0, result.stderr
    written = Path(result.lines[0]).read_bytes()
    assert result.lines[0].endswith(ext) and image_data(written) == image_data(sent)
    with Image.open(result.lines[0]) as img:
        assert json.loads(img.getexif()[ExifTags.Base.ImageDescription])["prompt"] == "koi"


def test_saving_to_stdout_writes_the_tagged_image(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    spec = OutputSpec.from_args("-", default_dir=None, template=None, fmt=None, overwrite=False, metadata=True, n=1)
    saved = ImageWriter(spec, prompt="p", provider="test", model="m", n=1).save_bytes(
        source_image("png"), index=1, seed=1, meta=ImageMeta.from_record(META)
    )
    assert saved.path == "-"
    written = capsysbinary.readouterr().out
    assert png_idat(written) == png_idat(source_image("png"))
    with Image.open(io.BytesIO(written)) as img:
        assert json.loads(img.text["imagegen"])["prompt"] == META["prompt"]


def test_a_folder_moved_while_a_download_part_is_being_made_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window between creating a part and checking it: the folder moves; the part follows it, is removed, and
    the download goes to the folder made again where the run said (a race seen once in twenty suite runs)."""
    out, moved = tmp_path / "out", tmp_path / "moved"
    writer = make_writer(out)
    lock = placement_module.lock

    def lock_then_move(fd: int) -> Any:
        taken = lock(fd)
        if not moved.exists():
            out.rename(moved)
        return taken

    monkeypatch.setattr(placement_module, "lock", lock_then_move)
    handle, part = writer.temp_file()
    monkeypatch.setattr(placement_module, "lock", lock)
    with handle:
        handle.write(encode(Image.new("RGB", (8, 8)), "PNG"))
    saved = writer.finish(part, index=1, seed=1, meta=ImageMeta.from_record(META))
    assert Path(saved.path).parent == out and Path(saved.path).is_file()
    assert any("moved or removed during the run" in note for note in saved.notes)
    assert [p.name for p in moved.iterdir()] == [] and [p.name for p in out.iterdir()] == [Path(saved.path).name]
