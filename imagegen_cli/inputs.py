"""Images a generation starts from (``--image``, ``--mask``): read once, checked, named and hashed.

A :class:`SourceImage` is a local file (or standard input, kept in imagegen's data folder so that a resume can read
it again) or a URL (passed on as given to gateways that take URLs, never fetched here). It holds the bytes, their
SHA-256, the decoded size and format; the journal keeps everything but the bytes, and a resumed job reads the file
again and refuses it when its SHA-256 changed. :func:`edit_area` turns either kind of mask (PNG alpha, or black
and white) into one meaning: white where the image is to change. Pure data and Pillow: no engine, no store.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from imagegen_cli.errors import UsageError
from imagegen_cli.localfiles import human_bytes, read_bounded, read_stream_bounded

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["INPUT_FIDELITIES", "MAX_INPUT_BYTES", "SourceImage", "edit_area", "load_input"]

MAX_INPUT_BYTES = 50 << 20  # OpenAI's bound per input image; no gateway documents a larger one
MAX_INPUT_PIXELS = 64 << 20  # a decompression bomb is refused before it is decoded
INPUT_FIDELITIES = ("low", "high")
CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
_HINT = "give a PNG, JPEG or WebP file, a URL, or - for standard input"

Role = Literal["image", "mask"]


@dataclass(frozen=True)
class SourceImage:
    """One input image: where it came from and what it is; its bytes are read (and checked) when used."""

    name: str  # the file name (or the URL's last segment): what records and notes show
    source: str  # an absolute path, or a URL
    role: Role = "image"
    sha256: str | None = None  # None for a URL: never read here
    width: int | None = None
    height: int | None = None
    format: str | None = None  # PNG, JPEG or WEBP
    byte_size: int | None = None

    @property
    def is_url(self) -> bool:
        return self.source.startswith(("http://", "https://"))

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES.get(self.format or "", "application/octet-stream")

    @property
    def size(self) -> tuple[int, int] | None:
        return (self.width, self.height) if self.width and self.height else None

    def read(self) -> bytes:
        """The bytes, read again from the file and refused if it changed since it was checked (or resumed)."""
        if self.is_url:
            raise UsageError(f"{self.name} is a URL: its bytes are not read here", hint="download it first")
        data = _read_file(Path(self.source), self.role)
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise UsageError(
                f"{self.role} {self.source} changed since the job started (its SHA-256 differs)",
                hint="restore the original file, or start a new job without --resume",
            )
        return data

    def decoded(self) -> Image.Image:
        """The image, decoded (RGB, or RGBA/L for a mask as it is)."""
        from PIL import Image

        image = Image.open(io.BytesIO(self.read()))
        image.load()
        return image

    def to_dict(self) -> dict[str, Any]:
        """The journal's form: everything but the bytes."""
        keys = ("name", "source", "role", "sha256", "width", "height", "format", "byte_size")
        return {key: getattr(self, key) for key in keys if getattr(self, key) is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceImage:
        """The journal's form back; the bytes are read again (and checked) when they are needed."""
        role: Role = "mask" if data.get("role") == "mask" else "image"
        return cls(
            name=str(data["name"]),
            source=str(data["source"]),
            role=role,
            sha256=data.get("sha256"),
            width=data.get("width"),
            height=data.get("height"),
            format=data.get("format"),
            byte_size=data.get("byte_size"),
        )


def load_input(text: str, role: Role = "image", stdin: BinaryIO | None = None) -> SourceImage:
    """Read and check one ``--image``/``--mask`` value: a path, a URL or ``-`` (standard input).

    The file must exist, be at most 50 MiB and decode as PNG, JPEG or WebP; else a usage error (exit 2).
    """
    flag = "--image" if role == "image" else "--mask"
    if text.startswith(("http://", "https://")):
        if role == "mask":
            raise UsageError("--mask takes a file, not a URL", hint="download it first, then --mask FILE")
        return SourceImage(name=text.rstrip("/").rsplit("/", 1)[-1] or text, source=text, role=role)
    if text == "-":
        import sys

        stream = stdin if stdin is not None else sys.stdin.buffer
        data = read_stream_bounded(
            stream, MAX_INPUT_BYTES, lambda why: UsageError(f"{flag} - (stdin) {why}", hint="give a smaller image")
        )
        if not data:
            raise UsageError(f"{flag} -: standard input is empty", hint="pipe an image in: ... -o - | imagegen ...")
        image = _checked(data, f"{flag} - (stdin)", role)
        return _kept(image, data)
    if not text.strip():
        raise UsageError(f"{flag} is empty", hint=_HINT)
    path = Path(text).expanduser()
    try:
        data = _read_file(path, role)
    except FileNotFoundError:
        raise UsageError(f"{flag} {text}: no such file", hint=_HINT) from None
    except IsADirectoryError:
        raise UsageError(f"{flag} {text} is a directory", hint=_HINT) from None
    except PermissionError:
        raise UsageError(f"{flag} {text}: permission denied", hint="check the file's permissions") from None
    except OSError as exc:
        raise UsageError(f"{flag} {text}: {exc.strerror or exc}", hint=_HINT) from None
    checked = _checked(data, f"{flag} {text}", role)
    # The bytes are not kept: a batch of a thousand lines would hold a thousand images. Each use reads the file
    # again and checks its SHA-256, so what is sent is what was checked here.
    return SourceImage(**{**checked, "name": path.name, "source": str(path.resolve())})


def image_from_bytes(data: bytes, name: str, role: Role, folder: Path) -> SourceImage:
    """An input that arrived as bytes (an ``imagegen serve`` upload), checked as a file is and written to
    ``folder`` so that the engine reads it as it reads any file; ``name`` is what records show."""
    if len(data) > MAX_INPUT_BYTES:
        raise UsageError(f"{role} {name} is over {MAX_INPUT_BYTES >> 20} MiB")
    checked = _checked(data, f"{role} {name}", role)
    target = folder / f"{checked['sha256']}.{_EXTENSIONS[checked['format']]}"
    target.write_bytes(data)
    return SourceImage(**{**checked, "name": Path(name).name or role, "source": str(target)})


def check_stdin_readers(images: list[str], mask: str | None, *, prompt_reads: bool) -> None:
    """Standard input holds one thing: at most one of the prompt, an ``--image -`` and ``--mask -`` reads it."""
    readers = ["--image -"] * images.count("-") + (["--mask -"] if mask == "-" else [])
    readers += ["the prompt"] if prompt_reads else []
    if len(readers) > 1:
        raise UsageError(
            f"{readers[0]} and {readers[1]} both read standard input",
            hint="standard input holds one thing: give the others as files",
        )


def _read_file(path: Path, role: Role) -> bytes:
    flag = "--image" if role == "image" else "--mask"
    return read_bounded(path, MAX_INPUT_BYTES, lambda why: UsageError(f"{flag} {path} {why}", hint=_HINT))


def _checked(data: bytes, where: str, role: Role) -> dict[str, Any]:
    """Decode ``data`` fully (a truncated file fails here, not at the gateway); its size, format and hash."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in CONTENT_TYPES:
                raise UsageError(f"{where} is {image.format or 'an unknown'} image", hint=_HINT)
            if image.width * image.height > MAX_INPUT_PIXELS:
                raise UsageError(
                    f"{where} is {image.width}x{image.height}: too many pixels to decode",
                    hint=f"give an image under {MAX_INPUT_PIXELS >> 20} megapixels",
                )
            image.load()
            values = {"width": image.width, "height": image.height, "format": image.format}
    except UnidentifiedImageError:
        raise UsageError(f"{where} is not an image", hint=_HINT) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UsageError(f"{where} does not decode ({str(exc)[:80] or type(exc).__name__})", hint=_HINT) from None
    return {**values, "role": role, "sha256": hashlib.sha256(data).hexdigest(), "byte_size": len(data)}


def _kept(checked: dict[str, Any], data: bytes) -> SourceImage:
    """Standard input, written once to ``inputs/SHA256.EXT`` in imagegen's data folder: a resumed job (and the
    replay of its images) reads it from there, as it would a file."""
    from imagegen_cli.config import data_dir

    folder = data_dir() / "inputs"
    target = folder / f"{checked['sha256']}.{_EXTENSIONS[checked['format']]}"
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=".stdin-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as stream:
                stream.write(data)
            os.replace(temporary, target)  # the name is the content's hash: a concurrent writer wrote the same
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return SourceImage(**{**checked, "name": "stdin", "source": str(target)})


def edit_area(mask: Image.Image) -> Image.Image:
    """The mask as one meaning, an ``L`` image, white where the image is to change.

    A mask with transparency says it with alpha (OpenAI's rule: fully transparent pixels are edited); an opaque one
    with black and white (diffusers' rule: white is repainted).
    """
    if mask.mode in ("RGBA", "LA", "PA") or (mask.mode == "P" and "transparency" in mask.info):
        alpha = mask.convert("RGBA").getchannel("A")
        lowest = alpha.getextrema()[0]
        if isinstance(lowest, int) and lowest < 255:
            return alpha.point(lambda value: 255 if value == 0 else 0)
    return mask.convert("L").point(lambda value: 255 if value >= 128 else 0)


def check_input_limit(data_size: int, limit: int, source: SourceImage, where: str) -> None:
    """One input within a model's byte limit (OpenAI's mask: 4 MB), else a usage error."""
    if data_size > limit:
        raise UsageError(
            f"{source.role} {source.name} is {human_bytes(data_size)}; {where} accepts at most {human_bytes(limit)}",
            hint="give a smaller file",
        )
