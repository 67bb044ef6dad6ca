"""JPEG (ITU T.81) marker segments, with Exif 2.32 APP1 and XMP part 3 (standard and extended XMP)."""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass, field

from imagegen_cli.store.containers.layout import EXIF_HEADER, ContainerError, Layout, Metadata, Pieces, check_size

XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXTENSION_HEADER = b"http://ns.adobe.com/xmp/extension/\x00"
JPEG_SEGMENT_MAX = 65533  # a segment's length field counts itself: 65535 - 2 bytes of payload
XMP_STANDARD_MAX = JPEG_SEGMENT_MAX - len(XMP_HEADER)
_XMP_EXTENSION_PART = 65400  # XMP part 3's recommended portion size for extended XMP
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # a marker: not byte stuffing, not a restart marker


@dataclass
class JpegSegment:
    """One marker segment: ``start`` is its 0xFF, ``end`` is past its payload."""

    marker: int
    start: int
    end: int

    def payload(self, data: bytes) -> bytes:
        return data[self.start + 4 : self.end]


@dataclass
class JpegLayout(Layout):
    """A JPEG: the marker segments before the first scan, and where the scans and EOI lie."""

    segments: list[JpegSegment] = field(default_factory=list)
    scan_start: int = 0  # the first SOS marker
    end: int = 0  # past EOI

    @classmethod
    def parse(cls, data: bytes) -> JpegLayout:
        if not data.startswith(b"\xff\xd8"):
            raise ContainerError("not a JPEG file (no SOI marker)")
        segments: list[JpegSegment] = []
        size = len(data)
        pos = 2
        width = height = 0
        scan_start = 0
        while True:
            if pos + 2 > size:
                raise ContainerError("JPEG file ends before its EOI marker (truncated)")
            if data[pos] != 0xFF:
                raise ContainerError(f"JPEG marker expected at byte {pos}")
            marker_at = pos
            while pos < size and data[pos] == 0xFF:  # fill bytes may precede a marker
                pos += 1
            if pos >= size:
                raise ContainerError("JPEG file ends before its EOI marker (truncated)")
            marker = data[pos]
            pos += 1
            if marker == 0xD9:
                break
            if marker in {0xD8, 0x00}:
                raise ContainerError(f"JPEG file has a stray marker 0x{marker:02X} at byte {marker_at}")
            if 0xD0 <= marker <= 0xD7 or marker == 0x01:
                continue  # standalone markers carry no length
            if pos + 2 > size:
                raise ContainerError("JPEG file ends inside a marker segment (truncated)")
            (length,) = struct.unpack_from(">H", data, pos)
            end = pos + length
            if length < 2 or end > size:
                raise ContainerError(f"JPEG segment 0x{marker:02X} at byte {marker_at} runs past the end of the file")
            if marker in _SOF_MARKERS:
                if length < 8:
                    raise ContainerError("JPEG frame header is too short")
                height, width = struct.unpack_from(">HH", data, pos + 3)
            if marker == 0xDA:
                if not width:
                    raise ContainerError("JPEG scan comes before any frame header")
                scan_start = scan_start or marker_at
                found = _SCAN_END.search(data, end)
                if found is None:
                    raise ContainerError("JPEG file ends inside its image data (truncated)")
                pos = found.start()
                continue
            if not scan_start:
                segments.append(JpegSegment(marker, marker_at, end))
            pos = end
        if not scan_start:
            raise ContainerError("JPEG file has no image data (no scan)")
        check_size("JPEG", width, height)
        exif = next(
            (s.payload(data)[6:] for s in segments if s.marker == 0xE1 and s.payload(data).startswith(EXIF_HEADER)),
            None,
        )
        return cls("jpeg", data, width, height, exif=exif, segments=segments, scan_start=scan_start, end=pos)

    def scans(self) -> bytes:
        """From the first SOS to EOI: the entropy-coded data (and the tables between progressive scans)."""
        return self.data[self.scan_start : self.end]

    def with_metadata(self, metadata: Metadata) -> Pieces:
        new: list[bytes] = []
        if metadata.exif is not None:
            new.append(jpeg_segment(0xE1, EXIF_HEADER + metadata.exif))
        if metadata.xmp_extended is not None:
            new.extend(jpeg_extended_xmp(*metadata.xmp_extended))
        elif metadata.xmp is not None:
            new.append(jpeg_segment(0xE1, XMP_HEADER + metadata.xmp))
        # After SOI and any JFIF APP0: JFIF wants APP0 first, Exif wants APP1 as early as it can be.
        insert_at = 2
        for segment in self.segments:
            if segment.marker == 0xE0 and segment.start == insert_at:
                insert_at = segment.end
        view = memoryview(self.data)
        pieces: Pieces = [view[:insert_at], *new]
        run = insert_at  # only APP1 segments are dropped, so each one lies past the APP0 run
        for segment in self.segments:
            payload_head = self.data[segment.start + 4 : segment.start + 4 + len(XMP_EXTENSION_HEADER)]
            ours = segment.marker == 0xE1 and (
                (metadata.exif is not None and payload_head.startswith(EXIF_HEADER))
                or (
                    (metadata.xmp is not None or metadata.xmp_extended is not None)
                    and payload_head.startswith((XMP_HEADER, XMP_EXTENSION_HEADER))
                )
            )
            if ours:
                pieces.append(view[run : segment.start])
                run = segment.end
        pieces.append(view[run:])
        return [piece for piece in pieces if len(piece)]


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    """One JPEG marker segment; refuses a payload that cannot fit the 16-bit length."""
    if len(payload) > JPEG_SEGMENT_MAX:
        raise ContainerError(f"JPEG segment payload of {len(payload)} bytes is over {JPEG_SEGMENT_MAX}")
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def xmp_guid(extension: bytes) -> str:
    """The extended-XMP GUID: the MD5 of the extension packet, 32 upper-case hex digits (XMP part 3)."""
    return hashlib.md5(extension, usedforsecurity=False).hexdigest().upper()


def jpeg_extended_xmp(standard: bytes, extension: bytes) -> list[bytes]:
    """The standard XMP segment then the extension in 65,400-byte portions, each with GUID, size, offset."""
    guid = xmp_guid(extension).encode()
    segments = [jpeg_segment(0xE1, XMP_HEADER + standard)]
    for offset in range(0, len(extension), _XMP_EXTENSION_PART):
        part = extension[offset : offset + _XMP_EXTENSION_PART]
        header = XMP_EXTENSION_HEADER + guid + struct.pack(">II", len(extension), offset)
        segments.append(jpeg_segment(0xE1, header + part))
    return segments
