"""A self-contained static HTML contact sheet of images: ``imagegen gallery`` and ``generate --gallery``.

One page, no network: thumbnails are embedded as ``data:`` WebP URIs, the CSS and the small script are inline,
and a Content-Security-Policy forbids everything else. Every text taken from an image (prompt, model, file
name) is untrusted: it is HTML-escaped and only ever placed in text nodes or attributes, never in the script.

Thumbnails (and the record read from each file) are cached under imagegen's cache directory by the SHA-256 of
the file's bytes, so a rebuild of an unchanged folder hashes the files and decodes none of them. Pillow is
imported only when a build runs; torch and diffusers never are.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import json
import os
import re
import shlex
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from imagegen_cli.errors import SaveError, UsageError

__all__ = ["GALLERY_SUFFIXES", "GalleryResult", "build_gallery", "collect_images", "thumbnail_cache_dir"]

GALLERY_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
THUMB_SIZE = 256
THUMB_VERSION = 1  # bump when the thumbnail's size, format or the cached sidecar change: old entries are ignored
MAX_PIXELS = 64_000_000  # a larger image gets a placeholder tile: decoding it could take gigabytes
MAX_BYTES = 256 << 20  # the same bound the journal's scan uses: no file this big is read whole
_TEXT_LIMIT = 4000
_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
GENERATOR = '<meta name="generator" content="imagegen gallery">'  # a page a rebuild may replace
CSP = "default-src 'none'; img-src data: file: 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


@dataclass(frozen=True)
class GalleryResult:
    """What a build wrote: the page, its tile count, how many came from the cache, how many are placeholders."""

    path: Path
    images: int
    cached: int
    placeholders: int


@dataclass(frozen=True)
class _Tile:
    path: Path
    record: dict[str, Any] | None = None
    width: int | None = None  # the file's own pixel size (None: unreadable)
    height: int | None = None
    thumb: bytes | None = None  # WebP bytes; None: a placeholder tile
    thumb_size: tuple[int, int] = (0, 0)
    problem: str | None = None  # why there is no thumbnail
    cached: bool = False


def thumbnail_cache_dir() -> Path:
    """Where thumbnails are kept: ``<imagegen's cache dir>/thumbnails``."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("imagegen", appauthor=False)) / "thumbnails"


def collect_images(sources: Iterable[Path]) -> list[Path]:
    """The image files of ``sources``: a directory's own image files (not its subfolders) sorted by name, a file
    as given. The same file named twice gets one tile; dot files (a writer's temporary files) are left out."""
    found: list[Path] = []
    seen: set[Path] = set()
    for source in sources:
        if source.is_dir():
            names = sorted(
                entry
                for entry in source.iterdir()
                if not entry.name.startswith(".") and entry.suffix.lower() in GALLERY_SUFFIXES and entry.is_file()
            )
        else:
            names = [source]
        for path in names:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                found.append(path)
    return found


def build_gallery(
    sources: list[Path], out: Path, *, title: str | None = None, workers: int | None = None
) -> GalleryResult:
    """Write the contact sheet of ``sources`` (directories and image files) to ``out``, atomically.

    A file that is not a readable image, or is over 64 megapixels, gets a placeholder tile; one without
    imagegen's record gets a tile saying so. Raises :class:`SaveError` when the page cannot be written.
    """
    import warnings

    from PIL import Image

    _check_target(out)  # before any thumbnail is made: a refused page costs nothing
    paths = collect_images(sources)
    cache = thumbnail_cache_dir()
    # Pillow's decode and hashlib release the GIL: a few threads keep both cores busy on a first build.
    pool_size = workers or min(8, (os.cpu_count() or 1) + 2)
    with warnings.catch_warnings():
        # Set here, once, not per thread (warnings' filters are process-wide): an image over Pillow's own bomb
        # threshold is refused by MAX_PIXELS below, its warning is noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with ThreadPoolExecutor(max_workers=pool_size) as pool:
            tiles = list(pool.map(lambda path: _tile(path, cache), paths))
    page = _render_page(tiles, out, title or "imagegen gallery")
    _write_atomic(out, page)
    return GalleryResult(
        path=out,
        images=len(tiles),
        cached=sum(tile.cached for tile in tiles),
        placeholders=sum(tile.thumb is None for tile in tiles),
    )


# ---------------------------------------------------------------------------------------------- thumbnails
def _tile(path: Path, cache: Path) -> _Tile:
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            return _Tile(path, problem="too large to preview")
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as error:
        return _Tile(path, problem=f"cannot read: {error.strerror or error}")
    key = hashlib.sha256(f"imagegen-thumbnail:{THUMB_VERSION}:{THUMB_SIZE}:{digest}".encode()).hexdigest()
    hit = _cached(path, cache, key)
    if hit is not None:
        return hit
    tile = _make_tile(path)
    _store(cache, key, tile)
    return tile


def _cached(path: Path, cache: Path, key: str) -> _Tile | None:
    """The tile kept for these bytes, or None (no entry, or a damaged one: then it is made again)."""
    from imagegen_cli.jsontypes import loads

    try:
        sidecar: Any = loads((cache / f"{key}.json").read_bytes())
        thumb = (cache / f"{key}.webp").read_bytes() if sidecar["thumb"] else None
        record, (thumb_width, thumb_height) = sidecar["record"], sidecar["thumb_size"]
        record = record if isinstance(record, dict) else None
        size = (int(thumb_width), int(thumb_height))
        return _Tile(path, record, sidecar["width"], sidecar["height"], thumb, size, sidecar["problem"], cached=True)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _store(cache: Path, key: str, tile: _Tile) -> None:
    """Keep the tile for next time; a cache that cannot be written only makes the next build slower."""
    sidecar = {name: getattr(tile, name) for name in ("record", "width", "height", "thumb_size", "problem")}
    sidecar["thumb"] = tile.thumb is not None
    with contextlib.suppress(OSError):
        cache.mkdir(parents=True, exist_ok=True)
        if tile.thumb is not None:
            _replace_bytes(cache / f"{key}.webp", tile.thumb)
        # The sidecar goes last: its presence says the entry is complete.
        _replace_bytes(cache / f"{key}.json", json.dumps(sidecar, ensure_ascii=True, default=str).encode())


def _make_tile(path: Path) -> _Tile:
    """Read the record and make the thumbnail; any failure of a hostile or broken file is a placeholder tile."""
    import io

    from PIL import Image, ImageOps

    width = height = None
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:  # reads the header only: the size is known before any decode
            width, height = image.size
            record = _record_of(path, image)
            if width * height > MAX_PIXELS:
                problem = f"too large to preview ({width}×{height})"
                return _Tile(path, record, width, height, problem=problem)
            image.draft("RGB", (THUMB_SIZE, THUMB_SIZE))  # JPEG: decode at 1/2, 1/4 or 1/8 scale, much faster
            small: Image.Image = image
            if small.mode not in ("RGB", "RGBA", "L", "LA", "CMYK", "YCbCr"):
                small = small.convert("RGBA")  # palette and 16-bit modes resample badly, or not at all
            small.thumbnail((THUMB_SIZE, THUMB_SIZE))
            with contextlib.suppress(Exception):  # a damaged EXIF block costs the rotation, not the thumbnail
                small = ImageOps.exif_transpose(small)
            if small.mode not in ("RGB", "RGBA"):
                small = small.convert("RGBA" if "A" in small.mode else "RGB")
            buffer = io.BytesIO()
            small.save(buffer, "WEBP", quality=80, method=4)
            return _Tile(path, record, width, height, buffer.getvalue(), small.size)
    except Image.DecompressionBombError:  # over Pillow's own bound (178 megapixels): refused from the header
        return _Tile(path, None, width, height, problem="too large to preview")
    except Exception:  # noqa: BLE001 - a broken or hostile file (truncated, not an image) gets a placeholder
        return _Tile(path, _read_meta(path), width, height, problem="cannot preview this file")


def _record_of(path: Path, image: Any) -> dict[str, Any] | None:
    """The record of an opened image. imagegen writes a PNG's record in a text chunk before the pixels, which
    Pillow read with the header: taken from there, no decode is spent on it (the reader's general path decodes
    a PNG, to find text placed after the pixels too), and none at all on a PNG too large to preview."""
    from imagegen_cli.jsontypes import loads
    from imagegen_cli.meta import ImageMeta

    if image.format == "PNG":
        text = image.info.get("imagegen")
        with contextlib.suppress(ValueError):
            value = loads(text) if isinstance(text, str) else None
            if isinstance(value, dict):
                return ImageMeta.from_record(value).to_record()
        if image.width * image.height > MAX_PIXELS:
            return None
    return _read_meta(path)


def _read_meta(path: Path) -> dict[str, Any] | None:
    from imagegen_cli.store.reader import read_meta

    try:
        return read_meta(path).to_record()
    except Exception:  # noqa: BLE001 - NoParameters, or Pillow refusing a file inside the reader: no record
        return None


# ---------------------------------------------------------------------------------------------- the page
def _text(value: object, limit: int = _TEXT_LIMIT) -> str:
    """Untrusted text for the page: no control character or lone surrogate (not encodable), bounded."""
    text = _UNSAFE.sub("\ufffd", str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _esc(value: object, limit: int = _TEXT_LIMIT) -> str:
    return html.escape(_text(value, limit), quote=True)


def _href(path: Path, base: Path) -> str:
    """A link from the page to the original: relative when it can be, every unsafe character %-encoded (so a
    file named ``javascript:x.png`` is a relative name, never a scheme)."""
    try:
        relative = os.path.relpath(path.absolute(), base.absolute())
    except ValueError:  # another drive (Windows): only an absolute URI reaches it
        return path.absolute().as_uri()
    return quote(os.fsencode(relative).replace(os.sep.encode(), b"/"), safe="/")


def _date(created: object) -> str:
    if not isinstance(created, str):
        return ""
    try:
        return datetime.fromisoformat(created).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return created[:20]


def _meta_line(tile: _Tile) -> str:
    record = tile.record or {}
    model, provider = record.get("model"), record.get("provider")
    parts = [f"{provider}:{model}" if provider and model else str(model or provider or "")]
    if tile.record is None:
        parts.append(tile.path.name)  # no prompt to tell it by: its name does
    if record.get("seed") is not None:
        parts.append(f"seed {record['seed']}")
    width, height = record.get("width") or tile.width, record.get("height") or tile.height
    if width and height:
        parts.append(f"{width}×{height}")
    parts.append(_date(record.get("created")))
    return " · ".join(part for part in parts if part)


def _tile_html(tile: _Tile, base: Path) -> str:
    record = tile.record or {}
    prompt = str(record.get("prompt") or "") if tile.record else "(no parameters)"
    model = f"{record.get('provider') or ''}:{record.get('model') or ''}" if tile.record else ""
    search = f"{prompt}\n{model}\n{tile.path.name}".lower()
    href = _href(tile.path, base)
    if tile.thumb is not None:
        width, height = tile.thumb_size
        data = base64.b64encode(tile.thumb).decode("ascii")
        picture = (
            f'<img src="data:image/webp;base64,{data}" alt="{_esc(prompt, 300)}"'
            f' width="{int(width)}" height="{int(height)}" decoding="async">'
        )
    else:
        picture = f'<span class="placeholder">{_esc(tile.problem or "no preview")}</span>'
    replay = ""
    if tile.record is not None:  # a file without imagegen's record has nothing to replay
        # "--from" never wraps inside (browsers break lines after a hyphen: "-" then "-from"); same text copied.
        argument = _esc(shlex.quote(str(tile.path.absolute())), 2 * _TEXT_LIMIT)
        replay = (
            f'<div class="replay"><code>imagegen generate <span class="flag">--from</span> {argument}</code>'
            '<button type="button" class="copy" title="Copy the replay command">Copy</button></div>'
        )
    return (
        f'<figure class="tile" data-search="{_esc(search, 3 * _TEXT_LIMIT)}">'
        f'<a class="thumb" href="{html.escape(href, quote=True)}" title="{_esc(tile.path.name, 500)}">{picture}</a>'
        f'<figcaption><p class="prompt" title="{_esc(prompt)}">{_esc(prompt)}</p>'
        f'<p class="meta">{_esc(_meta_line(tile), 500)}</p>'
        f"{replay}</figcaption></figure>"
    )


def _render_page(tiles: list[_Tile], out: Path, title: str) -> str:
    """The whole page: a header with the count and the filter, one tile per image, the overlay and the script."""
    count = f"{len(tiles)} image{'' if len(tiles) == 1 else 's'}"
    body = "\n".join(_tile_html(tile, out.parent) for tile in tiles)
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{html.escape(CSP, quote=True)}">\n'
        f'<meta name="referrer" content="no-referrer">\n{GENERATOR}\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title, 200)}</title>\n<style>{_STYLE}</style></head>\n"
        f'<body><header><h1>{_esc(title, 200)}</h1><span id="count" data-total="{len(tiles)}">{count}</span>'
        '<input id="filter" type="search" placeholder="Filter by prompt or model" aria-label="Filter"'
        ' autocomplete="off"></header>\n'
        f'<main id="grid">\n{body}\n</main>\n'
        '<div id="overlay" hidden><img id="full" alt=""><p id="caption"></p></div>\n'
        f"<script>{_SCRIPT}</script>\n</body></html>\n"
    )


def _replace_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(data)}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check_target(out: Path) -> None:
    """Never replace a page (or any file) a gallery did not write: an index.html of the user's own."""
    if out.is_file() and GENERATOR.encode() not in out.read_bytes()[:4096]:
        raise UsageError(f"{out} exists and is not an imagegen gallery", hint="choose another page with -o PATH")


def _write_atomic(out: Path, page: str) -> None:
    """The page through a temporary file beside it and a rename: a reader sees the old page or the new one."""
    _check_target(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _replace_bytes(out, page.encode("utf-8"))
    except OSError as error:
        raise SaveError(
            f"cannot write {out}: {error.strerror or error}", hint="choose another place with -o PATH"
        ) from None


_STYLE = """
:root{color-scheme:light dark;--bg:#f6f6f4;--fg:#1d1d1f;--muted:#6b6b70;--card:#fff;--line:#dcdcde;--accent:#2f6fde}
@media (prefers-color-scheme:dark){:root{--bg:#141416;--fg:#ececef;--muted:#9a9aa2;--card:#1f1f23;--line:#34343a;
--accent:#7aa7ff}}
*{box-sizing:border-box}[hidden]{display:none!important}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif}
header{position:sticky;top:0;z-index:1;display:flex;gap:1rem;align-items:center;flex-wrap:wrap;padding:.75rem 1.25rem;
background:var(--bg);border-bottom:1px solid var(--line)}
h1{font-size:1.15rem;margin:0;font-weight:600}#count{color:var(--muted)}
#filter{margin-left:auto;min-width:16rem;padding:.45rem .7rem;border:1px solid var(--line);border-radius:8px;
background:var(--card);color:var(--fg);font:inherit}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:1rem;padding:1.25rem}
.tile{margin:0;display:flex;flex-direction:column;background:var(--card);border:1px solid var(--line);
border-radius:10px;overflow:hidden}
.thumb{display:flex;align-items:center;justify-content:center;aspect-ratio:1;background:var(--line)}
.thumb img{width:100%;height:100%;object-fit:contain;display:block}
.thumb:has(.placeholder){text-decoration:none}.placeholder{color:var(--muted);padding:1rem;text-align:center}
figcaption{padding:.6rem .7rem .7rem;display:flex;flex-direction:column;gap:.35rem;flex:1}
.prompt{margin:0;display:-webkit-box;-webkit-line-clamp:3;-webkit-box-orient:vertical;overflow:hidden;
overflow-wrap:anywhere}
.meta{margin:0;color:var(--muted);font-size:12px;overflow-wrap:anywhere}
.replay{margin-top:auto;display:flex;gap:.4rem;align-items:center}
.replay code{flex:1;min-width:0;max-height:6.6em;overflow:auto;font-size:11px;overflow-wrap:break-word;
padding:.25rem .4rem;border-radius:6px;background:var(--bg);user-select:all}.replay .flag{white-space:nowrap}
.copy{font:inherit;font-size:12px;padding:.2rem .55rem;border:1px solid var(--line);border-radius:6px;
background:var(--card);color:var(--accent);cursor:pointer}
#overlay{position:fixed;inset:0;z-index:2;display:flex;flex-direction:column;align-items:center;
justify-content:center;gap:.75rem;padding:2rem;background:rgba(0,0,0,.85);cursor:zoom-out}
#overlay img{max-width:100%;max-height:calc(100% - 4rem);object-fit:contain}
#caption{margin:0;max-width:60rem;color:#eee;text-align:center;overflow-wrap:anywhere}
"""

# No text from any image is ever written into this script: it reads the page's own attributes and text nodes.
_SCRIPT = """
(function () {
  "use strict";
  var tiles = Array.prototype.slice.call(document.querySelectorAll(".tile"));
  var byId = function (id) { return document.getElementById(id); };
  var filter = byId("filter"), count = byId("count"), overlay = byId("overlay"), full = byId("full");
  function apply() {
    var words = filter.value.toLowerCase().split(/\\s+/).filter(Boolean);
    var shown = 0;
    tiles.forEach(function (tile) {
      var text = tile.getAttribute("data-search") || "";
      var match = words.every(function (word) { return text.indexOf(word) !== -1; });
      tile.hidden = !match;
      if (match) { shown += 1; }
    });
    var noun = tiles.length === 1 ? " image" : " images";
    count.textContent = shown === tiles.length ? tiles.length + noun : shown + " of " + tiles.length + noun;
  }
  function copied(button, label) {
    button.textContent = label;
    setTimeout(function () { button.textContent = "Copy"; }, 1500);
  }
  function copy(button) {
    var code = button.parentNode.querySelector("code");
    var fallback = function () {  // no clipboard API (a file: page may not get one): select the text, then try
      var range = document.createRange(), selection = window.getSelection(), done = false;
      range.selectNodeContents(code);
      selection.removeAllRanges();
      selection.addRange(range);
      try { done = document.execCommand("copy"); } catch (error) { done = false; }
      copied(button, done ? "Copied" : "Press Ctrl+C");
    };
    if (!navigator.clipboard || !navigator.clipboard.writeText) { fallback(); return; }
    navigator.clipboard.writeText(code.textContent).then(function () { copied(button, "Copied"); }, fallback);
  }
  function close() { overlay.hidden = true; full.removeAttribute("src"); }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.copy");
    if (button) { copy(button); return; }
    var thumb = event.target.closest("a.thumb");
    if (thumb && event.button === 0 && !(event.ctrlKey || event.metaKey || event.shiftKey || event.altKey)) {
      event.preventDefault();
      full.src = thumb.href;
      var prompt = thumb.parentNode.querySelector(".prompt");
      byId("caption").textContent = prompt ? prompt.textContent : "";
      overlay.hidden = false;
      return;
    }
    if (!overlay.hidden && overlay.contains(event.target)) { close(); }
  });
  document.addEventListener("keydown", function (event) { if (event.key === "Escape") { close(); } });
  filter.addEventListener("input", function () {
    // The filter is kept in the address (#words), so a reload or a bookmark shows the same tiles.
    try {
      var hash = filter.value ? "#" + encodeURIComponent(filter.value) : "";
      history.replaceState(null, "", location.href.split("#")[0] + hash);
    } catch (error) { /* some browsers refuse history changes on file: pages; the filter works all the same */ }
    apply();
  });
  if (location.hash.length > 1) {
    try { filter.value = decodeURIComponent(location.hash.slice(1)); } catch (error) { filter.value = ""; }
  }
  apply();
})();
"""
