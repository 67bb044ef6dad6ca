"""Generation parameters embedded in each image: enough to reproduce it, never a key."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from imagegen_cli import __version__
from imagegen_cli.errors import redact


def build_metadata(
    base: dict[str, Any],
    *,
    index: int,
    seed: int | None,
    width: int,
    height: int,
    revised_prompt: str | None = None,
) -> dict[str, Any]:
    """The per-image record: the run's parameters plus this image's index, seed and pixels."""
    meta = {k: v for k, v in base.items() if v not in (None, (), [], {})}
    meta.update(index=index, width=width, height=height, generator=f"imagegen {__version__}")
    meta["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    if seed is not None:
        meta["seed"] = seed
    if revised_prompt:
        meta["revised_prompt"] = revised_prompt
    return meta


_CONTROLS = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


def _text(value: Any) -> str:
    """PNG text may hold no NUL, and terminal escapes have no place in metadata: keep newlines only."""
    return _CONTROLS.sub(" ", str(value))


def _one_line(value: Any) -> str:
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


def metadata_json(meta: dict[str, Any]) -> str:
    """The JSON record, redacted of any registered secret."""
    return redact(json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str))


def xmp_packet(meta: dict[str, Any]) -> bytes:
    """An XMP packet carrying the description and the JSON record (JPEG and WebP)."""
    from xml.sax.saxutils import escape

    description = escape(a1111_parameters(meta))
    record = escape(metadata_json(meta))
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:imagegen="https://github.com/imagegen/imagegen/ns/1.0/">'
        f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{description}</rdf:li></rdf:Alt></dc:description>'
        f"<imagegen:parameters>{record}</imagegen:parameters>"
        '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()
