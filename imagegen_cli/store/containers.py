"""Image containers at the byte level: recognise, validate and add metadata without touching pixels.

A gateway's image is saved as it arrived: its compressed image data (PNG ``IDAT``, the JPEG scans, the
WebP ``VP8``/``VP8L`` bitstream, the GIF frames) is copied byte for byte, and only metadata blocks are
added or replaced around it. Each parser walks the whole container and refuses anything malformed with a
one-line :class:`ContainerError`, so a broken file is never written. Every ``with_metadata`` returns the
new file as a list of byte pieces (slices of the input plus the new blocks) to write in order.

Specifications: PNG (ISO/IEC 15948, W3C PNG 3rd edition), JPEG (ITU T.81) with Exif 2.32 APP1 and XMP
part 3 (standard and extended XMP), WebP (RFC 9649, the RIFF container), GIF89a, SVG 1.1.
"""

from __future__ import annotations

import hashlib
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXIF_HEADER = b"Exif\x00\x00"
XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXTENSION_HEADER = b"http://ns.adobe.com/xmp/extension/\x00"
JPEG_SEGMENT_MAX = 65533  # a segment's length field counts itself: 65535 - 2 bytes of payload
XMP_STANDARD_MAX = JPEG_SEGMENT_MAX - len(XMP_HEADER)
_XMP_EXTENSION_PART = 65400  # XMP part 3's recommended portion size for extended XMP

Pieces = list[bytes | memoryview]


class ContainerError(ValueError):
    """A file that is not a well-formed image container; the message is one line."""


# ---------------------------------------------------------------------------------------------- sniffing
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


# ---------------------------------------------------------------------------------------------- layouts
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


def parse(data: bytes, fmt: str) -> Layout:
    """Validate ``data`` as a ``fmt`` container (png, jpeg, webp, gif) and map its blocks."""
    parsers = {"png": PngLayout.parse, "jpeg": JpegLayout.parse, "webp": WebpLayout.parse, "gif": GifLayout.parse}
    return parsers[fmt](data)


def _check_size(fmt: str, width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ContainerError(f"{fmt} header gives an empty size {width}x{height}")


def _slices(data: bytes, keep: Sequence[tuple[int, int]]) -> Pieces:
    view = memoryview(data)
    return [view[start:end] for start, end in keep if end > start]


# ---------------------------------------------------------------------------------------------- PNG
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
        _check_size("PNG", width, height)
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

    def texts(self) -> dict[str, str]:
        """The uncompressed text chunks (tEXt and iTXt), keyword → text; for tests and readers."""
        found: dict[str, str] = {}
        for chunk in self.chunks:
            payload = self.data[chunk.payload]
            if chunk.kind == b"tEXt":
                key, _, text = payload.partition(b"\x00")
                found[key.decode("latin-1")] = text.decode("latin-1")
            elif chunk.kind == b"iTXt":
                key, _, rest = payload.partition(b"\x00")
                if rest[:1] == b"\x00":  # uncompressed
                    _lang, _, rest = rest[2:].partition(b"\x00")
                    _translated, _, text = rest.partition(b"\x00")
                    found[key.decode("latin-1")] = text.decode("utf-8")
        return found

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


# ---------------------------------------------------------------------------------------------- JPEG
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
        _check_size("JPEG", width, height)
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
        keep: list[tuple[int, int]] = []
        run_start = 2
        # After SOI and any JFIF APP0: JFIF wants APP0 first, Exif wants APP1 as early as it can be.
        insert_at = 2
        for segment in self.segments:
            if segment.marker == 0xE0 and segment.start == insert_at:
                insert_at = segment.end
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
                keep.append((run_start, segment.start))
                run_start = segment.end
        keep.append((run_start, len(self.data)))
        pieces: Pieces = [memoryview(self.data)[0:2]]
        view = memoryview(self.data)
        placed = False
        for start, end in keep:
            if not placed and start <= insert_at <= end:
                pieces.append(view[start:insert_at])
                pieces.extend(new)
                pieces.append(view[insert_at:end])
                placed = True
            else:
                pieces.append(view[start:end])
        if not placed:  # the APP0 run was itself removed: put the new segments right after SOI
            pieces[1:1] = new
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


# ---------------------------------------------------------------------------------------------- WebP
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
        _check_size("WebP", width, height)
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


# ---------------------------------------------------------------------------------------------- GIF
@dataclass
class GifLayout(Layout):
    """A GIF: the header and global colour table, then the blocks up to the trailer."""

    blocks_start: int = 0
    comments: list[tuple[int, int]] = field(default_factory=list)  # existing comment extensions
    end: int = 0  # past the trailer

    @classmethod
    def parse(cls, data: bytes) -> GifLayout:
        if data[:6] not in (b"GIF87a", b"GIF89a") or len(data) < 13:
            raise ContainerError("not a GIF file (bad header)")
        width, height, packed = struct.unpack_from("<HHB", data, 6)
        _check_size("GIF", width, height)
        pos = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
        blocks_start = pos
        size = len(data)
        frames = 0
        comments: list[tuple[int, int]] = []
        while True:
            if pos >= size:
                raise ContainerError("GIF file ends before its trailer (truncated)")
            introducer = data[pos]
            if introducer == 0x3B:
                pos += 1
                break
            if introducer == 0x21:
                if pos + 2 > size:
                    raise ContainerError("GIF file ends inside an extension (truncated)")
                start = pos
                pos = _skip_sub_blocks(data, pos + 2)
                if data[start + 1] == 0xFE:
                    comments.append((start, pos))
            elif introducer == 0x2C:
                if pos + 10 > size:
                    raise ContainerError("GIF file ends inside an image descriptor (truncated)")
                packed = data[pos + 9]
                pos += 10 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
                if pos >= size or not 1 <= data[pos] <= 11:
                    raise ContainerError("GIF image data has a bad LZW code size")
                pos = _skip_sub_blocks(data, pos + 1)
                frames += 1
            else:
                raise ContainerError(f"GIF file has an unknown block 0x{introducer:02X} at byte {pos}")
        if not frames:
            raise ContainerError("GIF file has no image")
        return cls("gif", data, width, height, frames, blocks_start=blocks_start, comments=comments, end=pos)

    def comment_texts(self) -> list[bytes]:
        """The payload of each comment extension."""
        texts = []
        for start, end in self.comments:
            texts.append(b"".join(_sub_blocks(self.data, start + 2, end)))
        return texts

    def frame_data(self) -> bytes:
        """Everything from the first block on, minus comment extensions: frames, their tables, controls."""
        keep, run = [], self.blocks_start
        for start, end in self.comments:
            keep.append(self.data[run:start])
            run = end
        keep.append(self.data[run : self.end])
        return b"".join(keep)

    def with_metadata(self, metadata: Metadata) -> Pieces:
        if metadata.comment is None:
            return [self.data]
        view = memoryview(self.data)
        payload = metadata.comment.encode("utf-8")
        comment = b"\x21\xfe" + b"".join(
            bytes([len(payload[i : i + 255])]) + payload[i : i + 255] for i in range(0, len(payload), 255)
        )
        # Comment extensions are GIF89a; the header's version is the only byte outside the blocks we change.
        return [b"GIF89a", view[6 : self.blocks_start], comment + b"\x00", view[self.blocks_start :]]


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    size = len(data)
    while True:
        if pos >= size:
            raise ContainerError("GIF file ends inside a data block (truncated)")
        length = data[pos]
        pos += 1 + length
        if length == 0:
            return pos


def _sub_blocks(data: bytes, pos: int, end: int) -> list[bytes]:
    parts = []
    while pos < end and data[pos]:
        parts.append(data[pos + 1 : pos + 1 + data[pos]])
        pos += 1 + data[pos]
    return parts


# ---------------------------------------------------------------------------------------------- SVG
SVG_NAMESPACE = "http://www.w3.org/2000/svg"
_XML_DECLARATION = re.compile(rb"\A(\xef\xbb\xbf)?\s*<\?xml[^>]*\?>")
_LENGTH = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*(px)?\s*")


@dataclass
class SvgDocument:
    """A validated SVG document and its pixel size where the root element gives one."""

    data: bytes
    width: int
    height: int

    def with_comment(self, comment: str | None) -> Pieces:
        """``comment`` as an XML comment in the prolog (after the XML declaration, before the root)."""
        if comment is None:
            return [self.data]
        if "--" in comment or comment.endswith("-"):
            raise ContainerError("an XML comment may not contain '--'")
        block = f"<!-- {comment} -->\n".encode()
        match = _XML_DECLARATION.match(self.data)
        at = match.end() if match else (3 if self.data.startswith(b"\xef\xbb\xbf") else 0)
        prefix = self.data[:at] + (b"\n" if match else b"")
        return [prefix, block, memoryview(self.data)[at:]]


def parse_svg(data: bytes) -> SvgDocument:
    """Check that ``data`` is an SVG document (well-formed XML, an ``svg`` root) without rendering it."""
    import xml.etree.ElementTree as ET

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ContainerError("SVG text is not UTF-8") from None
    if "<!ENTITY" in text:
        # Entity declarations are how XML bombs and external-file reads are built; no image needs them.
        raise ContainerError("SVG declares XML entities (refused)")
    try:
        # Safe without defusedxml: entity declarations are refused above, and expat loads no external DTD.
        root = ET.fromstring(text)  # noqa: S314
    except ET.ParseError as exc:
        raise ContainerError(f"SVG is not well-formed XML ({exc})") from None
    if root.tag not in ("svg", f"{{{SVG_NAMESPACE}}}svg"):
        raise ContainerError(f"XML root element is <{root.tag.rsplit('}', 1)[-1]}>, not <svg>")
    width, height = _svg_length(root.get("width")), _svg_length(root.get("height"))
    view_box = (root.get("viewBox") or "").replace(",", " ").split()
    if (not width or not height) and len(view_box) == 4:
        try:
            box_w, box_h = float(view_box[2]), float(view_box[3])
        except ValueError:
            box_w = box_h = 0.0
        if box_w > 0 and box_h > 0:
            if width and not height:
                height = round(width * box_h / box_w)
            elif height and not width:
                width = round(height * box_w / box_h)
            else:
                width, height = round(box_w), round(box_h)
    return SvgDocument(data, width, height)


def _svg_length(value: str | None) -> int:
    if value is None:
        return 0
    match = _LENGTH.fullmatch(value)
    return round(float(match[1])) if match else 0  # %, em, mm... are not pixels
