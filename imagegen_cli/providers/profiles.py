"""Built-in provider profiles and per-model capabilities, as data.

Adding a gateway is a new :class:`ProviderProfile` entry (or a ``[providers.NAME]`` table in the
config file), never a new branch in the code. Facts come from ``shared/spec/providers.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from imagegen_cli.errors import ConfigError

SizeMode = Literal["pixels", "free", "ratio_size", "aspect_ratio", "ratio_field", "none"]
Dialect = Literal["openai", "tasks"]

COMMON_RATIOS = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3")
GEMINI_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")


@dataclass(frozen=True)
class ModelCaps:
    """What one model accepts; drives validation, mapping and the dry-run plan.

    ``size_mode`` says how a size is sent: ``pixels`` (a fixed list of WxH), ``free`` (any WxH within
    limits), ``ratio_size`` (a ratio in ``size`` plus a ``resolution`` tier), ``aspect_ratio`` (a
    separate, required ``aspect_ratio`` field), ``ratio_field`` (a ``ratio`` field) or ``none``.
    ``params`` maps the common flags a model takes (seed, style, user, negative_prompt, steps,
    guidance) to their body field names; anything else is dropped with a note.
    """

    id: str
    size_mode: SizeMode = "free"
    sizes: tuple[str, ...] = ()
    ratios: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    default_ratio: str | None = None
    size_multiple: int | None = None
    min_aspect: float | None = None
    max_aspect: float | None = None
    max_pixels: int | None = None
    max_side: int | None = None
    experimental_pixels: int | None = None  # sizes above this work but the provider calls them experimental
    ratio_field: str | None = None  # free-size models that also take a ratio field (token360)
    n_max: int = 10
    n_values: tuple[int, ...] = ()  # when only some counts are allowed (1, 2, 4)
    send_n: bool = True  # False: the model makes exactly one image per call and rejects n
    prompt_max: int | None = None
    qualities: tuple[str, ...] | None = None  # None: passed through as given; (): not supported
    quality_map: dict[str, str] = field(default_factory=dict)
    response_formats: tuple[str, ...] = ("url", "b64_json")  # (): never send response_format
    default_response_format: str | None = None
    output_formats: tuple[str, ...] = ()  # the model's own output_format values (GPT image models)
    params: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    retired: str | None = None  # "was retired on 2026-05-12": refused unless --base-url points elsewhere
    replacement: str | None = None  # what to use instead of a retired model

    def describe_sizes(self) -> str:
        if self.size_mode == "pixels":
            return " ".join(self.sizes)
        if self.size_mode == "free":
            parts = ["any WxH"]
            if self.size_multiple:
                parts.append(f"multiple of {self.size_multiple}")
            if self.max_pixels:
                parts.append(f"≤ {self.max_pixels} px")
            return ", ".join(parts)
        if self.size_mode in ("ratio_size", "aspect_ratio", "ratio_field"):
            tiers = f" @ {'/'.join(self.tiers)}" if self.tiers else ""
            return " ".join(self.ratios) + tiers
        return "fixed"


@dataclass(frozen=True)
class ProviderProfile:
    """A gateway: where it lives, how it authenticates, which dialect it speaks, and its models."""

    name: str
    base_url: str
    dialect: Dialect = "openai"
    generate_path: str = "images/generations"
    task_path: str = "tasks/{id}"
    cancel_path: str | None = None  # POST here to cancel a task, where the gateway documents one
    records_path: str | None = None  # provider-side image records (Token360's images API)
    models_path: str | None = "models"
    default_model: str | None = None
    models: dict[str, ModelCaps] = field(default_factory=dict)
    default_caps: ModelCaps = field(default_factory=lambda: ModelCaps(id="*"))
    key_env: tuple[str, ...] = ()
    on_behalf_of_header: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    poll_interval: float = 2.0
    docs: str = ""
    builtin: bool = True

    @property
    def is_async(self) -> bool:
        return self.dialect == "tasks"

    def caps_for(self, model: str) -> ModelCaps:
        """Capabilities of a model; an unknown id gets the provider-level limits only."""
        caps = self.models.get(model)
        return caps if caps is not None else replace(self.default_caps, id=model)


_DALLE_QUALITY_MAP = {
    "low": "standard", "medium": "standard", "high": "hd", "auto": "standard", "xhigh": "hd", "max": "hd",
}  # fmt: skip
_GPT_QUALITY_MAP = {"standard": "medium", "hd": "high", "xhigh": "high", "max": "high"}
_GPT_STANDARD_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
_GPT_QUALITIES = ("low", "medium", "high", "auto")
_GPT_FORMATS = ("png", "jpeg", "webp")

# The OpenAI catalog follows the official ``openai`` package (3.54, 2026-11):
# ``openai/types/image_generate_params.py`` and ``image_model.py`` are the authority, and
# tests/test_openai_oracle.py checks every planned body against their annotations.
OPENAI_SHUT_DOWN = "2026-10-23"  # gpt-image-1
OPENAI_DALLE_RETIRED = "2026-05-12"  # dall-e-2, dall-e-3
OPENAI_DEFAULT_MODEL = "gpt-image-2.6-sunburst"  # the default of OpenAI's own image_generation tool


def _gpt_image(model_id: str, summary: str = "GPT image model; always returns base64") -> ModelCaps:
    """A GPT image model with the standard sizes; every GPT image model takes these fields."""
    return ModelCaps(
        id=model_id,
        size_mode="pixels",
        sizes=_GPT_STANDARD_SIZES,
        n_max=10,
        prompt_max=32000,
        qualities=_GPT_QUALITIES,
        quality_map=_GPT_QUALITY_MAP,
        response_formats=(),  # GPT image models always answer b64_json and reject the field
        output_formats=_GPT_FORMATS,
        params={"user": "safety_identifier"},  # `user` is deprecated in favour of safety_identifier
        summary=summary,
    )


def _gpt_image_free(model_id: str, summary: str) -> ModelCaps:
    """A GPT image model that takes any WxH: multiples of 16, aspect 1:3..3:1, up to 3840x2160."""
    return replace(
        _gpt_image(model_id),
        size_mode="free",
        sizes=(),
        size_multiple=16,
        min_aspect=1 / 3,
        max_aspect=3.0,
        max_pixels=3840 * 2160,
        max_side=3840,
        experimental_pixels=2560 * 1440,
        summary=summary,
    )


_GPT_25_QUALITIES = ("low", "medium", "high", "xhigh", "max", "auto")
_GPT_ANIMATED_FORMATS = (*_GPT_FORMATS, "gif", "svg")


def _gpt_image_25(model_id: str) -> ModelCaps:
    return replace(
        _gpt_image_free(
            model_id, "GPT image 2.5; any WxH (×16, 1:3..3:1, ≤ 3840x2160); quality up to xhigh/max; gif, svg"
        ),
        qualities=_GPT_25_QUALITIES,
        quality_map={"standard": "medium", "hd": "high"},
        output_formats=_GPT_ANIMATED_FORMATS,
    )


def _gpt_image_26(model_id: str) -> ModelCaps:
    return replace(
        _gpt_image(model_id, "GPT image 2.6; standard sizes; gif, svg"),
        output_formats=_GPT_ANIMATED_FORMATS,
    )


def _gpt_image_2(model_id: str) -> ModelCaps:
    return _gpt_image_free(model_id, "GPT image model; any WxH in multiples of 16, aspect 1:3..3:1, up to 3840x2160")


_OPENAI_CURRENT = {
    caps.id: caps
    for caps in (
        _gpt_image("gpt-image-1-mini"),
        _gpt_image("gpt-image-1.5"),
        _gpt_image_2("gpt-image-2"),
        _gpt_image_2("gpt-image-2-2026-04-21"),
        _gpt_image_25("gpt-image-2.5-sunburst"),
        _gpt_image_25("gpt-image-2.5-sunburst-2026-09-08"),
        _gpt_image_25("gpt-image-2.5-flare"),
        _gpt_image_25("gpt-image-2.5-flare-2026-09-08"),
        _gpt_image_26("gpt-image-2.6-sunburst"),
        _gpt_image_26("gpt-image-2.6-flare"),
        _gpt_image("chatgpt-image-latest", "the model behind ChatGPT, as it changes; GPT image constraints"),
    )
}

_OPENAI_RETIRED = {
    "gpt-image-1": replace(
        _gpt_image("gpt-image-1"),
        retired=f"was shut down on {OPENAI_SHUT_DOWN}",
        replacement="gpt-image-2.5-sunburst or gpt-image-2.5-flare",
        summary=f"shut down on {OPENAI_SHUT_DOWN}",
    ),
    "dall-e-2": ModelCaps(
        id="dall-e-2",
        size_mode="pixels",
        sizes=("256x256", "512x512", "1024x1024"),
        n_max=10,
        prompt_max=1000,
        qualities=("standard",),
        quality_map={"low": "standard", "medium": "standard", "auto": "standard"},
        default_response_format="b64_json",
        params={"user": "user"},
        retired=f"was retired on {OPENAI_DALLE_RETIRED}",
        replacement=OPENAI_DEFAULT_MODEL,
        summary=f"retired on {OPENAI_DALLE_RETIRED}",
    ),
    "dall-e-3": ModelCaps(
        id="dall-e-3",
        size_mode="pixels",
        sizes=("1024x1024", "1792x1024", "1024x1792"),
        n_max=1,
        prompt_max=4000,
        qualities=("standard", "hd"),
        quality_map=_DALLE_QUALITY_MAP,
        default_response_format="b64_json",
        params={"user": "user", "style": "style"},
        retired=f"was retired on {OPENAI_DALLE_RETIRED}",
        replacement=OPENAI_DEFAULT_MODEL,
        summary=f"retired on {OPENAI_DALLE_RETIRED}; one image per call; style vivid|natural",
    ),
}

OPENAI = ProviderProfile(
    name="openai",
    base_url="https://api.openai.com/v1",
    default_model=OPENAI_DEFAULT_MODEL,
    key_env=("IMAGEGEN_OPENAI_API_KEY", "OPENAI_API_KEY"),
    docs="OpenAI Images API (the reference dialect)",
    models={**_OPENAI_CURRENT, **_OPENAI_RETIRED},
    # An id imagegen does not know (a new snapshot, a gateway's alias of a GPT image deployment) gets
    # only what every GPT image model accepts: no response_format, no style, `user` rather than the
    # newer safety_identifier, and the size and quality passed as given.
    default_caps=ModelCaps(
        id="*",
        size_mode="free",
        n_max=10,
        qualities=None,
        response_formats=(),
        output_formats=_GPT_FORMATS,
        params={"user": "user"},
        summary="not in imagegen's catalog: sent only the fields every GPT image model accepts",
    ),
)

_MKA1_CAPS = ModelCaps(
    id="meetkai:z-image-turbo",
    size_mode="pixels",
    sizes=("256x256", "512x512", "1024x1024", "1792x1024", "1024x1792", "1024x1536", "1536x1024", "auto"),
    n_max=10,
    prompt_max=1000,
    qualities=("standard", "hd", "low", "medium", "high", "auto"),
    default_response_format="url",
    output_formats=("png", "jpeg", "webp"),
    params={"user": "user", "style": "style"},
)

MKA1 = ProviderProfile(
    name="mka1",
    base_url="https://apigw.mka1.com/api/v1/llm",
    default_model="meetkai:z-image-turbo",
    key_env=("IMAGEGEN_MKA1_API_KEY", "MKA1_API_KEY"),
    on_behalf_of_header="X-On-Behalf-Of",
    docs="MKA1 (MeetKai) gateway; OpenAI-style under /api/v1/llm",
    models={
        "meetkai:z-image-turbo": _MKA1_CAPS,
        "auto": replace(_MKA1_CAPS, id="auto", summary="the gateway picks the model"),
    },
    default_caps=replace(_MKA1_CAPS, id="*"),
)

_FLUX = ModelCaps(
    id="flux-kontext-pro",
    size_mode="aspect_ratio",
    ratios=("21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21"),
    default_ratio="1:1",
    n_max=10,
    prompt_max=1000,
    qualities=(),  # documented as dall-e-3 only
    default_response_format="url",
    params={"user": "user"},
    summary="aspect_ratio is required",
)

KKIAI = ProviderProfile(
    models_path=None,
    name="kkiai",
    base_url="https://www.kkiai.com/v1",
    default_model="flux-kontext-pro",
    key_env=("IMAGEGEN_KKIAI_API_KEY", "KKIAI_API_KEY"),
    docs="kkiai gateway; Flux in OpenAI dall-e-3 format with a required aspect_ratio",
    models={
        "flux-kontext-pro": _FLUX,
        "flux-kontext-max": replace(_FLUX, id="flux-kontext-max"),
        "grok-3-image": ModelCaps(
            id="grok-3-image",
            size_mode="pixels",
            sizes=("960x960", "720x1280", "1280x720", "1168x784", "784x1168"),
            n_max=10,
            prompt_max=1000,
            qualities=(),
            default_response_format="url",
            params={"user": "user"},
        ),
    },
    default_caps=ModelCaps(id="*", size_mode="free", n_max=10, prompt_max=1000, default_response_format="url"),
)

MODELMAX = ProviderProfile(
    models_path=None,
    name="modelmax",
    base_url="https://api.modelmax.io/v1",
    default_model="imagen-3",
    key_env=("IMAGEGEN_MODELMAX_API_KEY", "MODELMAX_API_KEY"),
    docs="modelmax gateway; OpenAI-style with usage and 402 insufficient balance",
    models={
        "imagen-3": ModelCaps(
            id="imagen-3",
            size_mode="free",
            n_max=10,
            qualities=("standard", "hd"),
            quality_map=_DALLE_QUALITY_MAP,
            default_response_format="url",
            params={"style": "style"},
        ),
    },
    default_caps=ModelCaps(
        id="*",
        size_mode="free",
        n_max=10,
        qualities=("standard", "hd"),
        quality_map=_DALLE_QUALITY_MAP,
        default_response_format="url",
        params={"style": "style"},
    ),
)

_SEEDREAM = ModelCaps(
    id="seedream-4.5",
    size_mode="free",
    n_max=1,
    send_n=False,
    qualities=(),
    default_response_format="url",
    params={"seed": "seed"},
    summary="seed, watermark, sequential_image_generation",
)

TOKEN360 = ProviderProfile(
    models_path=None,
    name="token360",
    base_url="https://api.token360.ai/v1",
    default_model="seedream-4.5",
    key_env=("IMAGEGEN_TOKEN360_API_KEY", "TOKEN360_API_KEY"),
    docs="Token360 gateway; OpenAI-style plus seed, watermark and ratio; image records API",
    records_path="images",
    models={
        "seedream-4.5": _SEEDREAM,
        "seedream-4.0": replace(_SEEDREAM, id="seedream-4.0"),
        "dola-seedream-5.0-lite": replace(
            _SEEDREAM, id="dola-seedream-5.0-lite", response_formats=(), summary="seed, watermark"
        ),
        "kling-image-o1": ModelCaps(
            id="kling-image-o1",
            size_mode="free",
            n_max=10,
            qualities=(),
            response_formats=(),
            summary="n, size",
        ),
        "nano-banana-pro": ModelCaps(
            id="nano-banana-pro",
            size_mode="ratio_field",
            ratios=GEMINI_RATIOS,
            n_max=1,
            send_n=False,
            qualities=None,
            response_formats=(),
            summary="ratio and quality",
        ),
        "glm-image": ModelCaps(
            id="glm-image", size_mode="none", n_max=1, send_n=False, qualities=(), response_formats=()
        ),
    },
    # Unknown Token360 models: every unified field is passed and the gateway decides.
    default_caps=ModelCaps(
        id="*",
        size_mode="free",
        ratio_field="ratio",
        n_max=10,
        qualities=None,
        default_response_format="url",
        params={"seed": "seed"},
    ),
)

_APIMART_BASE = ModelCaps(
    id="*",
    size_mode="ratio_size",
    ratios=COMMON_RATIOS,
    tiers=("1K", "2K", "4K"),
    n_max=1,
    send_n=False,
    qualities=(),
    response_formats=(),
)

APIMART = ProviderProfile(
    models_path=None,
    name="apimart",
    base_url="https://api.apimart.ai/v1",
    dialect="tasks",
    default_model="z-image-turbo",
    key_env=("IMAGEGEN_APIMART_API_KEY", "APIMART_API_KEY"),
    docs="apimart gateway; asynchronous: submit, then poll tasks/{id}",
    models={
        "z-image-turbo": replace(
            _APIMART_BASE,
            id="z-image-turbo",
            tiers=("1K", "2K"),
            prompt_max=800,
            summary="exactly one image per call; prompt_extend via --param",
        ),
        "gpt-4o-image": replace(
            _APIMART_BASE,
            id="gpt-4o-image",
            ratios=("1:1", "2:3", "3:2"),
            tiers=(),
            n_max=4,
            n_values=(1, 2, 4),
            send_n=True,
        ),
        "gpt-image-1-official": replace(
            _APIMART_BASE,
            id="gpt-image-1-official",
            ratios=("1:1", "2:3", "3:2"),
            tiers=(),
            n_max=4,
            send_n=True,
            qualities=("low", "medium", "high", "auto"),
            quality_map=_GPT_QUALITY_MAP,
        ),
        "gemini-3-pro-image-preview": replace(
            _APIMART_BASE, id="gemini-3-pro-image-preview", ratios=GEMINI_RATIOS, n_max=4, send_n=True
        ),
        "doubao-seedream-5-0-lite": replace(_APIMART_BASE, id="doubao-seedream-5-0-lite"),
        "qwen-image-2.0": replace(
            _APIMART_BASE,
            id="qwen-image-2.0",
            n_max=6,
            send_n=True,
            params={"negative_prompt": "negative_prompt"},
        ),
    },
    default_caps=_APIMART_BASE,
)

BUILTIN_PROFILES: dict[str, ProviderProfile] = {}


def register_profile(profile: ProviderProfile, registry: dict[str, ProviderProfile]) -> None:
    """Add a profile to a registry; a duplicate name is a programming error."""
    if profile.name in registry:
        raise ValueError(f"provider {profile.name!r} registered twice")
    registry[profile.name] = profile


for _profile in (OPENAI, MKA1, KKIAI, MODELMAX, TOKEN360, APIMART):
    register_profile(_profile, BUILTIN_PROFILES)

LOCAL_PROVIDER = "local"

_CAPS_FIELDS = {f.name for f in fields(ModelCaps)} - {"id"}
_TUPLE_FIELDS = {"sizes", "ratios", "tiers", "n_values", "qualities", "response_formats", "output_formats"}


def caps_from_config(model_id: str, raw: dict[str, Any], base: ModelCaps, where: str) -> ModelCaps:
    """Capabilities from a config table, on top of ``base``; unknown keys are a config error."""
    unknown = set(raw) - _CAPS_FIELDS
    if unknown:
        raise ConfigError(
            f"unknown capability {sorted(unknown)[0]!r} in {where}",
            hint="known: " + ", ".join(sorted(_CAPS_FIELDS)),
        )
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _TUPLE_FIELDS:
            if not isinstance(value, list):
                raise ConfigError(f"{where}.{key} must be a list")
            values[key] = tuple(str(v) if key != "n_values" else int(v) for v in value)
        elif key in ("params", "quality_map"):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{key} must be a table")
            values[key] = {str(k): str(v) for k, v in value.items()}
        else:
            values[key] = value
    try:
        return replace(base, id=model_id, **values)
    except TypeError as exc:
        raise ConfigError(f"invalid capabilities in {where}: {exc}") from None
