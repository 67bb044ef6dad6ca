"""PNG and APNG (ISO/IEC 15948, W3C PNG 3rd edition): chunks with CRCs checked, text chunks added."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from imagegen_cli.store.containers.layout import ContainerError, Layout, Metadata, Pieces, check_size

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, data and the CRC-32 of type + data."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(payload, zlib.crc32(kind)))


def png_text_chunk(keyword: str, text: str) -> bytes:
    """``tEXt`` when the text is Latin-1, else an uncompressed UTF-8 ``iTXt`` (as PNG requires)."""
    key = keyword.encode("latin-1")
    if not 1 <= len(key) <= 79 or b"\x00" in key:
        raise ContainerError(f"invalid PNG text keyword {keyword!r}")
    try:
        return png_chunk(b"tEXt", key + b"\x00" + text.encode("latin-1"))
    except UnicodeEncodeError:
        return png_chunk(b"iTXt", key + b"\x00\x00\x00\x00\x00" + text.encode("utf-8"))


@dataclass
class PngChunk:
    """Where one chunk lies: ``start`` is its length field, ``end`` is past its CRC."""

    kind: bytes
    start: int
    end: int

    @property
    def payload(self) -> slice:
        return slice(self.start + 8, self.end - 4)


@dataclass
class PngLayout(Layout):
    """A PNG (or APNG): every chunk's place, CRCs checked."""

    chunks: list[PngChunk] = field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes) -> PngLayout:
        if not data.startswith(PNG_SIGNATURE):
            raise ContainerError("not a PNG file (bad signature)")
        chunks: list[PngChunk] = []
        pos = len(PNG_SIGNATURE)
        size = len(data)
        while True:
            if pos + 12 > size:
                raise ContainerError("PNG file ends before its IEND chunk (truncated)")
            length, kind = struct.unpack_from(">I4s", data, pos)
            if length > 0x7FFFFFFF or not kind.isalpha():
                raise ContainerError(f"PNG chunk at byte {pos} is malformed")
            end = pos + 12 + length
            if end > size:
                raise ContainerError(f"PNG {kind.decode('latin-1')} chunk runs past the end of the file (truncated)")
            (crc,) = struct.unpack_from(">I", data, end - 4)
            if zlib.crc32(memoryview(data)[pos + 4 : end - 4]) != crc:
                raise ContainerError(f"PNG {kind.decode('latin-1')} chunk at byte {pos} has a bad CRC")
            chunks.append(PngChunk(kind, pos, end))
            pos = end
            if kind == b"IEND":
                break
        if chunks[0].kind != b"IHDR" or chunks[0].end - chunks[0].start != 25:
            raise ContainerError("PNG file does not start with an IHDR chunk")
        if not any(chunk.kind == b"IDAT" for chunk in chunks):
            raise ContainerError("PNG file has no image data (no IDAT chunk)")
        width, height = struct.unpack_from(">II", data, chunks[0].start + 8)
        check_size("PNG", width, height)
        frames = 1
        for chunk in chunks:
            if chunk.kind == b"acTL" and chunk.end - chunk.start >= 20:
                (frames,) = struct.unpack_from(">I", data, chunk.start + 8)
                break
        return cls("png", data, width, height, max(1, frames), chunks=chunks)

    def text_keyword(self, chunk: PngChunk) -> str | None:
        if chunk.kind not in (b"tEXt", b"zTXt", b"iTXt"):
            return None
        payload = self.data[chunk.payload]
        return payload.split(b"\x00", 1)[0].decode("latin-1")

    def prove_pixels(self, step: int = 1 << 20) -> None:
        """Inflate the pixel data in bounded steps and check it is all there, without holding the image.

        The proof that a still PNG is whole (every row present, the zlib stream complete) at a few megabytes of
        memory, where decoding a 99-megapixel image would take hundreds.
        """
        depth, colour, _, _, interlace = struct.unpack_from(">BBBBB", self.data, self.chunks[0].start + 16)
        channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
        if channels is None or depth not in (1, 2, 4, 8, 16):
            raise ContainerError(f"PNG colour type {colour} at bit depth {depth} is not valid")
        passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
        expected = 0
        for x0, y0, dx, dy in passes:
            columns = (self.width - x0 + dx - 1) // dx
            rows = (self.height - y0 + dy - 1) // dy
            if columns > 0 and rows > 0:
                expected += rows * (1 + (columns * channels * depth + 7) // 8)
        inflater = zlib.decompressobj()
        total = 0
        try:
            for chunk in self.chunks:
                if chunk.kind != b"IDAT":
                    continue
                pending = memoryview(self.data)[chunk.payload]
                while pending:
                    total += len(inflater.decompress(pending, step))
                    pending = memoryview(inflater.unconsumed_tail)
                    if total > expected:
                        raise ContainerError("PNG image data is longer than its size says")
            while not inflater.eof and (out := inflater.decompress(b"", step)):
                total += len(out)
        except zlib.error as exc:
            raise ContainerError(f"PNG image data does not inflate ({exc})") from None
        if not inflater.eof or total != expected:
            raise ContainerError(f"PNG image data is incomplete ({total} of {expected} bytes)")

    def idat(self) -> bytes:
        """The concatenated IDAT payloads: the compressed pixels."""
        return b"".join(self.data[chunk.payload] for chunk in self.chunks if chunk.kind == b"IDAT")

    def with_metadata(self, metadata: Metadata) -> Pieces:
        replaced = {key for key, _ in metadata.texts}
        new = b"".join(png_text_chunk(key, text) for key, text in metadata.texts)
        pieces: Pieces = []
        view = memoryview(self.data)
        run_start = 0
        inserted = False
        for chunk in self.chunks:
            drop = self.text_keyword(chunk) in replaced
            if chunk.kind in (b"IDAT", b"fcTL") and not inserted:
                # Text before the image data (and before an APNG's first frame control, which belongs
                # with its IDAT): readers that stop at IDAT (Pillow's open) still see it.
                pieces.append(view[run_start : chunk.start])
                pieces.append(new)
                run_start = chunk.start
                inserted = True
            if drop:
                pieces.append(view[run_start : chunk.start])
                run_start = chunk.end
        pieces.append(view[run_start:])
        return [piece for piece in pieces if len(piece)]


# Adam7 passes: (first column, first row, column step, row step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
