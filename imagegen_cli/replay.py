"""``generate --from IMAGE``: the parameters stored in an image, as the flags that make it again.

The record is the image's :class:`~imagegen_cli.meta.ImageMeta` (or an A1111 ``parameters`` chunk). Every flag the
user gives wins over the stored value; what is not given is taken from the record: model, prompt, negative prompt,
seed (the image's own, so ``-n 1`` makes that image again), size, steps, guidance, scheduler, LoRAs, quantization,
variant, quality, style, ``--param`` values, strength, input fidelity and the input images (found again by name
beside the image or in the working directory, and checked against their stored SHA-256).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagegen_cli.errors import UsageError
from imagegen_cli.meta import ImageMeta

if TYPE_CHECKING:
    from imagegen_cli.inputs import SourceImage

__all__ = ["Replay", "read_replay"]

_HINT = "give an image imagegen saved with its metadata (not --no-metadata), or an A1111 PNG"


@dataclass(frozen=True)
class Replay:
    """An image's stored parameters, ready to fill the flags that were not given."""

    path: Path
    meta: ImageMeta

    @property
    def prompt(self) -> str:
        if not self.meta.prompt:
            raise UsageError(
                f"--from {self.path}: the record holds no prompt", hint='give one: imagegen generate "..."'
            )
        return self.meta.prompt

    @property
    def model_ref(self) -> str:
        """``provider:model`` as stored; an A1111 image's model only where it names one imagegen knows."""
        meta = self.meta
        if meta.provider and meta.provider != "a1111" and meta.model:
            return f"{meta.provider}:{meta.model}"
        from imagegen_cli.local.catalog import LOCAL_MODELS

        if meta.model in LOCAL_MODELS:
            return f"local:{meta.model}"
        named = f" ({meta.model})" if meta.model else ""
        raise UsageError(
            f"--from {self.path}: the model of this image{named} is not one imagegen knows",
            hint="name one with -m, e.g. -m local:sdxl-turbo",
        )

    def other_than(self, model: str | None) -> bool:
        """Whether ``model`` (``-m``, or the stored one) is another model than the one that made the image."""
        try:
            return model is not None and model.removeprefix("local:") != self.model_ref.removeprefix("local:")
        except UsageError:  # an A1111 image of a model imagegen does not know: -m is another by definition
            return True

    def fill(self, given: dict[str, Any], images_given: bool, other_model: bool = False) -> dict[str, Any]:
        """``given`` (the flags, None where not given) with the stored values where a flag was not given.

        With ``other_model`` (``-m`` names another model) only what any model takes is filled: prompt, negative
        prompt, seed, steps, guidance, quality and style, not the size, ``--param`` values or local settings,
        which belong to the model that made the image.
        """
        meta = self.meta
        stored: dict[str, Any] = {
            "n": 1,
            "seed": meta.seed,
            "negative_prompt": meta.negative_prompt,
            "steps": meta.steps,
            "guidance": meta.guidance,
            "quality": meta.quality,
            "style": meta.style,
            "strength": meta.strength,
            "input_fidelity": meta.input_fidelity,
            "quantize": meta.quantize,
            "variant": meta.variant,
            "scheduler": _scheduler(meta),
            "lora": [f"{lora.source}:{lora.scale:g}" for lora in meta.loras] or None,
            "param": [f"{key}={_json(value)}" for key, value in meta.params.items()] or None,
        }
        # The size as asked (--size, else --ratio/--resolution), else the file's own size for a local image: a
        # local model's default size is the same, but a gateway's "auto" need not be.
        if meta.size:
            stored["size"] = meta.size
        elif meta.ratio:
            stored["ratio"], stored["resolution"] = meta.ratio, meta.resolution
        elif meta.provider in ("local", "a1111") and meta.width and meta.height:
            stored["size"] = f"{meta.width}x{meta.height}"
        if any(given.get(key) is not None for key in ("size", "ratio", "resolution")):
            stored.pop("size", None), stored.pop("ratio", None), stored.pop("resolution", None)
        if other_model:
            for key in ("size", "ratio", "resolution", "param", "lora", "quantize", "variant", "scheduler"):
                stored.pop(key, None)
        if images_given and given.get("strength") is None and meta.strength is None:
            stored.pop("strength")
        return {key: value if value is not None else stored.get(key) for key, value in given.items()}

    def inputs(
        self, images: tuple[SourceImage, ...], mask: SourceImage | None
    ) -> tuple[tuple[SourceImage, ...], SourceImage | None]:
        """The inputs given, else the stored ones, found again by name and checked by SHA-256."""
        given_images = bool(images)  # new images: the stored mask was drawn for the old ones
        recorded = [entry for entry in self.meta.inputs if entry.role == "image"]
        recorded_mask = next((entry for entry in self.meta.inputs if entry.role == "mask"), None)
        if not images and recorded:
            images = tuple(self._find(entry.name, entry.sha256, "image") for entry in recorded)
        if mask is None and recorded_mask is not None and images and not given_images:
            mask = self._find(recorded_mask.name, recorded_mask.sha256, "mask")
        return images, mask

    def _find(self, name: str, sha256: str, role: str) -> SourceImage:
        from imagegen_cli.inputs import MAX_INPUT_BYTES, load_input

        if name.startswith(("http://", "https://")):
            return load_input(name)
        flag = "--image" if role == "image" else "--mask"
        if Path(name).name != name or name in ("", ".", "..") or not re.fullmatch(r"[0-9a-f]{64}", sha256):
            # The record is the image's, which may come from anywhere: a plain file name, never a path to read.
            raise UsageError(
                f"--from {self.path}: its {role} record is not a plain file name", hint=f"give it: {flag} PATH"
            )
        candidates = [self.path.parent / name, Path.cwd() / name]
        if name == "stdin":
            from imagegen_cli.config import data_dir

            candidates = [*data_dir().joinpath("inputs").glob(f"{sha256}.*")]
        for candidate in candidates:
            if not candidate.is_file() or candidate.stat().st_size > MAX_INPUT_BYTES:
                continue
            if hashlib.sha256(candidate.read_bytes()).hexdigest() == sha256:
                return load_input(str(candidate), "mask" if role == "mask" else "image")
        raise UsageError(
            f"--from {self.path}: its {role} {name} (SHA-256 {sha256[:12]}…) was not found beside it or here",
            hint=f"give it again: {flag} PATH",
        )


def _scheduler(meta: ImageMeta) -> str | None:
    """A local image's scheduler class; an A1111 sampler name (``Euler a``, ``DPM++ 2M Karras``) where imagegen
    has the same one; else None (the model's own)."""
    if meta.provider == "local":
        return meta.scheduler
    if meta.provider != "a1111" or not meta.scheduler:
        return None
    from imagegen_cli.local.schedulers import SCHEDULERS

    name = meta.scheduler.lower().replace(" karras", "-karras").replace(" a", "-a").replace(" ", "")
    return name if name in SCHEDULERS else None


def _json(value: object) -> str:
    import json

    return value if isinstance(value, str) and not _ambiguous(value) else json.dumps(value, ensure_ascii=False)


def _ambiguous(text: str) -> bool:
    """A string --param would parse as JSON (true, 3): it must be quoted to stay a string."""
    from imagegen_cli.jsontypes import loads

    try:
        loads(text)
    except ValueError:
        return False
    return True


def read_replay(path_text: str) -> Replay:
    """The record stored in ``path_text``; a file without one is a one-line usage error."""
    from imagegen_cli.store.reader import NoParameters, read_meta

    path = Path(path_text).expanduser()
    try:
        meta = read_meta(path)
    except NoParameters as exc:
        raise UsageError(f"--from: {exc}", hint=_HINT) from None
    return Replay(path, meta)
