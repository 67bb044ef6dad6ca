"""OpenAI's image models, as data: the reference dialect's catalogue.

It follows the official ``openai`` package (3.54, 2026-11): ``openai/types/image_generate_params.py`` and
``image_model.py`` are the authority, and tests/test_openai_oracle.py checks every planned body against
their annotations. When a release changes them, this is the module to update.
"""

from __future__ import annotations

from dataclasses import replace

from imagegen_cli.providers.profile_types import ImageInputs, ModelCaps, ProviderProfile

# dall-e quality names for the common --quality values; other gateways' dall-e style models share them
DALLE_QUALITY_MAP = {
    "low": "standard", "medium": "standard", "high": "hd", "auto": "standard", "xhigh": "hd", "max": "hd",
}  # fmt: skip
GPT_QUALITY_MAP = {"standard": "medium", "hd": "high", "xhigh": "high", "max": "high"}
_GPT_STANDARD_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
_GPT_QUALITIES = ("low", "medium", "high", "auto")
_GPT_FORMATS = ("png", "jpeg", "webp")

OPENAI_SHUT_DOWN = "2026-10-23"  # gpt-image-1
OPENAI_DALLE_RETIRED = "2026-05-12"  # dall-e-2, dall-e-3
OPENAI_DEFAULT_MODEL = "gpt-image-2.6-sunburst"  # the default of OpenAI's own image_generation tool


# /images/edits (ImageEditParams): up to 16 PNG/WebP/JPEG images under 50 MB; the mask a PNG under 4 MB, the size
# of the first image. input_fidelity: high and low on gpt-image-1.5, only low on gpt-image-1-mini, omitted elsewhere.
_GPT_EDITS = ImageInputs(way="edits", max_images=16, mask=True, path="images/edits")
_INPUT_FIDELITIES = {"gpt-image-1.5": ("low", "high"), "gpt-image-1-mini": ("low",)}


def _gpt_image(model_id: str, summary: str = "GPT image model; always returns base64") -> ModelCaps:
    """A GPT image model with the standard sizes; every GPT image model takes these fields."""
    return ModelCaps(
        id=model_id,
        size_mode="pixels",
        sizes=_GPT_STANDARD_SIZES,
        n_max=10,
        prompt_max=32000,
        qualities=_GPT_QUALITIES,
        quality_map=GPT_QUALITY_MAP,
        response_formats=(),  # GPT image models always answer b64_json and reject the field
        output_formats=_GPT_FORMATS,
        flag_fields={"user": "safety_identifier"},  # `user` is deprecated in favour of safety_identifier
        summary=summary,
        image_inputs=replace(_GPT_EDITS, input_fidelities=_INPUT_FIDELITIES.get(model_id, ())),
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
        flag_fields={"user": "user"},
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
        quality_map=DALLE_QUALITY_MAP,
        default_response_format="b64_json",
        flag_fields={"user": "user", "style": "style"},
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
        flag_fields={"user": "user"},
        summary="not in imagegen's catalog: sent only the fields every GPT image model accepts",
    ),
)
