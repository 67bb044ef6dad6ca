"""File names: readable, unique, bounded, and unable to leave the output directory."""

from __future__ import annotations

import re
import secrets
import string
import unicodedata
from datetime import datetime
from typing import Any

from imagegen_cli.errors import UsageError

DEFAULT_TEMPLATE = "{datetime}-{slug}-{seed}-{index}.{ext}"
TEMPLATE_FIELDS = (
    "date",
    "time",
    "datetime",
    "slug",
    "seed",
    "index",
    "n",
    "provider",
    "model",
    "ext",
    "uid",
)
MAX_NAME = 180


def slugify(text: str, max_len: int = 48) -> str:
    """Prompt → ``a-red-fox-in-the-snow``: ASCII, lower case, bounded; ``image`` when nothing is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > max_len:
        slug = slug[:max_len].rsplit("-", 1)[0] or slug[:max_len]
    return slug.strip("-") or "image"


def check_template(template: str) -> None:
    """Reject unknown fields and malformed braces before anything is sent."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise UsageError(f"invalid --name template {template!r}: {exc}") from None
    for name in names:
        if name not in TEMPLATE_FIELDS:
            raise UsageError(
                f"unknown field {{{name}}} in --name template", hint="fields: " + ", ".join(TEMPLATE_FIELDS)
            )


def safe_component(name: str) -> str:
    """A single path component: no separators, no control characters, no leading dots."""
    name = unicodedata.normalize("NFC", name)
    name = re.sub(r"[\x00-\x1f\x7f/\\:*?\"<>|\u202a-\u202e\u2066-\u2069]+", "-", name)
    name = re.sub(r"-{2,}", "-", name).strip(" .-")
    if len(name) > MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: MAX_NAME - len(ext) - 1] + dot + ext) if dot and len(ext) <= 5 else name[:MAX_NAME]
    return name or "image"


def render_name(
    template: str,
    *,
    ext: str,
    when: datetime,
    prompt: str,
    index: int,
    n: int,
    seed: int | None,
    provider: str,
    model: str,
) -> str:
    """Render a template into one safe file name (the extension is added when missing)."""
    values: dict[str, Any] = {
        "date": when.strftime("%Y%m%d"),
        "time": when.strftime("%H%M%S"),
        "datetime": when.strftime("%Y%m%d-%H%M%S"),
        "slug": slugify(prompt),
        "seed": "" if seed is None else str(seed),
        "index": str(index),
        "n": str(n),
        "provider": slugify(provider, 32),
        "model": slugify(model, 48),
        "ext": ext,
        "uid": secrets.token_hex(3),
    }
    name = template.format_map(values)
    name = re.sub(r"-{2,}", "-", name).replace("-.", ".")
    stem = name[: -len(ext) - 1] if name.lower().endswith("." + ext) else name
    # The stem is cleaned on its own, so a template such as ".." cannot leave a file named just "png".
    stem = safe_component(stem)[: MAX_NAME - len(ext) - 1] if stem.strip(" .-") else "image"
    return safe_component(f"{stem}.{ext}")
