"""The atomic image writer: decode check, conversion, metadata, no-overwrite rename.

Every image goes to a temporary file in the output directory first, is decoded in full (with a
pixel limit), is re-encoded only when metadata or a format change asks for it, and is then linked
into place under a name that does not exist yet. A killed run leaves at most a hidden ``.part``
file, never a half-written image under a real name.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from imagegen_cli.errors import DownloadError, SaveError, UsageError
from imagegen_cli.store.metadata import a1111_parameters, metadata_json, xmp_packet
from imagegen_cli.store.naming import DEFAULT_TEMPLATE, check_template, render_name, safe_component

FORMATS = ("png", "jpeg", "webp")
PIXEL_LIMIT = 100_000_000  # 100 MP: far above any gateway's output, far below a decompression bomb
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024
_SUFFIX_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}
_PIL_NAMES = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_EXT = {"png": "png", "jpeg": "jpg", "webp": "webp"}
TEMP_PREFIX = ".imagegen-"
TEMP_SUFFIX = ".part"


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
            raise UsageError(f"invalid --format {fmt!r}", hint="use png, jpeg or webp")
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
        if out and suffix in _SUFFIX_FORMATS and not target.is_dir() and not out.endswith(("/", os.sep)):
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
    """An image on disk (or on stdout)."""

    path: str
    index: int
    width: int
    height: int
    fmt: str
    seed: int | None = None
    url: str | None = None
    revised_prompt: str | None = None


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class ImageWriter:
    """Writes each finished image of one run according to an :class:`OutputSpec`."""

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

    def temp_file(self) -> tuple[IO[bytes], Path]:
        """A hidden temporary file in the output directory, for streaming a download into."""
        try:
            fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=self.spec.directory)
            os.fchmod(fd, self.file_mode)
        except OSError as exc:
            raise SaveError(f"cannot write in {self.spec.directory}: {exc.strerror}") from None
        return os.fdopen(fd, "w+b"), Path(name)

    def save_bytes(self, data: bytes, *, index: int, seed: int | None, meta: dict[str, Any]) -> SavedImage:
        """Save image bytes already in memory (base64 answers, local pipelines)."""
        handle, tmp = self.temp_file()
        try:
            with handle:
                handle.write(data)
            return self.finish(tmp, index=index, seed=seed, meta=meta)
        finally:
            tmp.unlink(missing_ok=True)

    def finish(self, tmp: Path, *, index: int, seed: int | None, meta: dict[str, Any]) -> SavedImage:
        """Decode ``tmp``, convert and tag it, and move it into place; ``tmp`` is always consumed."""
        encoded: Path | None = None
        try:
            img = self._decode(tmp, index)
            with img:
                source_fmt = (img.format or "").lower()
                fmt = self.spec.fmt or (source_fmt if source_fmt in FORMATS else "png")
                width, height = img.size
                meta = {**meta, "width": width, "height": height}
                if fmt == source_fmt and not self.spec.metadata:
                    final_source = tmp  # exact bytes as received: nothing to add or change
                else:
                    # A write error here (a full disk) is an OSError for the caller, not a bad image.
                    encoded = self._encode(img, fmt, source_fmt, meta)
                    final_source = encoded
            return self._deliver(final_source, index=index, seed=seed, fmt=fmt, size=(width, height))
        finally:
            tmp.unlink(missing_ok=True)
            if encoded is not None:
                encoded.unlink(missing_ok=True)

    def _decode(self, tmp: Path, index: int) -> Any:
        """Open and fully decode an image file, refusing decompression bombs; errors become one line."""
        from PIL import Image, UnidentifiedImageError

        try:
            with warnings.catch_warnings():
                # Pillow warns from 89 MP on; our own limit below decides, with a one-line error.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(tmp)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise DownloadError(
                f"{self.provider}: image {index} is not a valid image ({type(exc).__name__}: {str(exc)[:120]})"
            ) from None
        if img.width * img.height > PIXEL_LIMIT:
            img.close()
            raise DownloadError(
                f"{self.provider}: image {index} is {img.width}x{img.height}, over the "
                f"{PIXEL_LIMIT // 1_000_000} MP limit (refused as a possible decompression bomb)"
            )
        try:
            img.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            img.close()
            raise DownloadError(
                f"{self.provider}: image {index} is not a valid image ({type(exc).__name__}: {str(exc)[:120]})"
            ) from None
        return img

    def save_pil(self, img: Any, *, index: int, seed: int | None, meta: dict[str, Any]) -> SavedImage:
        """Save an image made in this process (local pipelines): encoded once, straight to a temp file."""
        fmt = self.spec.fmt or "png"
        encoded = self._encode(img, fmt, "", {**meta, "width": img.width, "height": img.height})
        try:
            return self._deliver(encoded, index=index, seed=seed, fmt=fmt, size=(img.width, img.height))
        finally:
            encoded.unlink(missing_ok=True)

    def _deliver(self, source: Path, *, index: int, seed: int | None, fmt: str, size: tuple[int, int]) -> SavedImage:
        if self.spec.to_stdout:
            sys.stdout.buffer.write(source.read_bytes())
            sys.stdout.buffer.flush()
            return SavedImage("-", index, size[0], size[1], fmt, seed)
        path = self._place(source, index, seed, fmt)
        return SavedImage(str(path), index, size[0], size[1], fmt, seed)

    def _encode(self, img: Any, fmt: str, source_fmt: str, meta: dict[str, Any]) -> Path:
        from PIL import ExifTags, Image, PngImagePlugin

        options: dict[str, Any] = {}
        if fmt == "png":
            if self.spec.metadata:
                info = PngImagePlugin.PngInfo()
                info.add_text("parameters", a1111_parameters(meta))
                info.add_itxt("imagegen", metadata_json(meta))
                options["pnginfo"] = info
            options["optimize"] = False
        else:
            if fmt == "jpeg" and img.mode not in ("RGB", "L", "CMYK"):
                img = img.convert("RGB")
            if self.spec.metadata:
                exif = Image.Exif()
                exif[ExifTags.Base.ImageDescription] = metadata_json(meta)
                exif[ExifTags.Base.Software] = str(meta.get("generator", "imagegen"))
                # UserComment in A1111's encoding, which other tools read back as "parameters".
                exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = b"UNICODE\0" + a1111_parameters(
                    meta
                ).encode("utf-16-be")
                options["exif"] = exif
                options["xmp"] = xmp_packet(meta)
            if fmt == "jpeg":
                options["quality"] = "keep" if source_fmt == "jpeg" else 95
            else:
                options["quality"] = 95
        handle, path = self.temp_file()
        try:
            with handle:
                buffer = io.BytesIO()
                img.save(buffer, _PIL_NAMES[fmt], **options)
                handle.write(buffer.getbuffer())
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
            base = render_name(
                self.spec.template,
                ext=_EXT[fmt],
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
            try:
                # link() fails when the name exists: an atomic "create only if absent" for the final name.
                os.link(source, target)
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EMLINK):
                    if target.exists():
                        continue
                    os.rename(source, target)  # filesystems without hard links
                    _fsync_dir(directory)
                    return target
                raise SaveError(f"cannot save {target}: {exc.strerror}") from None
            _fsync_dir(directory)
            return target
        raise SaveError(f"no free file name for image {index} in {directory}")
