"""The shape of a gateway as data: :class:`ProviderProfile` and the per-model :class:`ModelCaps`.

The built-in catalogue fills these in (``catalog_openai``, ``catalog_gateways``); a ``[providers.NAME]``
table in the config file does the same at run time (``profiles.caps_from_config``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from imagegen_cli.request import Ratio, Size

InputWay = Literal["edits", "field", "upload"]
SizeMode = Literal["pixels", "free", "ratio_size", "aspect_ratio", "ratio_field", "none"]
Dialect = Literal["openai", "tasks"]


@dataclass(frozen=True)
class ImageInputs:
    """How a model takes input images (``--image``, ``--mask``), as its gateway documents it.

    ``edits``: a multipart ``POST`` to ``path`` with each image as a file (``image``, or repeated ``image[]``
    when there are several) and the mask as ``mask`` (OpenAI's ``/images/edits``; kkiai's Flux Kontext).
    ``field``: the generation call's JSON body carries the images in ``field`` as URLs, a local file as a
    ``data:`` URI (Seedream on kkiai and Token360); ``as_list`` sends a list even for one image.
    ``upload``: each local file is first sent alone to ``path`` (multipart ``file``; apimart's ``uploads/images``),
    and the generation body carries the URLs the gateway answered in ``field`` (a list), the mask's in
    ``mask_field``; an upload is never retried blindly, and its URL is journalled with its expiry.
    ``confirmed`` is False where the gateway documents no field: the README marks the model, and a config
    ``[providers.NAME.models.ID]`` table corrects it with ``image_inputs = { field = "..." }``.
    """

    way: InputWay = "edits"
    max_images: int = 1
    mask: bool = False
    path: str = "images/edits"
    field: str = "image"
    mask_field: str = "mask"
    as_list: bool = False
    input_fidelities: tuple[str, ...] = ()  # the --input-fidelity values the model takes; () none
    max_bytes: int = 50 << 20
    mask_max_bytes: int = 4 << 20
    urls: bool = False  # takes URLs as given (``field``); ``edits`` always uploads bytes
    confirmed: bool = True


@dataclass(frozen=True)
class ModelCaps:
    """What one model accepts; drives validation, mapping and the dry-run plan.

    ``size_mode`` says how a size is sent: ``pixels`` (a fixed list of WxH), ``free`` (any WxH within
    limits), ``ratio_size`` (a ratio in ``size`` plus a ``resolution`` tier), ``aspect_ratio`` (a
    separate, required ``aspect_ratio`` field), ``ratio_field`` (a ``ratio`` field) or ``none``.
    ``flag_fields`` maps the common flags a model takes (seed, style, user, negative_prompt, steps,
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
    flag_fields: dict[str, str] = field(default_factory=dict)
    seed_counts_up: bool = False  # image i of a seeded call has the call's seed + i (imagegen serve): calls batch
    summary: str = ""
    retired: str | None = None  # "was retired on 2026-05-12": refused unless --base-url points elsewhere
    replacement: str | None = None  # what to use instead of a retired model
    image_inputs: ImageInputs | None = None  # None: the model takes no input image
    # The typed forms of ``sizes``/``ratios``/``tiers`` (which stay the gateway's own words), parsed once here:
    # a malformed catalogue or config entry fails where it is defined, not at some later use.
    pixel_sizes: tuple[Size, ...] = field(init=False, repr=False, compare=False)
    ratio_values: tuple[Ratio, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from imagegen_cli.errors import UsageError
        from imagegen_cli.request import TIERS, Ratio, Size

        try:
            sizes = tuple(Size.parse(text) for text in self.sizes if text != "auto")
            ratios = tuple(Ratio.parse(text) for text in self.ratios)
        except UsageError as exc:
            raise ValueError(f"model {self.id}: {exc.message}") from None
        unknown = [tier for tier in self.tiers if tier.upper() not in TIERS]
        if unknown:
            raise ValueError(f"model {self.id}: unknown resolution tier {unknown[0]!r} (known: {', '.join(TIERS)})")
        object.__setattr__(self, "pixel_sizes", sizes)
        object.__setattr__(self, "ratio_values", ratios)

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
    key_optional: bool = False  # an imagegen serve on loopback wants no key
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
