"""The other built-in gateways, as data: MKA1, kkiai, modelmax, Token360 and apimart.

Adding a gateway is a new :class:`ProviderProfile` here (or a ``[providers.NAME]`` table in the config
file), never a new branch in the code. Facts come from ``shared/spec/providers.md``.
"""

from __future__ import annotations

from dataclasses import replace

from imagegen_cli.providers.catalog_openai import DALLE_QUALITY_MAP, GPT_QUALITY_MAP
from imagegen_cli.providers.profile_types import ImageInputs, ModelCaps, ProviderProfile

COMMON_RATIOS = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3")
GEMINI_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")


_MKA1_CAPS = ModelCaps(
    id="meetkai:z-image-turbo",
    size_mode="pixels",
    sizes=("256x256", "512x512", "1024x1024", "1792x1024", "1024x1792", "1024x1536", "1536x1024", "auto"),
    n_max=10,
    prompt_max=1000,
    qualities=("standard", "hd", "low", "medium", "high", "auto"),
    default_response_format="url",
    output_formats=("png", "jpeg", "webp"),
    flag_fields={"user": "user", "style": "style"},
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
    flag_fields={"user": "user"},
    summary="aspect_ratio is required; edits one --image (+ --mask)",
    # kkiai's Flux Kontext edits: POST /v1/images/edits, multipart `image` (+ `mask`).
    image_inputs=ImageInputs(way="edits", max_images=1, mask=True, path="images/edits"),
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
            flag_fields={"user": "user"},
        ),
    },
    default_caps=ModelCaps(id="*", size_mode="free", n_max=10, prompt_max=1000, default_response_format="url"),
)

_IMAGEN = ModelCaps(
    id="imagen-3",
    size_mode="free",
    n_max=10,
    qualities=("standard", "hd"),
    quality_map=DALLE_QUALITY_MAP,
    default_response_format="url",
    flag_fields={"style": "style"},
)

MODELMAX = ProviderProfile(
    models_path=None,
    name="modelmax",
    base_url="https://api.modelmax.io/v1",
    default_model="imagen-3",
    key_env=("IMAGEGEN_MODELMAX_API_KEY", "MODELMAX_API_KEY"),
    docs="modelmax gateway; OpenAI-style with usage and 402 insufficient balance",
    models={"imagen-3": _IMAGEN},
    default_caps=replace(_IMAGEN, id="*"),  # other models: the same OpenAI-style fields
)

_SEEDREAM = ModelCaps(
    id="seedream-4.5",
    size_mode="free",
    n_max=1,
    send_n=False,
    qualities=(),
    default_response_format="url",
    flag_fields={"seed": "seed"},
    summary="seed, watermark, sequential_image_generation",
    # Token360 says it takes input images but documents no field: Seedream's upstream `image` (a URL or a data: URI,
    # a list for several), unconfirmed; a config image_inputs table corrects it.
    image_inputs=ImageInputs(way="field", max_images=10, field="image", urls=True, confirmed=False),
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
            # Kling O1's upstream `image_list`, unconfirmed at Token360 (see _SEEDREAM).
            image_inputs=ImageInputs(
                way="field", max_images=10, field="image_list", as_list=True, urls=True, confirmed=False
            ),
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
        flag_fields={"seed": "seed"},
    ),
)

# apimart takes input images as URLs only: a local file is uploaded first (POST uploads/images, multipart `file`,
# at most 20 MB, the URL valid 72 h), then named in `image_urls`. Limits per model, as its docs give them.
_APIMART_UPLOAD = ImageInputs(
    way="upload", path="uploads/images", field="image_urls", mask_field="mask_url", urls=True, max_bytes=20 << 20
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
            image_inputs=replace(_APIMART_UPLOAD, max_images=5),
        ),
        "gpt-image-1-official": replace(
            _APIMART_BASE,
            id="gpt-image-1-official",
            ratios=("1:1", "2:3", "3:2"),
            tiers=(),
            n_max=4,
            send_n=True,
            qualities=("low", "medium", "high", "auto"),
            quality_map=GPT_QUALITY_MAP,
        ),
        "gemini-3-pro-image-preview": replace(
            _APIMART_BASE,
            id="gemini-3-pro-image-preview",
            ratios=GEMINI_RATIOS,
            n_max=4,
            send_n=True,
            image_inputs=replace(_APIMART_UPLOAD, max_images=5),
        ),
        # Seedream: inputs and outputs together at most 15; one output per call here
        "doubao-seedream-5-0-lite": replace(
            _APIMART_BASE, id="doubao-seedream-5-0-lite", image_inputs=replace(_APIMART_UPLOAD, max_images=14)
        ),
        "qwen-image-2.0": replace(
            _APIMART_BASE,
            id="qwen-image-2.0",
            n_max=6,
            send_n=True,
            flag_fields={"negative_prompt": "negative_prompt"},
        ),
    },
    default_caps=_APIMART_BASE,
)


# Another imagegen: `imagegen serve` speaks OpenAI's images dialect with imagegen's extensions (seed, steps,
# guidance, negative_prompt). Several GPU hosts behind a load balancer are then one more gateway. It serves the
# local catalog's ids and what its operator loaded; no key on loopback (IMAGEGEN_SERVE_API_KEY off it).
_SERVED = ModelCaps(
    id="*",
    size_mode="free",
    size_multiple=8,
    n_max=10,
    prompt_max=32000,
    qualities=(),
    response_formats=("b64_json", "url"),
    default_response_format="b64_json",
    flag_fields={"seed": "seed", "steps": "steps", "guidance": "guidance", "negative_prompt": "negative_prompt"},
    seed_counts_up=True,  # -n 2 --seed 7 is one call of n=2 (seeds 7 and 8): the server's batch, as in-process
    summary="any model the imagegen serve at the base URL has (imagegen models --live imagegen lists them)",
)

IMAGEGEN = ProviderProfile(
    name="imagegen",
    base_url="http://127.0.0.1:8188/v1",
    key_env=("IMAGEGEN_SERVE_API_KEY",),
    key_optional=True,
    docs="another imagegen (imagegen serve): OpenAI-style, with seed, steps and guidance",
    default_caps=_SERVED,
)
