"""Read back the generation record embedded in an image (imagegen's own, or A1111's ``parameters`` text)."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from typing import Any

from imagegen_cli.jsontypes import loads
from imagegen_cli.meta import ImageMeta


class NoParameters(ValueError):
    """The file holds no generation record we can read (or is not an image, or cannot be read)."""


_XMP = re.compile(rb"<imagegen:parameters>(.*?)</imagegen:parameters>", re.S)
_SVG = re.compile(rb"<!--\s*imagegen: (.*?)-->", re.S)


def read_meta(path: Path) -> ImageMeta:
    """The record embedded in ``path``, as an :class:`ImageMeta`; :class:`NoParameters` when there is none."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise NoParameters(f"cannot read {path}: {error.strerror or error}") from None
    record = _record(data)
    if record is None:
        raise NoParameters(f"{path} holds no generation parameters")
    return ImageMeta.from_record(record)


def _record(data: bytes) -> dict[str, Any] | None:
    """The imagegen JSON record in ``data``, else one parsed from A1111's text, else None."""
    head = data[:512].lstrip()
    if head.startswith((b"<?xml", b"<svg", b"<!--")):
        found = _SVG.search(data)
        return _json(found.group(1).decode("utf-8", "replace")) if found else None
    if data.startswith(_PNG):
        # PNG: the text chunks are read without decoding a pixel (Pillow's ``text`` loads the whole image, and it
        # refuses a legal image over its decompression-bomb limit before reading any chunk).
        texts = _png_texts(data)
        if "imagegen" in texts and (record := _json(texts["imagegen"])) is not None:
            return record
        if texts.get("parameters", "").strip():
            return parse_a1111(texts["parameters"])
    found = _XMP.search(data)  # JPEG and WebP: the XMP packet carries the full record
    if found:
        record = _json(unescape(found.group(1).decode("utf-8", "replace")))
        if record is not None:
            return record
    return _from_pillow(data)


_PNG = b"\x89PNG\r\n\x1a\n"
_TEXT_LIMIT = 16 << 20  # a compressed text chunk inflates to at most this much


def _png_texts(data: bytes) -> dict[str, str]:
    """The tEXt, zTXt and iTXt chunks of a PNG, by keyword (the first of each), up to the image data's end."""
    import struct
    import zlib

    texts: dict[str, str] = {}
    at = len(_PNG)
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        body = data[at + 8 : at + 8 + length]
        at += 12 + length
        if kind == b"IEND" or len(body) < length:
            break
        if kind not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        key, _, rest = body.partition(b"\0")
        try:
            if kind == b"tEXt":
                text = rest.decode("latin-1")
            elif kind == b"zTXt":
                text = zlib.decompressobj().decompress(rest[1:], _TEXT_LIMIT).decode("latin-1")
            else:
                compressed, rest = rest[0], rest[2:]
                _language, _, rest = rest.partition(b"\0")
                _translated, _, raw = rest.partition(b"\0")
                raw = zlib.decompressobj().decompress(raw, _TEXT_LIMIT) if compressed else raw
                text = raw.decode("utf-8")
        except (zlib.error, UnicodeDecodeError, IndexError):
            continue  # a damaged chunk is skipped, as a reader skips it
        texts.setdefault(key.decode("latin-1"), text)
    return texts


def _from_pillow(data: bytes) -> dict[str, Any] | None:
    import io

    from PIL import ExifTags, Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            info = dict(image.info)
            texts = dict(getattr(image, "text", {}) or {})
            exif = image.getexif()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None  # not an image Pillow reads, or one over its decompression-bomb limit
    if isinstance(texts.get("imagegen"), str):
        record = _json(texts["imagegen"])
        if record is not None:
            return record
    comment = info.get("comment")
    if isinstance(comment, bytes):
        comment = comment.decode("utf-8", "replace")
    if isinstance(comment, str):
        for line in reversed(comment.splitlines()):
            if line.startswith("imagegen: "):
                record = _json(line[len("imagegen: ") :])
                if record is not None:
                    return record
    description = exif.get(ExifTags.Base.ImageDescription)
    if isinstance(description, str):
        record = _json(description)
        if record is not None:
            return record
    parameters = texts.get("parameters") or info.get("parameters")
    if isinstance(parameters, str) and parameters.strip():
        return parse_a1111(parameters)
    return None


def _json(text: str) -> dict[str, Any] | None:
    try:
        value = loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


_FIELD = re.compile(r'\s*([^:,]+?):\s*("(?:\\.|[^"\\])*"|[^,]*)(?:,|$)')
_KEYS = {"steps": "steps", "sampler": "scheduler", "cfg scale": "guidance", "seed": "seed", "model": "model"}


def parse_a1111(text: str) -> dict[str, Any]:
    """A record from A1111's ``parameters`` text: prompt, negative prompt, then ``Key: value, ...``."""
    lines = text.strip("\n").split("\n")
    settings = lines.pop() if len(lines) > 1 and _FIELD.match(lines[-1]) and "Steps:" in lines[-1] else ""
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        if line.startswith("Negative prompt:") or negative:
            negative.append(line.removeprefix("Negative prompt:").strip())
        else:
            prompt.append(line)
    record: dict[str, Any] = {"prompt": "\n".join(prompt), "provider": "a1111"}
    if negative:
        record["negative_prompt"] = "\n".join(negative)
    for found in _FIELD.finditer(settings):
        key, value = found.group(1).strip().lower(), found.group(2).strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            try:
                value = loads(value)
            except ValueError:
                value = value[1:-1]
        if key == "size":
            width, _, height = value.partition("x")
            if width.isdigit() and height.isdigit():
                record["width"], record["height"] = int(width), int(height)
        elif key in _KEYS:
            record[_KEYS[key]] = _number(value) if key in ("steps", "seed", "cfg scale") else value
        else:
            record.setdefault("a1111", {})[found.group(1).strip()] = value
    return record


def _number(value: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".svg")
MAX_SCANNED_FILES = 20_000  # a folder bigger than this is not searched further (the run then makes the rest)
MAX_SCANNED_BYTES = 256 << 20


def find_job_images(
    directory: Path, job_id: str, indices: set[int], *, since: float = 0.0
) -> dict[int, tuple[Path, ImageMeta]]:
    """Files in ``directory`` whose embedded record says they are image ``index`` of job ``job_id``.

    What a resume adopts when the journal could not record a saved image (a full disk): the file itself says
    which job and image it is. Only files modified since ``since`` (the job's creation) are opened.
    """
    import os

    found: dict[int, tuple[Path, ImageMeta]] = {}
    try:
        entries = os.scandir(directory)
    except OSError:
        return found
    with entries:
        for number, entry in enumerate(entries):
            if number >= MAX_SCANNED_FILES or len(found) == len(indices):
                break
            name = entry.name
            if name.startswith(".") or not name.lower().endswith(IMAGE_SUFFIXES):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not entry.is_file(follow_symlinks=False) or info.st_mtime < since or info.st_size > MAX_SCANNED_BYTES:
                continue
            try:
                meta = read_meta(Path(entry.path))
            except (NoParameters, ValueError):
                continue
            if meta.job == job_id and meta.index in indices and meta.index not in found:
                found[meta.index] = (Path(entry.path), meta)
    return found
