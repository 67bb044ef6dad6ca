"""What every container parser shares: the :class:`Layout` it returns, the :class:`Metadata` to embed, errors.

A parser maps a container's blocks without copying them; ``Layout.with_metadata`` then returns the new file
as byte pieces (slices of the input plus the new blocks) to write in order.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIF_HEADER = b"Exif\x00\x00"  # JPEG APP1 starts with it; WebP EXIF chunks may

Pieces = list[bytes | memoryview]


class ContainerError(ValueError):
    """A file that is not a well-formed image container; the message is one line."""


@dataclass
class Layout:
    """A validated container: its format, pixel size and where its blocks are."""

    fmt: str  # png | jpeg | webp | gif
    data: bytes
    width: int
    height: int
    frames: int = 1
    exif: bytes | None = None  # the existing EXIF (TIFF bytes, without "Exif\0\0"), when there is one

    def with_metadata(self, metadata: Metadata) -> Pieces:
        """The file with ``metadata`` added (replacing any earlier imagegen or EXIF/XMP block)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Metadata:
    """What to embed; each container takes the parts it has a place for."""

    texts: tuple[tuple[str, str], ...] = ()  # PNG text chunks: (keyword, text)
    exif: bytes | None = None  # TIFF bytes (JPEG APP1, WebP EXIF)
    xmp: bytes | None = None  # the full XMP packet (WebP; JPEG when it fits one segment)
    xmp_extended: tuple[bytes, bytes] | None = None  # JPEG when it does not: (standard packet, extension)
    comment: str | None = None  # GIF comment extension


def check_size(fmt: str, width: int, height: int) -> None:
    """Refuse a header whose pixel size is empty."""
    if width <= 0 or height <= 0:
        raise ContainerError(f"{fmt} header gives an empty size {width}x{height}")
