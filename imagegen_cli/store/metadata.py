"""Generation parameters embedded in each image: enough to reproduce it, never a key."""

from __future__ import annotations

import json
import re
import warnings
from datetime import UTC, datetime
from typing import Any

from imagegen_cli import __version__
from imagegen_cli.errors import redact


def build_metadata(
    base: dict[str, Any], *, index: int, seed: int | None, revised_prompt: str | None = None
) -> dict[str, Any]:
    """The per-image record: the run's parameters plus this image's index and seed.

    The pixel size is not known here: the writer adds the one it reads from the file it writes.
    """
    meta = {k: v for k, v in base.items() if v not in (None, (), [], {})}
    meta.update(index=index, generator=f"imagegen {__version__}")
    meta["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    if seed is not None:
        meta["seed"] = seed
    if revised_prompt:
        meta["revised_prompt"] = revised_prompt
    return meta


_CONTROLS = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


def _text(value: object) -> str:
    """PNG text may hold no NUL, and terminal escapes have no place in metadata: keep newlines only."""
    return _CONTROLS.sub(" ", str(value))


def _one_line(value: object) -> str:
    return _text(value).replace("\n", " ").replace(",", ";")


def a1111_parameters(meta: dict[str, Any]) -> str:
    """The A1111-style ``parameters`` text that other image tools read."""
    lines = [_text(meta.get("prompt", ""))]
    if meta.get("negative_prompt"):
        lines.append(f"Negative prompt: {_one_line(meta['negative_prompt'])}")
    fields: list[tuple[str, Any]] = [
        ("Steps", meta.get("steps")),
        ("CFG scale", meta.get("guidance")),
        ("Seed", meta.get("seed")),
        ("Size", f"{meta.get('width')}x{meta.get('height')}"),
        ("Model", meta.get("model")),
        ("Provider", meta.get("provider")),
        ("Quality", meta.get("quality")),
        ("Style", meta.get("style")),
        ("Ratio", meta.get("ratio")),
        ("Sampler", meta.get("scheduler")),
        ("Device", meta.get("device")),
        ("Dtype", meta.get("dtype")),
        ("Version", meta.get("generator")),
    ]
    lines.append(", ".join(f"{name}: {_one_line(value)}" for name, value in fields if value is not None))
    return redact("\n".join(lines))


def metadata_json(meta: dict[str, Any], *, ascii_only: bool = False) -> str:
    """The JSON record, redacted of any registered secret (``ascii_only`` escapes the rest as ``\\uXXXX``)."""
    return redact(json.dumps(meta, ensure_ascii=ascii_only, sort_keys=True, default=str))


def png_texts(meta: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """PNG text chunks: A1111's ``parameters`` and the ``imagegen`` JSON record."""
    return (("parameters", a1111_parameters(meta)), ("imagegen", metadata_json(meta)))


def exif_tiff(meta: dict[str, Any], existing: bytes | None = None, limit: int | None = None) -> bytes:
    """EXIF (TIFF bytes) with the record in ``ImageDescription`` and A1111's text in ``UserComment``.

    ``existing`` is the EXIF the image arrived with: its tags are kept (an orientation, a camera model)
    and ours replace only the three we write. ``limit`` bounds the size (a JPEG segment holds 64 KiB):
    long prompts are then shortened here, and the XMP packet keeps the full record.
    """
    from PIL import ExifTags, Image

    exif = Image.Exif()
    if existing:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Pillow warns about broken tags, which are then skipped
                exif.load(existing)
                exif.get_ifd(ExifTags.IFD.Exif)
        except Exception:  # noqa: BLE001 - a gateway's broken EXIF is dropped, not a reason to lose the image
            exif = Image.Exif()
    keep = 1 << 30
    while True:  # each pass writes the same three tags again, shorter
        short = meta if keep >= 1 << 30 else _shortened(meta, keep)
        # ASCII JSON: EXIF strings are ASCII, and \\u escapes keep every character of the prompt.
        exif[ExifTags.Base.ImageDescription] = metadata_json(short, ascii_only=True)
        exif[ExifTags.Base.Software] = str(meta.get("generator", "imagegen"))
        # UserComment in A1111's encoding, which other tools read back as "parameters".
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = b"UNICODE\0" + a1111_parameters(short).encode(
            "utf-16-be"
        )
        data = exif.tobytes()[6:]  # without "Exif\0\0": each container adds its own header
        if limit is None or len(data) <= limit or keep < 64:
            return data
        keep = min(keep, len(data)) // 2


def _shortened(meta: dict[str, Any], keep: int) -> dict[str, Any]:
    """``meta`` with every long text cut to ``keep`` characters, marked as such."""
    short = {k: (v[:keep] + "…" if isinstance(v, str) and len(v) > keep else v) for k, v in meta.items()}
    short["truncated"] = "the full record is in the XMP packet"
    return short


_RDF = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
    'xmlns:imagegen="https://github.com/imagegen/imagegen/ns/1.0/"{extra}>{body}'
    "</rdf:Description></rdf:RDF></x:xmpmeta>"
)
_PACKET = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>{rdf}<?xpacket end="w"?>'


def _xmp_body(meta: dict[str, Any]) -> str:
    from xml.sax.saxutils import escape

    description = escape(a1111_parameters(meta))
    record = escape(metadata_json(meta))
    return (
        f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{description}</rdf:li></rdf:Alt></dc:description>'
        f"<imagegen:parameters>{record}</imagegen:parameters>"
    )


def xmp_packet(meta: dict[str, Any]) -> bytes:
    """An XMP packet carrying the description and the JSON record (JPEG and WebP)."""
    return _PACKET.format(rdf=_RDF.format(extra="", body=_xmp_body(meta))).encode()


def jpeg_xmp(meta: dict[str, Any], limit: int) -> tuple[bytes, bytes | None]:
    """XMP for a JPEG: one packet when it fits ``limit``, else a standard packet pointing to an extension.

    A JPEG segment holds 64 KiB; XMP part 3's "extended XMP" splits a longer record over several
    segments, tied together by the MD5 of the extension (exiftool and Adobe's SDK read it back).
    """
    from imagegen_cli.store.containers import xmp_guid

    rdf = _RDF.format(extra="", body=_xmp_body(meta))
    packet = _PACKET.format(rdf=rdf).encode()
    if len(packet) <= limit:
        return packet, None
    extension = rdf.encode()
    note = ' xmlns:xmpNote="http://ns.adobe.com/xmp/note/" xmpNote:HasExtendedXMP="{}"'
    standard = _PACKET.format(rdf=_RDF.format(extra=note.format(xmp_guid(extension)), body="")).encode()
    return standard, extension


def gif_comment(meta: dict[str, Any]) -> str:
    """A GIF comment: A1111's text, then a last line ``imagegen: {JSON record}``."""
    return f"{a1111_parameters(meta)}\nimagegen: {metadata_json(meta)}"


def svg_comment(meta: dict[str, Any]) -> str:
    """``imagegen: {JSON record}`` safe inside an XML comment.

    A comment may not contain ``--``. Two hyphens in a row can only occur inside a JSON string, where
    ``\\u002d`` is the same character, so the record still parses to exactly the same values.
    """
    return "imagegen: " + re.sub(r"-(?=-)", r"\\u002d", metadata_json(meta))
