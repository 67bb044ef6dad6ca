"""Where images go and what they are called: :class:`OutputSpec` from ``-o``, ``--name``, ``--format``.

The spec is decided once per run (and journalled, so a resumed job writes the same way); it checks the
output directory, refuses a file name or format imagegen cannot write, and names each image: a fixed
``-o FILE`` name or a rendered ``--name`` template, with ``-2``, ``-3``... when a name is taken.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from imagegen_cli.errors import UsageError
from imagegen_cli.request import OUTPUT_FORMATS
from imagegen_cli.store.naming import DEFAULT_TEMPLATE, check_template, render_name, safe_component

_SUFFIX_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".gif": "gif", ".svg": "svg"}
# Extensions of image formats imagegen does not write: naming one is a mistake, not a directory name.
_OTHER_IMAGE_SUFFIXES = frozenset({
    ".tif", ".tiff", ".bmp", ".dib", ".heic", ".heif", ".avif", ".avifs", ".jxl", ".jp2", ".j2k", ".jpx", ".jfif",
    ".pjpeg", ".pjp", ".apng", ".ico", ".icns", ".cur", ".psd", ".xcf", ".tga", ".ppm", ".pgm", ".pbm", ".pnm",
    ".pam", ".eps", ".ps", ".exr", ".hdr", ".qoi", ".dds", ".pcx", ".dng", ".raw", ".cr2", ".cr3", ".nef", ".arw",
    ".orf", ".rw2", ".raf", ".emf", ".wmf", ".svgz",
})  # fmt: skip
_ACCEPTED = "png, jpeg, webp, gif or svg"
_EXT = {"png": "png", "jpeg": "jpg", "webp": "webp", "gif": "gif", "svg": "svg"}


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
        if fmt is not None and fmt not in OUTPUT_FORMATS:
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
            if not target.parent.resolve().is_dir():
                # `-o FILE` names a file in a folder that should be there (as cp does); a typo must not become a
                # new tree. `-o DIR/` still creates its folders.
                raise UsageError(
                    f"the folder of {out} does not exist: {target.parent}",
                    hint=f"create it first (mkdir -p {target.parent}), or give -o DIR/ to let imagegen create it",
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

    def candidate_names(
        self,
        index: int,
        n: int,
        fmt: str,
        *,
        when: datetime,
        prompt: str,
        seed: int | None,
        provider: str,
        model: str,
    ) -> list[str]:
        """The name for image ``index`` of ``n``, then its fallbacks (``-2`` ... ``-999``) for when it is taken."""
        if self.file_name is not None:
            base = self.file_name_for(index, n)
        else:
            suffix = _template_suffix(self.template)
            # A template ending in this format's own extension (x.jpeg) keeps it as written.
            ext = suffix[1:] if suffix and _SUFFIX_FORMATS.get(suffix) == fmt else _EXT[fmt]
            base = render_name(
                self.template,
                ext=ext,
                when=when,
                prompt=prompt,
                index=index,
                n=n,
                seed=seed,
                provider=provider,
                model=model,
            )
        stem, _, ext = base.rpartition(".")
        return [base] + [f"{stem}-{k}.{ext}" for k in range(2, 1000)]


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
        raise UsageError(
            f"cannot create output directory {directory}: {exc.strerror}", hint="choose another with -o DIR"
        ) from None
    if not directory.is_dir():
        raise UsageError(f"output path {directory} is not a directory", hint="choose another with -o DIR")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"output directory {directory} is not writable", hint="choose another with -o DIR")
    return directory
