"""Image containers at the byte level: recognise, validate and add metadata without touching pixels.

A gateway's image is saved as it arrived: its compressed image data (PNG ``IDAT``, the JPEG scans, the
WebP ``VP8``/``VP8L`` bitstream, the GIF frames) is copied byte for byte, and only metadata blocks are
added or replaced around it. Each parser walks the whole container and refuses anything malformed with a
one-line :class:`ContainerError`, so a broken file is never written. Every ``with_metadata`` returns the
new file as a list of byte pieces (slices of the input plus the new blocks) to write in order.

One module per container: ``png``, ``jpeg``, ``webp``, ``gif_svg``; ``layout`` holds what they share and
``sniffing`` recognises a file by its magic bytes. This package is the public API: import from it.
"""

from __future__ import annotations

from imagegen_cli.store.containers.gif_svg import SVG_NAMESPACE, GifLayout, SvgDocument, parse_svg
from imagegen_cli.store.containers.jpeg import (
    JPEG_SEGMENT_MAX,
    XMP_EXTENSION_HEADER,
    XMP_HEADER,
    XMP_STANDARD_MAX,
    JpegLayout,
    JpegSegment,
    jpeg_extended_xmp,
    jpeg_segment,
    xmp_guid,
)
from imagegen_cli.store.containers.layout import EXIF_HEADER, ContainerError, Layout, Metadata, Pieces
from imagegen_cli.store.containers.png import PNG_SIGNATURE, PngChunk, PngLayout, png_chunk, png_text_chunk
from imagegen_cli.store.containers.sniffing import RASTER_KINDS, human_size, sniff
from imagegen_cli.store.containers.webp import RiffChunk, WebpLayout, riff_chunk

__all__ = [
    "EXIF_HEADER",
    "JPEG_SEGMENT_MAX",
    "PNG_SIGNATURE",
    "RASTER_KINDS",
    "SVG_NAMESPACE",
    "XMP_EXTENSION_HEADER",
    "XMP_HEADER",
    "XMP_STANDARD_MAX",
    "ContainerError",
    "GifLayout",
    "JpegLayout",
    "JpegSegment",
    "Layout",
    "Metadata",
    "Pieces",
    "PngChunk",
    "PngLayout",
    "RiffChunk",
    "SvgDocument",
    "WebpLayout",
    "human_size",
    "jpeg_extended_xmp",
    "jpeg_segment",
    "parse",
    "parse_svg",
    "png_chunk",
    "png_text_chunk",
    "riff_chunk",
    "sniff",
    "xmp_guid",
]


def parse(data: bytes, fmt: str) -> Layout:
    """Validate ``data`` as a ``fmt`` container (png, jpeg, webp, gif) and map its blocks."""
    parsers = {"png": PngLayout.parse, "jpeg": JpegLayout.parse, "webp": WebpLayout.parse, "gif": GifLayout.parse}
    return parsers[fmt](data)
