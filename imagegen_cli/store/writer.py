"""The atomic image writer: validation, metadata at the container level, no-overwrite placement.

A gateway's image is kept as it arrived. Its container is checked block by block (``containers``), its
size against the pixel limit, then it is decoded in full once to prove the pixels are there; metadata is
added as container blocks (PNG text chunks, JPEG APP1 EXIF and XMP, WebP EXIF and XMP chunks, a GIF
comment, an SVG comment) around the untouched image data. Only ``--format`` asking for another format
re-encodes, once. Local pipelines encode once, at a fast PNG compression level.

Every file is written to a hidden ``.imagegen-<pid>-*.part`` file in the output directory, fsynced, and
then linked into place under a name that does not exist yet. A killed run leaves at most a ``.part`` file,
never a half-written image under a real name; the next writer in that directory removes ``.part`` files
that are over an hour old and whose process is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import io
import os
import re
import stat
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from imagegen_cli.errors import DownloadError, ImagegenError, SaveError, UsageError
from imagegen_cli.store.containers import (
    JPEG_SEGMENT_MAX,
    RASTER_KINDS,
    XMP_STANDARD_MAX,
    ContainerError,
    Layout,
    Metadata,
    human_size,
    parse,
    parse_svg,
    sniff,
)
from imagegen_cli.store.metadata import exif_tiff, gif_comment, jpeg_xmp, png_texts, svg_comment, xmp_packet
from imagegen_cli.store.naming import DEFAULT_TEMPLATE, check_template, render_name, safe_component

FORMATS = ("png", "jpeg", "webp", "gif", "svg")
RASTER_FORMATS = ("png", "jpeg", "webp", "gif")
PIXEL_LIMIT = 100_000_000  # 100 MP: far above any gateway's output, far below a decompression bomb
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024
# Local renders and conversions: level 4 is the knee on 1024x1024 renders (bench/png_levels.py). Levels 1-3
# (zlib's fast deflate) give nearly the same size; 4 saves 12-15% over them; 5 and 6 save at most 4% more
# for up to 2.7x the time.
PNG_COMPRESS_LEVEL = 4
LOSSY_QUALITY = 95  # JPEG and WebP written by a conversion or a local pipeline
STALE_PART_SECONDS = 3600
_SUFFIX_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".gif": "gif", ".svg": "svg"}
# Extensions of image formats imagegen does not write: naming one is a mistake, not a directory name.
_OTHER_IMAGE_SUFFIXES = frozenset({
    ".tif", ".tiff", ".bmp", ".dib", ".heic", ".heif", ".avif", ".avifs", ".jxl", ".jp2", ".j2k", ".jpx", ".jfif",
    ".pjpeg", ".pjp", ".apng", ".ico", ".icns", ".cur", ".psd", ".xcf", ".tga", ".ppm", ".pgm", ".pbm", ".pnm",
    ".pam", ".eps", ".ps", ".exr", ".hdr", ".qoi", ".dds", ".pcx", ".dng", ".raw", ".cr2", ".cr3", ".nef", ".arw",
    ".orf", ".rw2", ".raf", ".emf", ".wmf", ".svgz",
})  # fmt: skip
_ACCEPTED = "png, jpeg, webp, gif or svg"
_PIL_NAMES = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "gif": "GIF"}
_DISPLAY = {"png": "PNG", "jpeg": "JPEG", "webp": "WebP", "gif": "GIF", "svg": "SVG"}
_EXT = {"png": "png", "jpeg": "jpg", "webp": "webp", "gif": "gif", "svg": "svg"}
TEMP_PREFIX = ".imagegen-"
TEMP_SUFFIX = ".part"
_TEMP_PID = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-")


@dataclass(frozen=True)
class OutputSpec:
    """Where and how images are written, decided once from ``-o``, ``--name``, ``--format``."""

    directory: Path
    file_name: str | None = None  # -o FILE
    to_stdout: bool = False
    template: str = DEFAULT_TEMPLATE
    fmt: str | None = None
    overwrite: bool = False
    metadata: bool = True

    @classmethod
    def from_args(
        cls,
        out: str | None,
        *,
        default_dir: str | None,
        template: str | None,
        fmt: str | None,
        overwrite: bool,
        metadata: bool,
        n: int,
    ) -> OutputSpec:
        if fmt is not None and fmt not in FORMATS:
            raise UsageError(f"invalid --format {fmt!r}", hint=f"use {_ACCEPTED}")
        if template is not None:
            check_template(template)
        common: dict[str, Any] = {
            "template": template or DEFAULT_TEMPLATE,
            "overwrite": overwrite,
            "metadata": metadata,
        }
        if out == "-":
            if n != 1:
                raise UsageError("-o - writes one image to stdout, but -n asks for more", hint="use -n 1 or -o DIR")
            return cls(Path(tempfile.gettempdir()), to_stdout=True, fmt=fmt, **common)
        target = Path(out or default_dir or ".").expanduser()
        suffix = target.suffix.lower()
        names_file = out is not None and out != "" and not target.is_dir() and not out.endswith(("/", os.sep))
        if names_file and suffix in _OTHER_IMAGE_SUFFIXES:
            raise UsageError(
                f"imagegen cannot write {suffix[1:].upper()} files ({target.name})",
                hint="name the file .png, .jpg, .jpeg, .webp, .gif or .svg, or give a directory",
            )
        if names_file and suffix in _SUFFIX_FORMATS:
            file_fmt = _SUFFIX_FORMATS[suffix]
            if fmt and fmt != file_fmt:
                raise UsageError(
                    f"--format {fmt} conflicts with the file name {target.name}",
                    hint=f"name the file .{_EXT[fmt]}, or drop --format",
                )
            spec = cls(
                _prepare_dir(target.parent.resolve()),
                file_name=safe_component(target.name),
                fmt=file_fmt,
                **common,
            )
            for index in range(1, n + 1):
                path = spec.directory / spec.file_name_for(index, n)
                if path.exists() and not overwrite:
                    raise UsageError(
                        f"{path} already exists", hint="pass --overwrite to replace it, or choose another -o"
                    )
            return spec
        # --name x.jpg names the format as -o x.jpg does, rather than becoming x.jpg.png.
        name_fmt = template_format(template) if template else None
        if name_fmt is not None:
            if fmt and fmt != name_fmt:
                raise UsageError(
                    f"--format {fmt} conflicts with the --name template {template}",
                    hint=f"end the template with .{_EXT[fmt]} or .{{ext}}, or drop --format",
                )
            fmt = name_fmt
        return cls(_prepare_dir(target.resolve()), fmt=fmt, **common)

    def to_dict(self) -> dict[str, Any]:
        """What the journal keeps to write a resumed job's images the same way."""
        return {
            "directory": str(self.directory),
            "file_name": self.file_name,
            "to_stdout": self.to_stdout,
            "template": self.template,
            "fmt": self.fmt,
            "overwrite": self.overwrite,
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], directory: Path | None = None) -> OutputSpec:
        """The journalled spec; ``directory`` (``tasks wait -o DIR``) moves it and drops a fixed file name."""
        if directory is not None:
            return cls(
                _prepare_dir(directory.resolve()),
                template=data.get("template") or DEFAULT_TEMPLATE,
                fmt=data.get("fmt"),
                metadata=data.get("metadata", True),
            )
        if data.get("to_stdout"):
            raise UsageError("this job wrote its image to stdout", hint="give an output directory with -o DIR")
        return cls(
            _prepare_dir(Path(data["directory"])),
            file_name=data.get("file_name"),
            template=data.get("template") or DEFAULT_TEMPLATE,
            fmt=data.get("fmt"),
            overwrite=bool(data.get("overwrite")),
            metadata=data.get("metadata", True),
        )

    def file_name_for(self, index: int, n: int) -> str:
        """``-o out.png`` with several images → out-1.png, out-2.png, ..."""
        assert self.file_name is not None
        if n == 1:
            return self.file_name
        stem, _, ext = self.file_name.rpartition(".")
        return f"{stem}-{index}.{ext}"


def _template_suffix(template: str) -> str | None:
    """The literal extension a template ends with (``x.jpg`` → ``.jpg``); None for ``.{ext}`` or none."""
    _, dot, tail = template.rpartition(".")
    if not dot or "{" in tail or "}" in tail or not tail or not tail.isalnum():
        return None
    return "." + tail.lower()


def template_format(template: str) -> str | None:
    """The format a ``--name`` template names by its extension; a usage error for one imagegen cannot write."""
    suffix = _template_suffix(template)
    if suffix in _OTHER_IMAGE_SUFFIXES:
        raise UsageError(
            f"imagegen cannot write {suffix[1:].upper()} files (--name {template})",
            hint="end the template with .png, .jpg, .webp, .gif, .svg or .{ext}",
        )
    return _SUFFIX_FORMATS.get(suffix or "")


def _prepare_dir(directory: Path) -> Path:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output directory {directory}: {exc.strerror}") from None
    if not directory.is_dir():
        raise UsageError(f"output path {directory} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"output directory {directory} is not writable", hint="choose another with -o DIR")
    return directory


@dataclass(frozen=True)
class SavedImage:
    """An image on disk (or on stdout); ``notes`` say what the writer changed (a conversion), for the user."""

    path: str
    index: int
    width: int
    height: int
    fmt: str
    seed: int | None = None
    url: str | None = None
    revised_prompt: str | None = None
    notes: tuple[str, ...] = ()


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


_SWEPT: set[Path] = set()


def remove_stale_parts(directory: Path, *, older_than: float = STALE_PART_SECONDS) -> list[Path]:
    """Remove ``.part`` files a killed run left: unchanged for ``older_than`` seconds and with no live owner.

    The owner's pid is in the name (``.imagegen-<pid>-*.part``); a name without one (older versions) goes
    on age alone. A file of another user, or of a process still running, is never touched.
    """
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX)):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or now - info.st_mtime < older_than:
            continue
        owner = _TEMP_PID.match(entry.name)
        if owner and _process_alive(int(owner[1])):
            continue
        with contextlib.suppress(OSError):
            Path(entry.path).unlink()
            removed.append(Path(entry.path))
    return removed


# renameat2(RENAME_NOREPLACE): an atomic "rename only if the target is absent" (Linux 3.15+, glibc 2.28+).
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def _load_renameat2() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function: Callable[..., int] = libc.renameat2
    except (OSError, AttributeError):
        return None
    return function


_renameat2 = _load_renameat2() if sys.platform.startswith("linux") else None


def rename_no_replace(source: Path, target: Path) -> bool:
    """Move ``source`` to ``target`` unless ``target`` exists (then False); never replaces a file.

    For filesystems without hard links. ``renameat2(RENAME_NOREPLACE)`` does it in one step; where the
    kernel or filesystem lacks it, the name is claimed with an exclusive create (``O_EXCL``) and the
    finished file renamed over that empty claim, which only this process can own.
    """
    if _renameat2 is not None:
        result = _renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE)
        if result == 0:
            return True
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            return False
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM):
            raise OSError(code, os.strerror(code), str(target))
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    try:
        os.rename(source, target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return True


class ImageWriter:
    """Writes each finished image of one run according to an :class:`OutputSpec`."""

    on_target: Callable[[int, str], None] | None = None  # told each final name just before it is created

    def __init__(self, spec: OutputSpec, *, prompt: str, provider: str, model: str, n: int) -> None:
        self.spec = spec
        self.prompt = prompt
        self.provider = provider
        self.model = model
        self.n = n
        self.started = datetime.now()
        # mkstemp makes 0600 files; finished images get the mode any new file would get (umask applies).
        umask = os.umask(0o022)
        os.umask(umask)
        self.file_mode = 0o666 & ~umask
        if spec.directory not in _SWEPT:  # once per directory and process: a batch makes a writer per line
            _SWEPT.add(spec.directory)
            remove_stale_parts(spec.directory)

    def temp_file(self) -> tuple[IO[bytes], Path]:
        """A hidden temporary file in the output directory, for streaming a download into."""
        try:
            fd, name = tempfile.mkstemp(
                prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=TEMP_SUFFIX, dir=self.spec.directory
            )
            os.fchmod(fd, self.file_mode)
        except OSError as exc:
            raise SaveError(f"cannot write in {self.spec.directory}: {exc.strerror}") from None
        return os.fdopen(fd, "w+b"), Path(name)

    def save_bytes(self, data: bytes, *, index: int, seed: int | None, meta: dict[str, Any]) -> SavedImage:
        """Save image bytes already in memory (base64 answers): checked, tagged and written once."""
        return self._save(data, None, index=index, seed=seed, meta=meta)

    def finish(self, tmp: Path, *, index: int, seed: int | None, meta: dict[str, Any]) -> SavedImage:
        """Check the download in ``tmp``, tag it, and move it into place; ``tmp`` is always consumed."""
        try:
            return self._save(tmp.read_bytes(), tmp, index=index, seed=seed, meta=meta)
        finally:
            tmp.unlink(missing_ok=True)

    def save_pil(self, img: Any, *, index: int, seed: int | None, meta: dict[str, Any]) -> SavedImage:
        """Save an image made in this process (local pipelines): encoded once, then tagged."""
        fmt = self.spec.fmt or "png"
        if fmt == "svg":
            raise UsageError(
                "local pipelines draw raster images: --format svg needs a gateway that answers SVG",
                hint="use --format png, jpeg, webp or gif",
            )
        data = _encode(img, fmt, frames=1)
        layout = parse(data, fmt)
        meta = {**meta, "width": layout.width, "height": layout.height}
        pieces = layout.with_metadata(self._metadata(layout, meta)) if self.spec.metadata else [data]
        return self._deliver(pieces, None, index=index, seed=seed, fmt=fmt, size=(layout.width, layout.height))

    # ------------------------------------------------------------------------------------ the save path
    def _refuse(self, index: int, why: str, hint: str | None = None) -> DownloadError:
        return DownloadError(f"{self.provider}: image {index} is not a valid image: {why}", hint=hint)

    def _save(
        self, data: bytes, received: Path | None, *, index: int, seed: int | None, meta: dict[str, Any]
    ) -> SavedImage:
        kind = sniff(data)
        wanted = self.spec.fmt
        if wanted == "svg" or kind == "SVG":
            return self._save_svg(data, received, kind, index=index, seed=seed, meta=meta)
        source = RASTER_KINDS.get(kind)
        if source is None:
            arrived = f"{kind} ({human_size(len(data))})"
            raise self._refuse(index, f"{arrived} arrived; imagegen saves PNG, JPEG, WebP and GIF")
        try:
            layout = parse(data, source)
        except ContainerError as exc:
            raise self._refuse(index, str(exc)) from None
        self._check_pixels(index, layout.width, layout.height, layout.frames)
        fmt = wanted or source
        notes: tuple[str, ...] = ()
        img = self._decode(data, layout, index)
        with img:
            if fmt != source:
                # --format asks for another format: the one re-encode.
                try:
                    data = _encode(img, fmt, frames=layout.frames)
                except Exception as exc:  # noqa: BLE001 - Pillow's encoders raise many kinds of error
                    raise SaveError(
                        f"cannot convert image {index} from {_DISPLAY[source]} ({img.mode}) to {_DISPLAY[fmt]}: "
                        f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:120]}",
                        hint="drop --format to keep the image as it arrived",
                    ) from None
                notes = _conversion_notes(index, layout, fmt)
                layout = parse(data, fmt)
                received = None
        meta = {**meta, "width": layout.width, "height": layout.height}
        pieces = layout.with_metadata(self._metadata(layout, meta)) if self.spec.metadata else None
        return self._deliver(
            pieces if pieces is not None else [data],
            received if pieces is None else None,
            index=index,
            seed=seed,
            fmt=fmt,
            size=(layout.width, layout.height),
            notes=notes,
        )

    def _save_svg(
        self, data: bytes, received: Path | None, kind: str, *, index: int, seed: int | None, meta: dict[str, Any]
    ) -> SavedImage:
        arrived = f"{kind} ({human_size(len(data))})"
        if self.spec.fmt != "svg":
            raise self._refuse(index, f"{arrived} arrived", hint="pass --format svg to keep SVG answers")
        if kind not in ("SVG", "XML"):  # XML: an <svg> root further in than sniffing looks is still SVG
            raise DownloadError(
                f"{self.provider}: image {index}: SVG output was asked for, but {arrived} arrived",
                hint="drop --format svg (or the .svg file name), or use a model that draws SVG",
            )
        try:
            document = parse_svg(data)
        except ContainerError as exc:
            raise self._refuse(index, str(exc)) from None
        meta = {**meta, "width": document.width, "height": document.height}
        pieces = document.with_comment(svg_comment(meta)) if self.spec.metadata else None
        return self._deliver(
            pieces if pieces is not None else [data],
            received if pieces is None else None,
            index=index,
            seed=seed,
            fmt="svg",
            size=(document.width, document.height),
        )

    def _decode(self, data: bytes, layout: Layout, index: int) -> Any:
        """Decode every frame once (proof that the pixels are there); only the four formats may decode.

        Naming the format keeps Pillow's other plugins out: an EPS can never reach Ghostscript.
        """
        from PIL import GifImagePlugin, Image, JpegImagePlugin, PngImagePlugin, WebPImagePlugin

        del GifImagePlugin, JpegImagePlugin, PngImagePlugin, WebPImagePlugin  # imported to register them
        what = f"{_DISPLAY[layout.fmt]} ({human_size(len(data))})"
        try:
            with warnings.catch_warnings():
                # Pillow warns from 89 MP on (our own limits decide, with a one-line error) and about odd
                # tags: a gateway's image is either refused in one line or saved, never chattered about.
                warnings.simplefilter("ignore")
                img = Image.open(io.BytesIO(data), formats=[_PIL_NAMES[layout.fmt]])
                try:
                    frames = int(getattr(img, "n_frames", 1))
                    if img.size != (layout.width, layout.height):
                        raise self._refuse(index, f"{what} whose headers disagree on its size")
                    self._check_pixels(index, img.width, img.height, frames)
                    for frame in range(frames):
                        img.seek(frame)
                        img.load()
                    img.seek(0)
                except BaseException:
                    img.close()
                    raise
        except ImagegenError:
            raise
        except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise many kinds of error on hostile data
            detail = str(exc).splitlines()[0][:120] if str(exc) else ""
            raise self._refuse(index, f"{what} that does not decode ({type(exc).__name__}: {detail})") from None
        if layout.fmt != "jpeg":  # a JPEG's extra frames (MPO) are stereo views, not an animation
            layout.frames = frames
        return img

    def _check_pixels(self, index: int, width: int, height: int, frames: int) -> None:
        """The decompression-bomb limit, from the headers, before any pixel is decoded."""
        if width * height * max(1, frames) <= PIXEL_LIMIT:
            return
        size = f"{width}x{height}" if frames <= 1 else f"{frames} frames of {width}x{height}"
        raise DownloadError(
            f"{self.provider}: image {index} is {size}, over the {PIXEL_LIMIT // 1_000_000} MP limit "
            "(refused as a possible decompression bomb)"
        )

    def _metadata(self, layout: Layout, meta: dict[str, Any]) -> Metadata:
        if layout.fmt == "png":
            return Metadata(texts=png_texts(meta))
        if layout.fmt == "jpeg":
            standard, extension = jpeg_xmp(meta, XMP_STANDARD_MAX)
            exif = exif_tiff(meta, layout.exif, limit=JPEG_SEGMENT_MAX - 6)
            if extension is None:
                return Metadata(exif=exif, xmp=standard)
            return Metadata(exif=exif, xmp_extended=(standard, extension))
        if layout.fmt == "webp":
            return Metadata(exif=exif_tiff(meta, layout.exif), xmp=xmp_packet(meta))
        return Metadata(comment=gif_comment(meta))

    # ------------------------------------------------------------------------------------ writing
    def _deliver(
        self,
        pieces: Sequence[bytes | memoryview],
        received: Path | None,
        *,
        index: int,
        seed: int | None,
        fmt: str,
        size: tuple[int, int],
        notes: tuple[str, ...] = (),
    ) -> SavedImage:
        """Write ``pieces`` (or link ``received`` unchanged) into place, or onto stdout."""
        if self.spec.to_stdout:
            for piece in pieces:
                sys.stdout.buffer.write(piece)
            sys.stdout.buffer.flush()
            return SavedImage("-", index, size[0], size[1], fmt, seed, notes=notes)
        written: Path | None = None
        try:
            if received is not None:
                _fsync_file(received)  # the download as it arrived is the file: make it durable first
                source = received
            else:
                written = source = self._write(pieces)
            path = self._place(source, index, seed, fmt)
        finally:
            if written is not None:
                written.unlink(missing_ok=True)
        return SavedImage(str(path), index, size[0], size[1], fmt, seed, notes=notes)

    def _write(self, pieces: Sequence[bytes | memoryview]) -> Path:
        handle, path = self.temp_file()
        try:
            with handle:
                # A write error here (a full disk) is an OSError for the caller, not a bad image.
                for piece in pieces:
                    handle.write(piece)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def _candidate_names(self, index: int, seed: int | None, fmt: str) -> list[str]:
        if self.spec.file_name is not None:
            base = self.spec.file_name_for(index, self.n)
        else:
            suffix = _template_suffix(self.spec.template)
            # A template ending in this format's own extension (x.jpeg) keeps it as written.
            ext = suffix[1:] if suffix and _SUFFIX_FORMATS.get(suffix) == fmt else _EXT[fmt]
            base = render_name(
                self.spec.template,
                ext=ext,
                when=self.started,
                prompt=self.prompt,
                index=index,
                n=self.n,
                seed=seed,
                provider=self.provider,
                model=self.model,
            )
        stem, _, ext = base.rpartition(".")
        return [base] + [f"{stem}-{k}.{ext}" for k in range(2, 1000)]

    def _place(self, source: Path, index: int, seed: int | None, fmt: str) -> Path:
        directory = self.spec.directory
        names = self._candidate_names(index, seed, fmt)
        if self.spec.file_name is not None and self.spec.overwrite:
            target = directory / names[0]
            os.replace(source, target)
            _fsync_dir(directory)
            return target
        for name in names:
            target = directory / name
            if self.on_target is not None:
                # Journalled before the name exists: a crash right after placing leaves a claim naming the file,
                # and the next run adopts that file instead of making the image again.
                self.on_target(index, str(target))
            try:
                # link() fails when the name exists: an atomic "create only if absent" for the final name.
                os.link(source, target)
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS):
                    raise SaveError(f"cannot save {target}: {exc.strerror}") from None
                if not rename_no_replace(source, target):  # filesystems without hard links
                    continue
            _fsync_dir(directory)
            return target
        raise SaveError(f"no free file name for image {index} in {directory}")


def _conversion_notes(index: int, layout: Layout, fmt: str) -> tuple[str, ...]:
    if layout.frames <= 1:
        return ()
    what = f"image {index}: animated {_DISPLAY[layout.fmt]} ({layout.frames} frames)"
    if fmt == "jpeg":
        return (f"{what} saved as {_DISPLAY[fmt]} (--format {fmt}): first frame only",)
    return (f"{what} converted to animated {_DISPLAY[fmt]} (--format {fmt})",)


def _encode(img: Any, fmt: str, *, frames: int) -> bytes:
    """Encode once with Pillow, all frames where the format animates (metadata is added afterwards)."""
    options: dict[str, Any] = {}
    if fmt == "png":
        options["compress_level"] = PNG_COMPRESS_LEVEL
        if img.mode not in ("1", "L", "LA", "I;16", "P", "RGB", "RGBA"):
            img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    elif fmt == "jpeg":
        options["quality"] = LOSSY_QUALITY
        if img.mode not in ("RGB", "L", "CMYK"):
            img = img.convert("RGB")
    elif fmt == "webp":
        options["quality"] = LOSSY_QUALITY
    elif fmt == "gif" and img.mode not in ("1", "L", "P", "RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    if frames > 1 and fmt != "jpeg":
        options["save_all"] = True
    buffer = io.BytesIO()
    img.save(buffer, _PIL_NAMES[fmt], **options)
    return buffer.getvalue()
