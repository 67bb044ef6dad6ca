"""Recognising what a file is from its magic bytes, to name it in messages and pick its parser."""

from __future__ import annotations

import re

from imagegen_cli.store.containers.png import PNG_SIGNATURE

_SNIFF: tuple[tuple[bytes, str], ...] = (  # magic bytes at the start of the file
    (PNG_SIGNATURE, "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"%!PS-Adobe-3.0 EPSF", "EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"%!PS", "PostScript"),
    (b"%PDF-", "PDF"),
    (b"8BPS", "PSD"),
    (b"qoif", "QOI"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"v/1\x01", "OpenEXR"),
    (b"#?RADIANCE", "HDR"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x1f\x8b", "gzip"),
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
    for magic, name in _SNIFF:
        if head.startswith(magic):
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
