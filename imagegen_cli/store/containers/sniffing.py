"""Recognising what a file is from its magic bytes, to name it in messages and pick its parser."""

from __future__ import annotations

import re

from imagegen_cli.store.containers.png import PNG_SIGNATURE

_SNIFF: tuple[tuple[bytes, int, str], ...] = (
    (PNG_SIGNATURE, 0, "PNG"),
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"BM", 0, "BMP"),
    (b"%!PS-Adobe-3.0 EPSF", 0, "EPS"),
    (b"\xc5\xd0\xd3\xc6", 0, "EPS"),
    (b"%!PS", 0, "PostScript"),
    (b"%PDF-", 0, "PDF"),
    (b"8BPS", 0, "PSD"),
    (b"qoif", 0, "QOI"),
    (b"\xff\x0a", 0, "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", 0, "JPEG XL"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", 0, "JPEG 2000"),
    (b"\xff\x4f\xff\x51", 0, "JPEG 2000"),
    (b"\x00\x00\x01\x00", 0, "ICO"),
    (b"v/1\x01", 0, "OpenEXR"),
    (b"#?RADIANCE", 0, "HDR"),
    (b"PK\x03\x04", 0, "ZIP"),
    (b"\x1f\x8b", 0, "gzip"),
)
_FTYP_BRANDS = {
    b"avif": "AVIF",
    b"avis": "AVIF",
    b"heic": "HEIC",
    b"heix": "HEIC",
    b"hevc": "HEIC",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
}
RASTER_KINDS = {"PNG": "png", "JPEG": "jpeg", "WebP": "webp", "GIF": "gif"}


def sniff(data: bytes | memoryview) -> str:
    """A human name for what ``data`` is, from its magic bytes: ``PNG``, ``EPS``, ``HTML``, ``text``..."""
    head = bytes(data[:512])
    if not head:
        return "nothing"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(head[8:12], "ISO media (" + head[8:12].decode("latin-1").strip() + ")")
    for magic, offset, name in _SNIFF:
        if head[offset : offset + len(magic)] == magic:
            return name
    if re.match(rb"P[1-7]\s", head):
        return "PNM"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<"):
        sample = bytes(data[:4096]).lower()
        if b"<svg" in sample:
            return "SVG"
        if text.startswith((b"<!doctype html", b"<html")) or b"<body" in sample:
            return "HTML"
        return "XML"
    if text[:1] in (b"{", b"["):
        return "JSON"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut by the 512-byte window is still text
            return "unknown binary data"
    return "text"


def human_size(count: int) -> str:
    """``1.2 kB``: a byte count for messages."""
    if count < 1000:
        return f"{count} bytes"
    if count < 1_000_000:
        return f"{count / 1000:.1f} kB"
    return f"{count / 1_000_000:.1f} MB"
