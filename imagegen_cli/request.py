"""The typed generation request and the size / aspect-ratio / resolution-tier arithmetic."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from imagegen_cli.errors import UsageError
from imagegen_cli.jsontypes import loads

if TYPE_CHECKING:
    from imagegen_cli.inputs import SourceImage

OUTPUT_FORMATS = ("png", "jpeg", "webp", "gif", "svg")  # what --format and the format setting accept

QUALITIES = ("standard", "hd", "low", "medium", "high", "xhigh", "max", "auto")
STYLES = ("vivid", "natural")
RESPONSE_FORMATS = ("url", "b64_json")
TIERS = ("1K", "2K", "4K")
MAX_SEED = 2**63 - 1  # seeds are stored and used as signed 64-bit integers
MAX_INPUT_IMAGES = 16  # the most any model takes (OpenAI's GPT image models); each model may take fewer
MAX_IMAGES = 100  # a guard against a typo such as -n 1000 turning into a thousand paid calls

# Output pixels by ratio and tier, as apimart documents them for z-image-turbo; also the table
# used to turn --ratio/--resolution into pixels for free-size providers.
TIER_TABLE: dict[str, dict[str, tuple[int, int]]] = {
    "1:1": {"1K": (1024, 1024), "2K": (2048, 2048)},
    "4:3": {"1K": (1152, 864), "2K": (2048, 1536)},
    "3:4": {"1K": (864, 1152), "2K": (1536, 2048)},
    "16:9": {"1K": (1280, 720), "2K": (2048, 1152)},
    "9:16": {"1K": (720, 1280), "2K": (1152, 2048)},
    "3:2": {"1K": (1248, 832), "2K": (2048, 1360)},
    "2:3": {"1K": (832, 1248), "2K": (1360, 2048)},
}
_TIER_LONG_SIDE = {"1K": 1024, "2K": 2048, "4K": 4096}


@dataclass(frozen=True, order=True)
class Size:
    """A pixel size, written ``WxH``."""

    width: int
    height: int

    @classmethod
    def parse(cls, text: str) -> Size:
        match = re.fullmatch(r"\s*(\d{1,12})\s*[xX×*]\s*(\d{1,12})\s*", text)
        if not match:
            raise UsageError(f"invalid size {text!r}", hint="write it as WIDTHxHEIGHT, e.g. 1024x1024")
        if max(len(match[1].lstrip("0")), len(match[2].lstrip("0"))) > 5:
            raise UsageError(f"size {text.strip()} is too large", hint="give sides under 100000 pixels, e.g. 1024x1024")
        width, height = int(match[1]), int(match[2])
        if width <= 0 or height <= 0:
            raise UsageError(f"invalid size {text!r}: both sides must be positive", hint="e.g. 1024x1024")
        return cls(width, height)

    @property
    def aspect(self) -> float:
        return self.width / self.height

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class Ratio:
    """An aspect ratio, written ``W:H``."""

    width: int
    height: int

    @classmethod
    def parse(cls, text: str) -> Ratio:
        match = re.fullmatch(r"\s*(\d{1,4})\s*:\s*(\d{1,4})\s*", text)
        if not match or int(match[1]) == 0 or int(match[2]) == 0:
            raise UsageError(f"invalid ratio {text!r}", hint="write it as W:H, e.g. 16:9")
        return cls(int(match[1]), int(match[2]))

    @property
    def aspect(self) -> float:
        return self.width / self.height

    def __str__(self) -> str:
        return f"{self.width}:{self.height}"


def parse_tier(text: str) -> str:
    """Normalise ``1k``/``2K``/``4k`` to the upper-case tier name."""
    tier = text.strip().upper()
    if tier not in TIERS:
        raise UsageError(f"invalid resolution {text!r}", hint="use one of " + ", ".join(TIERS))
    return tier


def aspect_distance(a: float, b: float) -> float:
    """Distance between two aspects on a log scale, so 2:1 and 1:2 are equally far from 1:1."""
    return abs(math.log(a) - math.log(b))


def nearest_size(sizes: list[Size], aspect: float, area: int | None = None) -> Size:
    """The size of nearest aspect; ties go to the area nearest ``area`` (else the largest)."""

    def key(size: Size) -> tuple[float, float]:
        area_key = abs(size.width * size.height - area) if area else -(size.width * size.height)
        return (round(aspect_distance(size.aspect, aspect), 6), area_key)

    return min(sizes, key=key)


def nearest_ratio(ratios: list[str], aspect: float) -> str:
    """The ratio string of nearest aspect."""
    return min(ratios, key=lambda text: aspect_distance(Ratio.parse(text).aspect, aspect))


def ratio_tier_pixels(ratio: Ratio, tier: str) -> Size:
    """Pixels for a ratio and tier: the documented table when it has them, else computed."""
    row = TIER_TABLE.get(str(ratio))
    if row and tier in row:
        return Size(*row[tier])
    long_side = float(_TIER_LONG_SIDE[tier])
    if ratio.aspect >= 1:
        width, height = long_side, long_side / ratio.aspect
    else:
        width, height = long_side * ratio.aspect, long_side
    # Gateways that take free sizes want multiples of 16 (OpenAI's rule for gpt-image-2).
    return Size(max(16, round(width / 16) * 16), max(16, round(height / 16) * 16))


def size_to_ratio_tier(size: Size, ratios: list[str], tiers: list[str]) -> tuple[str, str, bool]:
    """Map pixels onto a ratio provider: (ratio, tier, exact) where exact means a table match."""
    for ratio_text, row in TIER_TABLE.items():
        for tier, pixels in row.items():
            if pixels == (size.width, size.height) and ratio_text in ratios and tier in tiers:
                return ratio_text, tier, True
    ratio_text = nearest_ratio(ratios, size.aspect)
    long_side = max(size.width, size.height)
    tier = min(tiers, key=lambda t: abs(_TIER_LONG_SIDE.get(t.upper(), 1024) - long_side))
    reduced = Ratio.parse(ratio_text)
    exact = math.isclose(reduced.aspect, size.aspect) and str(ratio_tier_pixels(reduced, tier)) == str(size)
    return ratio_text, tier, exact


def parse_param(text: str) -> tuple[str, object]:
    """Parse ``KEY=VALUE``: the value as JSON when it parses (true, 3, 0.5), else as a string."""

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"invalid --param {text!r}", hint="write it as KEY=VALUE, e.g. watermark=false")
    try:
        value: object = loads(raw)
    except ValueError:
        value = raw
    return key, value


@dataclass(frozen=True)
class RequestOptions:
    """The request flags: everything of a :class:`GenerationRequest` but the prompt and where it goes.

    Built once from the command line (``GenerateOptions.request``) and checked here, so a bad flag is a usage
    error before any line of a batch is planned.
    """

    n: int = 1
    size: Size | None = None
    ratio: Ratio | None = None
    resolution: str | None = None
    quality: str | None = None
    style: str | None = None
    seed: int | None = None
    negative_prompt: str | None = None
    steps: int | None = None
    guidance: float | None = None
    params: tuple[tuple[str, object], ...] = ()
    response_format: str | None = None
    user: str | None = None
    on_behalf_of: str | None = None
    strict: bool = False
    images: tuple[SourceImage, ...] = ()  # --image: what an edit, img2img or inpainting starts from
    mask: SourceImage | None = None  # --mask: where the first image is to change
    strength: float | None = None  # --strength: img2img, how far from the input (0..1)
    input_fidelity: str | None = None  # --input-fidelity low|high

    def __post_init__(self) -> None:
        self._check_inputs()
        if not 1 <= self.n <= MAX_IMAGES:
            raise UsageError(f"-n {self.n} is out of range", hint=f"ask for 1 to {MAX_IMAGES} images")
        if self.size and self.ratio:
            raise UsageError("--size and --ratio both given", hint="give one of them")
        if self.resolution and self.size:
            raise UsageError("--resolution goes with --ratio, not --size", hint="drop one of them")
        if self.quality is not None and self.quality not in QUALITIES:
            raise UsageError(f"invalid --quality {self.quality!r}", hint="use one of " + ", ".join(QUALITIES))
        if self.style is not None and self.style not in STYLES:
            raise UsageError(f"invalid --style {self.style!r}", hint="use vivid or natural")
        if self.response_format is not None and self.response_format not in RESPONSE_FORMATS:
            raise UsageError(f"invalid --response-format {self.response_format!r}", hint="use url or b64_json")
        if self.steps is not None and self.steps < 1:
            raise UsageError(f"--steps {self.steps} is too few", hint="give at least 1 step (e.g. --steps 4)")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED - (self.n - 1):
            # Image i gets seed+i; every one must fit a signed 64-bit integer (the journal's, torch's generators).
            raise UsageError(
                f"--seed {self.seed} is out of range",
                hint=f"give a seed from 0 to {MAX_SEED - (self.n - 1)} (image i gets seed+i; -n {self.n})",
            )
        if self.guidance is not None and not math.isfinite(self.guidance):
            raise UsageError(f"--guidance {self.guidance} is not a number", hint="give a finite number, e.g. 4.5")

    def _check_inputs(self) -> None:
        from imagegen_cli.inputs import INPUT_FIDELITIES

        if len(self.images) > MAX_INPUT_IMAGES:
            raise UsageError(
                f"{len(self.images)} --image inputs; no model takes more than {MAX_INPUT_IMAGES}",
                hint="give fewer images",
            )
        if self.mask is not None:
            if not self.images:
                raise UsageError(
                    "--mask needs --image", hint="imagegen generate PROMPT --image photo.png --mask mask.png"
                )
            first = self.images[0]
            if first.size and self.mask.size and first.size != self.mask.size:
                raise UsageError(
                    f"--mask is {self.mask.width}x{self.mask.height}, the first --image "
                    f"{first.width}x{first.height}: they must be the same size",
                    hint="make the mask from the first image (same width and height)",
                )
        if self.strength is not None and not (math.isfinite(self.strength) and 0 <= self.strength <= 1):
            raise UsageError(f"--strength {self.strength} is out of range", hint="give a number from 0 to 1, e.g. 0.6")
        if self.strength is not None and not self.images:
            raise UsageError("--strength needs --image", hint="it says how far from the input image to go")
        if self.input_fidelity is not None:
            if self.input_fidelity not in INPUT_FIDELITIES:
                raise UsageError(f"invalid --input-fidelity {self.input_fidelity!r}", hint="use low or high")
            if not self.images:
                raise UsageError("--input-fidelity needs --image", hint="it says how closely to follow the input")

    def to_request(self, prompt: str, provider: str, model: str, base_url: str | None = None) -> GenerationRequest:
        values = {f.name: getattr(self, f.name) for f in fields(RequestOptions)}
        return GenerationRequest(prompt=prompt, provider=provider, model=model, base_url=base_url, **values)


@dataclass(frozen=True, kw_only=True)
class GenerationRequest(RequestOptions):
    """What the user asked for, provider-independent: the request flags plus the prompt and where it goes."""

    prompt: str
    provider: str
    model: str
    base_url: str | None = None

    def __post_init__(self) -> None:
        if not self.prompt.strip():
            raise UsageError("the prompt is empty", hint='pass a prompt: imagegen generate "a red fox"')
        super().__post_init__()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the journal (no key can be in here: keys never enter a request)."""
        data: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, Size | Ratio):
                value = str(value)
            elif name == "params":
                value = [[k, v] for k, v in value]
            elif name == "images":
                value = [image.to_dict() for image in value]
            elif name == "mask" and value is not None:
                value = value.to_dict()
            # An unset field is left out; 0 and 0.0 are values (seed 0, guidance 0), though 0 == False.
            if not (value is None or value is False or value in ((), [])) or name in ("prompt", "n"):
                data[name] = value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationRequest:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        if values.get("size"):
            values["size"] = Size.parse(values["size"])
        if values.get("ratio"):
            values["ratio"] = Ratio.parse(values["ratio"])
        values["params"] = tuple((str(k), v) for k, v in values.get("params", []))
        if values.get("images") or values.get("mask"):
            from imagegen_cli.inputs import SourceImage

            values["images"] = tuple(SourceImage.from_dict(image) for image in values.get("images", []))
            values["mask"] = SourceImage.from_dict(values["mask"]) if values.get("mask") else None
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def seed_for(self, index: int) -> int | None:
        """Image ``index`` (0-based) gets seed+index."""
        return None if self.seed is None else self.seed + index


@dataclass
class Notes:
    """Notes about dropped or approximated parameters; under ``--strict`` each one is an error."""

    strict: bool
    items: list[str] = field(default_factory=list)

    def info(self, text: str) -> None:
        self.items.append(text)

    def approximated(self, text: str) -> None:
        if self.strict:
            raise UsageError(text, hint="drop --strict to accept the approximation")
        self.items.append(text)

    def dropped(self, flag: str, where: str, why: str = "not supported") -> None:
        text = f"{flag} dropped: {why} by {where}"
        if self.strict:
            raise UsageError(text, hint=f"remove {flag}, or drop --strict")
        self.items.append(text)
