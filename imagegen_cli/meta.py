"""``ImageMeta``: the one typed record of what made an image, written into every file and read back.

Engines build it (local pipelines and gateways fill the same fields), the writer embeds it losslessly as
JSON (``to_record``), and ``imagegen show``, replay and the gallery read it back (``from_record``). A record
written by an older imagegen, or one with keys this version does not know, still reads: unknown keys are
kept in ``extra`` and survive a round trip. Nothing here imports the store or any engine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imagegen_cli.request import GenerationRequest

__all__ = ["ImageMeta", "InputImage", "LoraRef"]


@dataclass(frozen=True)
class LoraRef:
    """A LoRA applied to the pipeline, as given (a path or a Hub repo), with its scale."""

    source: str
    scale: float = 1.0

    def to_record(self) -> dict[str, Any]:
        return {"source": self.source, "scale": self.scale}


@dataclass(frozen=True)
class InputImage:
    """An image the generation started from (an edit's input, a mask): its name and SHA-256."""

    name: str
    sha256: str
    role: str = "image"  # "image" or "mask"

    def to_record(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "role": self.role}


# Record keys of older versions that now live elsewhere in the record.
_VERSION_KEYS = ("diffusers", "torch", "transformers")


@dataclass(frozen=True)
class ImageMeta:
    """What made one image: the same keys for every engine; ``None`` and empty fields are not written."""

    prompt: str
    provider: str
    model: str
    negative_prompt: str | None = None
    seed: int | None = None
    index: int | None = None
    width: int | None = None  # the file's own pixel size (the writer fills it in)
    height: int | None = None
    size: str | None = None  # what was asked: --size, --ratio, --resolution
    ratio: str | None = None
    resolution: str | None = None
    quality: str | None = None
    style: str | None = None
    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = None
    loras: tuple[LoraRef, ...] = ()
    quantize: str | None = None
    variant: str | None = None
    pipeline: str | None = None  # the pipeline class (local)
    source: str | None = None  # where the weights came from (local)
    device: str | None = None
    dtype: str | None = None
    versions: Mapping[str, str] = field(default_factory=dict)  # the engine's libraries: diffusers, torch
    params: Mapping[str, Any] = field(default_factory=dict)  # --param values sent as given
    inputs: tuple[InputImage, ...] = ()
    strength: float | None = None  # img2img: how far from the input
    input_fidelity: str | None = None
    revised_prompt: str | None = None
    job: str | None = None
    generator: str | None = None  # "imagegen X.Y.Z"
    created: str | None = None  # ISO 8601, UTC
    extra: Mapping[str, Any] = field(default_factory=dict)  # engine details (guidance_knob, prior_steps), unknown keys

    @classmethod
    def of_request(cls, request: GenerationRequest, **values: Any) -> ImageMeta:
        """The record of what was asked (prompt, size, ratio, quality...); ``values`` add or override fields."""
        asked: dict[str, Any] = {
            "prompt": request.prompt,
            "provider": request.provider,
            "model": request.model,
            "negative_prompt": request.negative_prompt,
            "size": str(request.size) if request.size else None,
            "ratio": str(request.ratio) if request.ratio else None,
            "resolution": request.resolution,
            "quality": request.quality,
            "style": request.style,
            "steps": request.steps,
            "guidance": request.guidance,
            "params": dict(request.params),
            "inputs": tuple(
                # A file by its name (never its path: that may say who the user is), a URL as given.
                InputImage(image.source if image.is_url else image.name, image.sha256 or "", image.role)
                for image in (*request.images, *filter(None, [request.mask]))
            ),
            "strength": request.strength,
            "input_fidelity": request.input_fidelity,
        }
        return cls(**{**asked, **values})

    def saved_as(self, *, index: int, seed: int | None, job: str | None) -> ImageMeta:
        """The record a saved file carries: this image's index and seed, its job, imagegen's version, the time."""
        from datetime import UTC, datetime

        from imagegen_cli import __version__

        return self.with_image(
            index=index,
            seed=seed,
            job=job,
            generator=f"imagegen {__version__}",
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    def with_image(self, **values: Any) -> ImageMeta:
        """This record for one image (index, seed, size, job...): a copy with those fields set."""
        return replace(self, **values)

    def to_record(self) -> dict[str, Any]:
        """The flat JSON record embedded in files; empty fields left out, ``extra`` merged at the top level."""
        record: dict[str, Any] = {}
        for item in fields(self):
            if item.name == "extra":
                continue
            value = getattr(self, item.name)
            if value is None or (isinstance(value, tuple | Mapping) and not value):
                continue
            if item.name in ("loras", "inputs"):
                value = [entry.to_record() for entry in value]
            elif isinstance(value, Mapping):
                value = dict(value)
            record[item.name] = value
        for key, value in self.extra.items():
            if key not in record and value is not None:
                record[key] = value
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ImageMeta:
        """Read a record back (tolerant: a value of the wrong type is kept in ``extra``, never an error)."""
        known = {item.name for item in fields(cls)} - {"extra"}
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        versions: dict[str, str] = {}
        for key, value in record.items():
            if key in _VERSION_KEYS and isinstance(value, str):
                versions[key] = value  # written at the top level before ImageMeta existed
            elif key not in known:
                extra[key] = value
            else:
                parsed = _parse_field(key, value)
                if parsed is _BAD:
                    extra[key] = value
                else:
                    values[key] = parsed
        if versions:
            values["versions"] = {**versions, **values.get("versions", {})}
        values.setdefault("prompt", "")
        values.setdefault("provider", "")
        values.setdefault("model", "")
        return cls(**values, extra=extra)


_BAD = object()
_INTS = ("seed", "index", "width", "height", "steps")
_STRS = (
    "prompt", "provider", "model", "negative_prompt", "size", "ratio", "resolution", "quality", "style",
    "scheduler", "quantize", "variant", "pipeline", "source", "device", "dtype", "revised_prompt", "job",
    "generator", "created", "input_fidelity",
)  # fmt: skip


def _parse_field(key: str, value: Any) -> Any:
    if key in _INTS:
        return value if isinstance(value, int) and not isinstance(value, bool) else _BAD
    if key in ("guidance", "strength"):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return _BAD
        return value
    if key in _STRS:
        return value if isinstance(value, str) else _BAD
    if key in ("versions", "params"):
        if not isinstance(value, Mapping):
            return _BAD
        if key == "versions" and not all(isinstance(v, str) for v in value.values()):
            return _BAD
        return dict(value)
    if key == "loras":
        try:
            return tuple(LoraRef(str(entry["source"]), float(entry.get("scale", 1.0))) for entry in value)
        except (TypeError, KeyError, ValueError, AttributeError):
            return _BAD
    if key == "inputs":
        try:
            return tuple(
                InputImage(str(entry["name"]), str(entry["sha256"]), str(entry.get("role", "image"))) for entry in value
            )
        except (TypeError, KeyError, AttributeError):
            return _BAD
    return _BAD
