"""The two containers metadata goes into as a comment: GIF89a (a comment extension) and SVG 1.1 (an XML comment)."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from imagegen_cli.store.containers.layout import ContainerError, Layout, Metadata, Pieces, check_size


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
        check_size("GIF", width, height)
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
