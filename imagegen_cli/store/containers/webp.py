"""WebP (RFC 9649, the RIFF container): simple and extended files, EXIF and XMP chunks added."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from imagegen_cli.store.containers.layout import EXIF_HEADER, ContainerError, Layout, Metadata, Pieces, check_size

_VP8X_ICC, _VP8X_ALPHA, _VP8X_EXIF, _VP8X_XMP, _VP8X_ANIM = 0x20, 0x10, 0x08, 0x04, 0x02
_WEBP_IMAGE_CHUNKS = {b"VP8X", b"ICCP", b"ANIM", b"ANMF", b"ALPH", b"VP8 ", b"VP8L"}


@dataclass
class RiffChunk:
    """One RIFF chunk: ``start`` is its FourCC, ``end`` is past its data and pad byte."""

    kind: bytes
    start: int
    size: int

    @property
    def end(self) -> int:
        return self.start + 8 + self.size + (self.size & 1)

    @property
    def payload(self) -> slice:
        return slice(self.start + 8, self.start + 8 + self.size)


@dataclass
class WebpLayout(Layout):
    """A WebP: simple (one VP8 or VP8L chunk) or extended (VP8X first)."""

    chunks: list[RiffChunk] = field(default_factory=list)
    riff_end: int = 0
    alpha: bool = False

    @classmethod
    def parse(cls, data: bytes) -> WebpLayout:
        if len(data) < 20 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
            raise ContainerError("not a WebP file (no RIFF WEBP header)")
        (riff_size,) = struct.unpack_from("<I", data, 4)
        riff_end = 8 + riff_size
        if riff_end > len(data):
            raise ContainerError("WebP file is shorter than its RIFF header says (truncated)")
        chunks: list[RiffChunk] = []
        pos = 12
        while pos < riff_end:
            if pos + 8 > riff_end:
                raise ContainerError(f"WebP chunk header at byte {pos} is cut short")
            kind, size = struct.unpack_from("<4sI", data, pos)
            chunk = RiffChunk(kind, pos, size)
            if chunk.start + 8 + size > riff_end:
                raise ContainerError(f"WebP {kind.decode('latin-1')!r} chunk runs past the end of the file")
            chunks.append(chunk)
            pos = min(chunk.end, riff_end)  # a missing final pad byte is tolerated, as libwebp does
        if not chunks:
            raise ContainerError("WebP file has no chunks")
        first = chunks[0]
        payload = data[first.payload]
        alpha = False
        frames = 1
        if first.kind == b"VP8X":
            if first.size < 10:
                raise ContainerError("WebP VP8X chunk is too short")
            width = 1 + int.from_bytes(payload[4:7], "little")
            height = 1 + int.from_bytes(payload[7:10], "little")
            alpha = bool(payload[0] & _VP8X_ALPHA)
            frames = sum(1 for chunk in chunks if chunk.kind == b"ANMF") or 1
            if not any(chunk.kind in (b"VP8 ", b"VP8L", b"ANMF") for chunk in chunks):
                raise ContainerError("WebP file has no image data")
        elif first.kind == b"VP8 ":
            width, height = _vp8_size(payload)
        elif first.kind == b"VP8L":
            width, height, alpha = _vp8l_size(payload)
        else:
            raise ContainerError(f"WebP file starts with an unknown {first.kind.decode('latin-1')!r} chunk")
        check_size("WebP", width, height)
        exif = next((data[c.payload] for c in chunks if c.kind == b"EXIF"), None)
        if exif is not None and exif.startswith(EXIF_HEADER):
            exif = exif[len(EXIF_HEADER) :]
        return cls("webp", data, width, height, frames, exif, chunks=chunks, riff_end=riff_end, alpha=alpha)

    def _whole(self, view: memoryview, chunk: RiffChunk) -> Pieces:
        """A chunk as stored, plus the pad byte a final odd-sized chunk may lack (others now follow it)."""
        if chunk.end > self.riff_end:
            return [view[chunk.start : self.riff_end], b"\x00"]
        return [view[chunk.start : chunk.end]]

    def bitstream(self) -> bytes:
        """The image chunks (VP8, VP8L, ALPH, ANMF) exactly as stored, headers included."""
        kinds = {b"VP8 ", b"VP8L", b"ALPH", b"ANMF"}
        return b"".join(self.data[c.start : c.end] for c in self.chunks if c.kind in kinds)

    def with_metadata(self, metadata: Metadata) -> Pieces:
        view = memoryview(self.data)
        first = self.chunks[0]
        drop = set()
        if metadata.exif is not None:
            drop.add(b"EXIF")
        if metadata.xmp is not None:
            drop.add(b"XMP ")
        if first.kind == b"VP8X":
            flags = self.data[first.start + 8]
            kept = [c for c in self.chunks[1:] if c.kind not in drop]
        else:
            # Simple WebP: the metadata chunks need the extended layout, so a VP8X header comes first.
            flags = _VP8X_ALPHA if self.alpha else 0
            kept = [c for c in self.chunks if c.kind not in drop]
        if metadata.exif is not None:
            flags |= _VP8X_EXIF
        if metadata.xmp is not None:
            flags |= _VP8X_XMP
        vp8x = bytearray(self.data[first.payload] if first.kind == b"VP8X" else bytes(10))
        vp8x[0] = flags
        vp8x[4:7] = (self.width - 1).to_bytes(3, "little")
        vp8x[7:10] = (self.height - 1).to_bytes(3, "little")
        new: list[bytes] = []
        if metadata.exif is not None:
            new.append(riff_chunk(b"EXIF", metadata.exif))
        if metadata.xmp is not None:
            new.append(riff_chunk(b"XMP ", metadata.xmp))
        # EXIF and XMP follow the image data and precede unknown chunks (RFC 9649 section 2.7).
        split = len(kept)
        while split and kept[split - 1].kind not in _WEBP_IMAGE_CHUNKS:
            split -= 1
        body: Pieces = [riff_chunk(b"VP8X", bytes(vp8x))]
        for chunk in kept[:split]:
            body.extend(self._whole(view, chunk))
        body.extend(new)
        for chunk in kept[split:]:
            body.extend(self._whole(view, chunk))
        riff_size = 4 + sum(len(piece) for piece in body)
        header = b"RIFF" + struct.pack("<I", riff_size) + b"WEBP"
        tail = view[self.riff_end :]
        return [header, *body, *([tail] if len(tail) else [])]


def riff_chunk(kind: bytes, payload: bytes) -> bytes:
    """One RIFF chunk, padded to an even size."""
    return kind + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) & 1 else b"")


def _vp8_size(payload: bytes) -> tuple[int, int]:
    if len(payload) < 10 or payload[3:6] != b"\x9d\x01\x2a" or payload[0] & 1:
        raise ContainerError("WebP VP8 bitstream does not start with a key frame")
    width, height = struct.unpack_from("<HH", payload, 6)
    return width & 0x3FFF, height & 0x3FFF


def _vp8l_size(payload: bytes) -> tuple[int, int, bool]:
    if len(payload) < 5 or payload[0] != 0x2F:
        raise ContainerError("WebP VP8L bitstream has a bad signature")
    (bits,) = struct.unpack_from("<I", payload, 1)
    if bits >> 29:
        raise ContainerError("WebP VP8L bitstream has an unknown version")
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool((bits >> 28) & 1)
