"""The atomic image writer: validation, metadata at the container level, no-overwrite placement.

A gateway's image is kept as it arrived. Its container is checked block by block (``containers``), its
size against the pixel limit, then it is decoded in full once to prove the pixels are there; metadata is
added as container blocks (PNG text chunks, JPEG APP1 EXIF and XMP, WebP EXIF and XMP chunks, a GIF
comment, an SVG comment) around the untouched image data. Only ``--format`` asking for another format
re-encodes, once. Local pipelines encode once, at a fast PNG compression level.

Where the files go and their names come from ``output_spec`` (its ``OutputSpec`` is re-exported here, with
the writer); how a file is put in place without replacing another (``.part`` files, hard links,
``renameat2``) is ``placement``.
"""

from __future__ import annotations

import errno
import io
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from imagegen_cli.errors import DownloadError, ImagegenError, SaveError, UsageError
from imagegen_cli.meta import ImageMeta
from imagegen_cli.store.budget import DECODE_BUDGET
from imagegen_cli.store.containers import (
    JPEG_SEGMENT_MAX,
    RASTER_KINDS,
    XMP_STANDARD_MAX,
    ContainerError,
    Layout,
    Metadata,
    PngLayout,
    human_size,
    parse,
    parse_svg,
    sniff,
)
from imagegen_cli.store.metadata import exif_tiff, gif_comment, jpeg_xmp, png_texts, svg_comment, xmp_packet
from imagegen_cli.store.output_spec import OutputSpec
from imagegen_cli.store.placement import (
    HeldParts,
    Target,
    file_identity,
    fsync_dir,
    fsync_file,
    remove_stale_parts,
    rename_no_replace,
)
from imagegen_cli.store.saved_image import SavedImage

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "LOSSY_QUALITY",
    "MAX_DOWNLOAD_BYTES",
    "PIXEL_LIMIT",
    "PNG_COMPRESS_LEVEL",
    "ImageWriter",
    "OutputSpec",
    "SavedImage",
    "encode_png",
]

PIXEL_LIMIT = 100_000_000  # 100 MP: far above any gateway's output, far below a decompression bomb
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024
# Local renders and conversions: level 4 is the knee on 1024x1024 renders (bench/png_levels.py). Levels 1-3
# (zlib's fast deflate) give nearly the same size; 4 saves 12-15% over them; 5 and 6 save at most 4% more
# for up to 2.7x the time.
PNG_COMPRESS_LEVEL = 4
LOSSY_QUALITY = 95  # JPEG and WebP written by a conversion or a local pipeline
_PIL_NAMES = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "gif": "GIF"}
_DISPLAY = {fmt: kind for kind, fmt in RASTER_KINDS.items()} | {"svg": "SVG"}  # png -> PNG, webp -> WebP...


_SWEPT: set[Path] = set()


class ImageWriter:
    """Writes each finished image of one run according to an :class:`OutputSpec`."""

    # Told each final name just before it is created: a Target, which also says which file goes there.
    on_target: Callable[[int, str], None] | None = None

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
        self.parts = HeldParts()  # the .part files this writer holds, each locked until it is consumed
        self._moved_notes: list[str] = []  # the output folder made again while a download began (said once)
        if spec.directory not in _SWEPT:  # once per directory and process: a batch makes a writer per line
            _SWEPT.add(spec.directory)
            remove_stale_parts(spec.directory)

    def temp_file(self) -> tuple[IO[bytes], Path]:
        """A hidden temporary file in the output directory, for streaming a download into.

        It stays locked after the handle is closed, until :meth:`finish` (or the caller) removes it: a sweep
        by any other run, in any PID namespace, leaves it alone meanwhile.
        """
        try:
            fd, path = self.parts.create(self.spec.directory, self.file_mode)
        except FileNotFoundError:
            # The folder was moved or removed during the run: made again where the run said (once), with a note.
            self._moved_notes.extend(self._ensure_directory(None))
            try:
                fd, path = self.parts.create(self.spec.directory, self.file_mode)
            except OSError as exc:
                raise SaveError(f"cannot write in {self.spec.directory}: {exc.strerror}") from None
        except OSError as exc:
            raise SaveError(f"cannot write in {self.spec.directory}: {exc.strerror}") from None
        return os.fdopen(fd, "w+b"), path

    def save_bytes(self, data: bytes, *, index: int, seed: int | None, meta: ImageMeta) -> SavedImage:
        """Save image bytes already in memory (base64 answers): checked, tagged and written once."""
        return self._save(data, None, index=index, seed=seed, meta=meta)

    def finish(self, tmp: Path, *, index: int, seed: int | None, meta: ImageMeta) -> SavedImage:
        """Check the download in ``tmp``, tag it, and move it into place; ``tmp`` is always consumed."""
        try:
            # Read through the held descriptor: the output folder may have been moved during the download; the
            # image is then written again where the run said it would be.
            data = self.parts.read(tmp)
            return self._save(data, None if self.parts.moved(tmp) else tmp, index=index, seed=seed, meta=meta)
        finally:
            self.parts.discard(tmp)

    def save_pil(self, img: Image.Image, *, index: int, seed: int | None, meta: ImageMeta) -> SavedImage:
        """Save an image made in this process (local pipelines): encoded once, then tagged."""
        fmt = self.spec.fmt or "png"
        if fmt == "svg":
            raise UsageError(
                "local pipelines draw raster images: --format svg needs a gateway that answers SVG",
                hint="use --format png, jpeg, webp or gif",
            )
        data = _encode(img, fmt, frames=1)
        layout = parse(data, fmt)
        record = meta.with_image(width=layout.width, height=layout.height).to_record()
        pieces = layout.with_metadata(self._metadata(layout, record)) if self.spec.metadata else None
        return self._deliver(pieces, data, None, index=index, seed=seed, fmt=fmt, size=(layout.width, layout.height))

    # ------------------------------------------------------------------------------------ the save path
    def _refuse(self, index: int, why: str, hint: str | None = None) -> DownloadError:
        return DownloadError(f"{self.provider}: image {index} is not a valid image: {why}", hint=hint)

    def _save(self, data: bytes, received: Path | None, *, index: int, seed: int | None, meta: ImageMeta) -> SavedImage:
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
        if fmt == source and isinstance(layout, PngLayout) and layout.frames == 1:
            # Kept as it arrived: proving its rows are all there takes megabytes, decoding it hundreds.
            try:
                layout.prove_pixels()
            except ContainerError as exc:
                raise self._refuse(index, str(exc)) from None
        else:
            # Decoding holds every pixel: concurrent saves share one memory budget (a batch of huge images waits).
            pixels = layout.width * layout.height * max(1, layout.frames) * 4 * (2 if fmt != source else 1)
            with DECODE_BUDGET.take(pixels):
                data, layout, notes = self._decode_and_convert(data, layout, source, fmt, index)
            if fmt != source:
                received = None
        record = meta.with_image(width=layout.width, height=layout.height).to_record()
        pieces = layout.with_metadata(self._metadata(layout, record)) if self.spec.metadata else None
        return self._deliver(
            pieces,
            data,
            received,
            index=index,
            seed=seed,
            fmt=fmt,
            size=(layout.width, layout.height),
            notes=notes,
        )

    def _decode_and_convert(
        self, data: bytes, layout: Layout, source: str, fmt: str, index: int
    ) -> tuple[bytes, Layout, tuple[str, ...]]:
        """Decode every frame (the proof the pixels are there); with --format, the one re-encode."""
        img = self._decode(data, layout, index)
        with img:
            if fmt == source:
                return data, layout, ()
            try:
                data = _encode(img, fmt, frames=layout.frames)
            except Exception as exc:  # noqa: BLE001 - Pillow's encoders raise many kinds of error
                raise SaveError(
                    f"cannot convert image {index} from {_DISPLAY[source]} ({img.mode}) to {_DISPLAY[fmt]}: "
                    f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:120]}",
                    hint="drop --format to keep the image as it arrived",
                ) from None
        return data, parse(data, fmt), _conversion_notes(index, layout, fmt)

    def _save_svg(
        self, data: bytes, received: Path | None, kind: str, *, index: int, seed: int | None, meta: ImageMeta
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
        record = meta.with_image(width=document.width, height=document.height).to_record()
        pieces = document.with_comment(svg_comment(record)) if self.spec.metadata else None
        return self._deliver(
            pieces,
            data,
            received,
            index=index,
            seed=seed,
            fmt="svg",
            size=(document.width, document.height),
        )

    def _decode(self, data: bytes, layout: Layout, index: int) -> Image.Image:
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
        pieces: Sequence[bytes | memoryview] | None,
        data: bytes,
        received: Path | None,
        *,
        index: int,
        seed: int | None,
        fmt: str,
        size: tuple[int, int],
        notes: tuple[str, ...] = (),
    ) -> SavedImage:
        """Write ``pieces`` (the file with its metadata) into place, or onto stdout.

        Without metadata (``pieces`` None) the file is ``data`` itself: ``received``, the download when it holds
        exactly that, is then linked into place instead of being written again.
        """
        if pieces is None:
            pieces = [data]
        else:
            received = None  # the file differs from the download
        if self.spec.to_stdout:
            for piece in pieces:
                sys.stdout.buffer.write(piece)
            sys.stdout.buffer.flush()
            return SavedImage("-", index, size[0], size[1], fmt, seed, notes=notes)
        moved, self._moved_notes[:] = list(self._moved_notes), []
        notes = (*notes, *moved, *self._ensure_directory(index))
        written: Path | None = None
        try:
            if received is not None:
                fsync_file(received)  # the download as it arrived is the file: make it durable first
                source = received
            else:
                written = source = self._write(pieces)
            path = self._place(source, index, seed, fmt)
        finally:
            if written is not None:
                self.parts.discard(written)
        return SavedImage(str(path), index, size[0], size[1], fmt, seed, notes=notes)

    def _ensure_directory(self, index: int | None) -> tuple[str, ...]:
        """The output folder, made again (not its parents) when it was moved or removed during the run."""
        directory = self.spec.directory
        if directory.is_dir():
            return ()
        try:
            directory.mkdir()
        except FileExistsError:
            return ()
        except OSError as exc:
            raise SaveError(
                f"cannot save {f'image {index}' if index else 'an image'}: the output folder {directory} is gone"
                f" ({exc.strerror})",
                hint="it was moved or removed during the run; keep it in place until the run ends",
            ) from None
        which = f"image {index} is" if index else "its images are"
        return (f"the output folder {directory} was moved or removed during the run: {which} in a new one",)

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
            self.parts.discard(path)
            raise
        return path

    def _candidate_names(self, index: int, seed: int | None, fmt: str) -> list[str]:
        return self.spec.candidate_names(
            index,
            self.n,
            fmt,
            when=self.started,
            prompt=self.prompt,
            seed=seed,
            provider=self.provider,
            model=self.model,
        )

    def _place(self, source: Path, index: int, seed: int | None, fmt: str) -> Path:
        directory = self.spec.directory
        names = self._candidate_names(index, seed, fmt)
        if self.spec.file_name is not None and self.spec.overwrite:
            target = directory / names[0]
            os.replace(source, target)
            fsync_dir(directory)
            return target
        source_id = file_identity(source.stat())  # what a resume may adopt under the name, and nothing else
        for name in names:
            target = directory / name
            if os.path.lexists(target):
                # Taken (link() would refuse it): journalling it would let a crash right here hand another file
                # to the next run as this image.
                continue
            if self.on_target is not None:
                # Journalled before the name exists: a crash right after placing leaves a claim naming the file,
                # and the next run adopts that file instead of making the image again; only that file, by its
                # identity: a crash before link() leaves a name another job's file may take meanwhile.
                self.on_target(index, Target(str(target), source_id))
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
            fsync_dir(directory)
            return target
        raise SaveError(f"no free file name for image {index} in {directory}")


def _conversion_notes(index: int, layout: Layout, fmt: str) -> tuple[str, ...]:
    if layout.frames <= 1:
        return ()
    what = f"image {index}: animated {_DISPLAY[layout.fmt]} ({layout.frames} frames)"
    if fmt == "jpeg":
        return (f"{what} saved as {_DISPLAY[fmt]} (--format {fmt}): first frame only",)
    return (f"{what} converted to animated {_DISPLAY[fmt]} (--format {fmt})",)


def _encode(img: Image.Image, fmt: str, *, frames: int) -> bytes:
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


def encode_png(img: Image.Image) -> bytes:
    """The PNG an in-process save would encode (before its metadata): what a cluster worker ships to the driver."""
    return _encode(img, "png", frames=1)
