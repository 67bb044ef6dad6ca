"""Plan a local generation: model, pixels, steps, guidance, seeds and batches; no torch here.

The same mapping rules as for gateways apply: flags the pipeline cannot use are dropped with a note
(an error under ``--strict``), sizes are rounded to the model's multiple with a note, and the plan is
what ``--dry-run`` prints.
"""

from __future__ import annotations

import json
import math
import platform
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagegen_cli.errors import UsageError
from imagegen_cli.local.catalog import AUTO_ID, LOCAL_MODELS, LocalModel
from imagegen_cli.local_options import LocalOptions
from imagegen_cli.plans import JournalEntry
from imagegen_cli.request import TIER_TABLE, GenerationRequest, Notes, Ratio, Size, ratio_tier_pixels

if TYPE_CHECKING:
    from imagegen_cli.options import ClusterOptions

__all__ = [  # LocalOptions is defined in imagegen_cli.local_options (light enough for remote runs) and re-exported here
    "CPU_SLOW_PIXEL_STEPS",
    "DEFAULT_BATCH",
    "EMPTY_NEGATIVE",
    "MAX_SIDE",
    "MIN_MAX_PIXELS",
    "QUALITY_STEPS",
    "LocalBatch",
    "LocalOptions",
    "LocalPlan",
    "ModelSource",
    "accelerator_likely",
    "build_local_plan",
    "check_pixels",
    "detect_variant",
    "max_pixels",
    "resolve_source",
    "round_to",
]

# --quality as a scale on the model's default steps (documented in the README).
QUALITY_STEPS = {
    "low": 0.5, "standard": 1.0, "medium": 1.0, "auto": 1.0, "high": 1.5, "hd": 2.0, "xhigh": 2.0, "max": 3.0,
}  # fmt: skip
DEFAULT_BATCH = 4  # images per pipeline call before out-of-memory backoff halves it
MAX_SIDE = 8192  # no local pipeline is trained anywhere near this; beyond it only memory errors wait
MIN_MAX_PIXELS = 1024 * 1024  # every model may be asked for 1024x1024, even a small one
# On a CPU, a run above this many pixel-steps (width x height x steps x images) takes minutes: say so first.
CPU_SLOW_PIXEL_STEPS = 2_000_000
# The negative prompt passed with true CFG when none was given (as the Qwen-Image model card does).
EMPTY_NEGATIVE = " "
# A component's weight file: plain or of a variant (group 1), whole or one shard.
_WEIGHTS = re.compile(
    r"^(?:diffusion_pytorch_model|model)(?:\.([A-Za-z0-9_]+))?(?:-\d{5}-of-\d{5})?\.(?:safetensors|bin)$"
)


def max_pixels(native: tuple[int, int]) -> int:
    """The largest image a model is asked for: four times its native pixel count, and at least 1024x1024."""
    return max(4 * native[0] * native[1], MIN_MAX_PIXELS)


def round_to(value: int, multiple: int) -> int:
    """The nearest multiple (at least one multiple)."""
    return max(multiple, round(value / multiple) * multiple)


def detect_variant(folder: Path) -> str | None:
    """The weight variant of a pipeline folder whose components exist only as ``*.VARIANT.safetensors``."""
    plain = False
    variants: set[str] = set()
    for component in folder.iterdir() if folder.is_dir() else ():
        if not component.is_dir():
            continue
        for weights in component.iterdir():
            match = _WEIGHTS.match(weights.name)
            if match and match.group(1):
                variants.add(match.group(1))
            elif match:
                plain = True
    if plain or len(variants) != 1:
        return None
    return variants.pop()


def accelerator_likely() -> bool:
    """Whether a GPU is probably there, without importing torch (used only to warn about slow CPU runs)."""
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return True
    return any(Path(p).exists() for p in ("/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/kfd", "/dev/dxg"))


def nvidia_present() -> bool:
    """An NVIDIA driver on this machine, seen without importing torch."""
    return any(Path(p).exists() for p in ("/proc/driver/nvidia/version", "/dev/nvidia0"))


def _check_fp8(options: LocalOptions) -> None:
    """``--quantize fp8`` where no CUDA GPU can be: refused while planning (the GPU's generation is checked when
    torch is loaded, ``local.weights.fp8_config``)."""
    if options.quantize != "fp8":
        return
    nvidia = nvidia_present()
    where = f"--device {options.device}" if options.device in ("cpu", "mps") else None if nvidia else "no CUDA GPU here"
    if where:
        raise UsageError(
            f"--quantize fp8 needs a CUDA GPU with float8 (compute capability 8.9 or newer): {where}",
            hint="drop --quantize, or use --quantize 8bit (any device)",
        )


@dataclass(frozen=True)
class ModelSource:
    """What to load: a catalog entry, a Hub repo, or a pipeline directory."""

    name: str  # as the user wrote it (after local:)
    location: str  # repo id or directory path; "tiny" for the built-in tiny pipeline
    pipeline: str | None  # class name when known
    model: LocalModel | None  # catalog entry, when there is one
    is_dir: bool = False


@dataclass(frozen=True)
class LocalBatch:
    """One pipeline call: images ``first .. first+len(seeds)-1`` with one seed each.

    ``prompts`` (one per image) is set where requests with different prompts share one call (``imagegen serve``
    batches compatible requests); empty, every image has the plan's prompt.
    """

    first: int
    seeds: tuple[int, ...]
    prompts: tuple[str, ...] = ()


@dataclass(frozen=True)
class LocalPlan:
    """Everything a local run will do."""

    request: GenerationRequest
    source: ModelSource
    options: LocalOptions
    width: int | None
    height: int | None
    steps: int | None
    guidance: float | None
    negative_prompt: str | None
    batches: tuple[LocalBatch, ...]
    extra: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    server: str | None = None  # an `imagegen serve` to run on when it answers and can (else in-process)
    cluster: ClusterOptions | None = None  # --engine ray: made by actors of a Ray cluster

    def call_kwargs(self, batch: LocalBatch) -> dict[str, Any]:
        """The keyword arguments of the pipeline call for one batch (generators added by the runner)."""
        kwargs: dict[str, Any] = {"prompt": self.request.prompt, "num_images_per_prompt": len(batch.seeds)}
        if self.width and self.height:
            kwargs.update(width=self.width, height=self.height)
        if self.steps is not None:
            kwargs["num_inference_steps"] = self.steps
        negative = self.negative_prompt
        if self.guidance is not None:
            knob = self.source.model.guidance_knob if self.source.model else "guidance_scale"
            kwargs[knob] = self.guidance
            if knob == "true_cfg_scale" and self.guidance > 1 and not negative:
                negative = EMPTY_NEGATIVE  # as local.calls.adapt passes it: true CFG applies only with one
        if negative:
            kwargs["negative_prompt"] = negative
        if self.request.images:
            # The dry run names the inputs; the runner passes them decoded (and resized to width x height).
            kwargs["image"] = self.request.images[0].name
            if self.request.mask is not None:
                kwargs["mask_image"] = self.request.mask.name
            if self.request.strength is not None:
                kwargs["strength"] = self.request.strength
        kwargs.update(self.extra)
        return kwargs

    @property
    def provider_name(self) -> str:
        return "local"

    @property
    def model_name(self) -> str:
        return self.source.name

    def journal_entry(self) -> JournalEntry:
        calls = [{"first_image": b.first, "count": len(b.seeds)} for b in self.batches]
        return JournalEntry("local", self.source.location, calls)

    def describe(self) -> dict[str, Any]:
        """The ``--dry-run`` form: the pipeline calls as they will be made.

        Without ``--seed`` the seeds are ``null``: the run draws its own random seed when it starts (the one in
        this plan is never used by another process), so printing it would promise pixels the run will not make.
        """
        drawn = self.request.seed is None
        return {
            "provider": "local",
            "model": self.source.name,
            "source": self.source.location,
            "pipeline": self.source.pipeline,
            "device": self.options.device,
            "dtype": self.options.dtype,
            "offload": self.options.offload,
            "vae_tiling": self.options.vae_tiling,
            "compile": self.options.compile,
            "variant": self.options.variant,
            "loras": [{"source": s, "scale": w} for s, w in self.options.lora_specs],
            "quantize": self.options.quantize,
            "gguf": self.options.gguf,
            "scheduler": _scheduler_name(self.options.scheduler),
            "seed": self.request.seed,
            "calls": [
                {**self.call_kwargs(b), "seeds": None if drawn else list(b.seeds), "first_image": b.first}
                for b in self.batches
            ],
            "decided_after_loading": self.decided_after_loading(),
            **({"server": f"{self.server} (if it answers and can serve this; else in-process)"} if self.server else {}),
            **({"engine": "ray", "cluster": _cluster(self.cluster)} if self.cluster else {}),
        }

    def decided_after_loading(self) -> dict[str, str]:
        """The keywords above that the loaded pipeline's own ``__call__`` may still change (local/calls.py adapt).

        The dry run loads nothing, so it says which ones and how, rather than promise a call it cannot know.
        """
        keys = set().union(*(self.call_kwargs(b) for b in self.batches)) if self.batches else set()
        who = self.source.pipeline or "the loaded pipeline"  # a Hub repo's class is known once it is loaded
        dropped = "dropped (with a note) if its __call__ takes none"
        rules = {
            "width": f"rounded to {who}'s size multiple; {dropped}",
            "height": f"rounded to {who}'s size multiple; {dropped}",
            "guidance_scale": f"sent as {who}'s guidance keyword (guidance_scale, true_cfg_scale or "
            f"prior_guidance_scale); {dropped}",
            "num_inference_steps": f"also prior_num_inference_steps if {who} has two stages; {dropped}",
            "negative_prompt": f"{dropped}; an empty one is added for true CFG",
            "image": f"decoded and resized to width x height; {who} runs as its image-to-image pipeline "
            "(diffusers' AutoPipelineForImage2Image.from_pipe, sharing the loaded weights) unless it takes images",
            "mask_image": "white where the image changes (a transparent mask's alpha is converted); "
            f"{who} runs as its inpainting pipeline (AutoPipelineForInpainting.from_pipe)",
            "strength": f"{dropped}",
        }
        decided = {key: rule for key, rule in rules.items() if key in keys}
        for key in self.extra:
            decided[key] = f"--param: sent if {who}'s __call__ takes it, else dropped with a note"
        return decided


def _scheduler_name(name: str | None) -> str | None:
    from imagegen_cli.local.schedulers import find_scheduler

    return find_scheduler(name).name if name else None


def resolve_source(name: str) -> ModelSource:
    """``tiny``, a catalog name, a pipeline directory, or an ``org/name`` repo."""
    if name in LOCAL_MODELS:
        model = LOCAL_MODELS[name]
        return ModelSource(name, model.repo or "tiny", model.pipeline, model)
    path = Path(name).expanduser()
    if name.startswith(("/", ".", "~")) or path.exists():
        index = path / "model_index.json"
        if not index.is_file():
            raise UsageError(
                f"{path} is not a diffusers pipeline directory (no model_index.json)",
                hint="point -m local:PATH at a folder saved with save_pretrained()",
            )
        try:
            pipeline = json.loads(index.read_text()).get("_class_name")
        except ValueError:
            raise UsageError(f"{index} is not valid JSON") from None
        return ModelSource(name, str(path.resolve()), str(pipeline) if pipeline else None, None, is_dir=True)
    if name.count("/") == 1 and all(name.split("/")):
        return ModelSource(name, name, None, None)
    raise UsageError(
        f"unknown local model {name!r}",
        hint="use one of " + ", ".join([*LOCAL_MODELS, AUTO_ID]) + ", ORG/NAME, or a directory",
    )


def _pixels(
    request: GenerationRequest, model: LocalModel | None, notes: Notes, where: str
) -> tuple[int | None, int | None]:
    # A folder or repo is rounded by the runner, to the multiple its loaded pipeline reports.
    multiple = model.size_multiple if model else 1
    if request.size:
        width, height = round_to(request.size.width, multiple), round_to(request.size.height, multiple)
        if (width, height) != (request.size.width, request.size.height):
            notes.approximated(f"--size {request.size} → {width}x{height} (multiples of {multiple} for {where})")
        return width, height
    if request.ratio or request.resolution:
        ratio = request.ratio or Ratio(1, 1)
        if request.resolution:
            target = ratio_tier_pixels(ratio, request.resolution)
        elif model:
            # No tier: keep the model's native pixel count, at the asked aspect.
            area = model.native_size[0] * model.native_size[1]
            target = Size(int(math.sqrt(area * ratio.aspect)), int(math.sqrt(area / ratio.aspect)))
        else:
            target = ratio_tier_pixels(ratio, "1K")
        width, height = round_to(target.width, multiple), round_to(target.height, multiple)
        text = f"--ratio {ratio}" + (f" --resolution {request.resolution}" if request.resolution else "")
        exact = str(ratio) in TIER_TABLE and (width, height) == (target.width, target.height)
        (notes.info if exact or not request.resolution else notes.approximated)(
            f"{text} → {width}x{height} for {where}"
        )
        return width, height
    first = request.images[0] if request.images else None
    if first is not None and first.size:
        # img2img without a size: the input's own, at most the model's native pixel count (its aspect kept).
        width, height = first.size
        if model and width * height > model.native_size[0] * model.native_size[1]:
            scale = math.sqrt(model.native_size[0] * model.native_size[1] / (width * height))
            width, height = int(width * scale), int(height * scale)
        width, height = max(multiple, round_to(width, multiple)), max(multiple, round_to(height, multiple))
        notes.info(f"size {width}x{height} from --image {first.name} ({first.width}x{first.height})")
        return width, height
    if model:
        return model.native_size
    return None, None


def _check_size(width: int, height: int, model: LocalModel | None, where: str) -> None:
    """Refuse sizes no model can take (the runner checks folders against their pipeline's native size)."""
    if max(width, height) > MAX_SIDE:
        raise UsageError(
            f"{width}x{height} is too large for {where}: at most {MAX_SIDE} pixels a side",
            hint="give a smaller --size, e.g. 1024x1024",
        )
    if model:
        check_pixels(width, height, model.native_size, where)


def check_pixels(width: int, height: int, native: tuple[int, int], where: str) -> None:
    """Refuse more pixels than ``max_pixels(native)``: the catalog's native size here, the loaded pipeline's in
    ``local.calls``."""
    limit = max_pixels(native)
    if width * height > limit:
        text = f"{native[0]}x{native[1]}"
        raise UsageError(
            f"{width}x{height} is too large for {where}: more than {limit:,} pixels (4x its native {text})",
            hint=f"ask for a smaller --size (e.g. {text}), then upscale",
        )


def build_local_plan(
    request: GenerationRequest, source: ModelSource, options: LocalOptions, *, ignored: dict[str, object] | None = None
) -> LocalPlan:
    """Validate and lay out a local run; ``ignored`` holds remote-only flags the user gave."""
    notes = Notes(request.strict)
    where = f"local:{source.name}"
    model = source.model
    for flag, value in (
        ("--style", request.style),
        ("--user", request.user),
        ("--on-behalf-of", request.on_behalf_of),
        ("--response-format", request.response_format),
        *((ignored or {}).items()),
    ):
        if value not in (None, False):
            notes.dropped(flag, where, "not used")
    _check_fp8(options)
    if len(request.images) > 1:
        raise UsageError(
            f"{len(request.images)} --image inputs; {where} starts from one image", hint="give one --image"
        )
    if request.images and request.images[0].is_url:
        raise UsageError(
            f"{where} needs the image's bytes; {request.images[0].source} is a URL",
            hint="download it first (curl -o in.png URL), then --image in.png",
        )
    if request.input_fidelity is not None:
        notes.dropped("--input-fidelity", where)
    if (
        request.mask is not None
        and model is not None
        and model.pipeline in ("FluxKontextPipeline", "QwenImageEditPipeline")
    ):
        # Editing pipelines follow the instruction over the whole image; diffusers has no inpainting form of them.
        raise UsageError(f"{where} edits by instruction and takes no --mask", hint="drop --mask, or use local:sd-1.5")
    width, height = _pixels(request, model, notes, where)
    if width and height:
        _check_size(width, height, model, where)

    steps = request.steps
    if steps is None and model:
        scale = QUALITY_STEPS[request.quality or "standard"]
        steps = max(1, math.ceil(model.steps * scale))
        if request.quality and scale != 1.0:
            notes.info(f"--quality {request.quality} → {steps} steps for {where}")
    elif request.quality and request.steps is not None:
        notes.dropped("--quality", where, "overridden by --steps")
    elif request.quality and steps is None:
        notes.dropped("--quality", where, "no default step count known")
    guidance = request.guidance if request.guidance is not None else (model.guidance if model else None)

    negative = request.negative_prompt
    if negative and model and not model.negative_prompt:
        notes.dropped("--negative-prompt", where, "not supported")
        negative = None
    elif negative and guidance is not None and guidance <= 1.0:
        notes.info(f"--negative-prompt has no effect at guidance {guidance:g} on {where}")

    base_seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
    seeds = [base_seed + i for i in range(request.n)]
    batches = tuple(
        LocalBatch(start + 1, tuple(seeds[start : start + DEFAULT_BATCH]))
        for start in range(0, request.n, DEFAULT_BATCH)
    )
    if options.offload != "none" and options.device == "cpu":
        notes.dropped(f"--offload {options.offload}", where, "no accelerator (--device cpu); skipped")
    on_cpu = options.device == "cpu" or (options.device == "auto" and not accelerator_likely())
    if on_cpu and width and height and steps:
        work = width * height * steps * request.n
        if work > CPU_SLOW_PIXEL_STEPS:
            notes.info(
                f"{request.n} x {width}x{height} x {steps} steps on a CPU will take minutes "
                "(a smaller --size or fewer --steps is quicker)"
            )
    return LocalPlan(
        request,
        source,
        options,
        width,
        height,
        steps,
        guidance,
        negative,
        batches,
        dict(request.params),
        tuple(notes.items),
    )


def _cluster(options: ClusterOptions) -> dict[str, Any]:
    """The ``--dry-run`` form of ``--engine ray``'s options (None: decided from the cluster when the run starts)."""
    return {
        "address": options.address or "local",
        "workers": options.workers,
        "gpus_per_worker": options.gpus_per_worker,
        "worker_writes": options.worker_writes,
    }
