"""File names: readable, unique, bounded, and unable to leave the output directory."""

from __future__ import annotations

import re
import secrets
import string
import unicodedata
from collections.abc import Callable
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


# What each field holds when a name is made: numbers stay numbers (``{index:03}`` is ``001``); a seed is empty
# for models without one, so its format spec must suit both.
_SAMPLES: dict[str, tuple[object, ...]] = {"index": (1,), "n": (1,), "seed": (7, "")}
_CONVERSIONS: dict[str | None, Callable[[object], object]] = {
    None: lambda value: value,
    "r": repr,
    "s": str,
    "a": ascii,
}
_SPEC = re.compile(r"(?:.?[<>=^])?[+\- ]?z?#?0?(?P<width>\d*)[_,]?(?:\.(?P<precision>\d+))?[a-zA-Z%]?", re.DOTALL)
_HINT = "e.g. --name '{slug}-{index:03}.{ext}'; fields: " + ", ".join(TEMPLATE_FIELDS)


def check_template(template: str) -> None:
    """Check the whole template before anything is sent: fields, conversions, format specs and their widths.

    Every field is formatted with the kinds of value it can hold, so a name that cannot be made (``{index:q}``),
    or one that would be huge (``{index:>1000000000}``), is refused here rather than after a billed call.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        shown = template if len(template) <= 60 else template[:57] + "..."
        raise UsageError(f"invalid --name template {shown!r}: {exc}", hint=_HINT) from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS:
            raise UsageError(f"unknown field {{{name}}} in --name template", hint=_HINT)
        field = f"{{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}"
        field = field if len(field) <= 40 else field[:36] + "...}"  # quoted in the error: bounded
        match = _SPEC.fullmatch(spec or "")
        if "{" in (spec or "") or match is None or conversion not in _CONVERSIONS:
            raise UsageError(f"invalid format {field} in --name template", hint=_HINT)
        for part in ("width", "precision"):
            digits = match[part] or "0"
            if len(digits) > 4 or int(digits) > MAX_NAME:
                raise UsageError(
                    f"the {part} in {field} is too large for a file name",
                    hint=f"file names are at most {MAX_NAME} characters",
                )
        for sample in _SAMPLES.get(name, ("text",)):
            try:
                format(_CONVERSIONS[conversion](sample), spec or "")
            except (ValueError, TypeError) as exc:
                raise UsageError(f"invalid format {field} in --name template: {exc}", hint=_HINT) from None


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
        "seed": "" if seed is None else seed,
        "index": index,
        "n": n,
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
