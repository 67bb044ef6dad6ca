"""How a local plan maps onto one pipeline's ``__call__``, read from its signature and config, not its class name.

diffusers pipelines differ in what their ``__call__`` takes, and a keyword a pipeline does not name either
raises ``TypeError`` or, with ``**kwargs``, is swallowed silently. So every keyword is decided here from
``inspect.signature(pipe.__call__)`` and the pipeline's config (the rules are in the README, "Local models:
how the flags map"):

- a flag whose keyword the pipeline does not name is dropped with a note (an error under ``--strict``);
- ``--steps`` sets ``num_inference_steps`` and, on two-stage pipelines, ``prior_num_inference_steps`` too;
- ``--guidance`` goes to the knob that works: ``true_cfg_scale`` where the pipeline has one and its
  transformer has no embedded guidance (Qwen-Image), else ``guidance_scale``; two-stage pipelines also get
  ``prior_guidance_scale``. True CFG applies only with a negative prompt, so an empty one is passed when
  the guidance is above 1 and none was given (as the Qwen-Image model card does);
- a size that was asked turns off ``use_resolution_binning`` (which would silently change it), is rounded
  to the pipeline's own multiple (VAE scale factor x patch size) with a note, and is refused above four times
  the pipeline's native pixel count;
- progress is per step through ``callback_on_step_end`` (and ``prior_callback_on_step_end``), or the older
  ``callback``/``callback_steps``; a pipeline with neither gets per-call progress, and Ctrl-C then waits for
  the call to end;
- a pipeline whose ``generator`` takes a single generator, or that has no ``num_images_per_prompt``, makes
  one image per call, so that image i still depends on seed+i alone;
- a prompt (or negative prompt) longer than the longest of the pipeline's text encoders reads is noted: the
  encoders would cut it silently (CLIP: 77 tokens). It is counted with the pipeline's own tokenizers, each
  read up to its ``model_max_length``, or ``max_sequence_length`` where ``__call__`` takes one (T5, Qwen...).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from imagegen_cli.local.planning import EMPTY_NEGATIVE, LocalBatch, LocalPlan, check_pixels, round_to
from imagegen_cli.request import Notes


def call_parameters(pipe: Any) -> tuple[dict[str, inspect.Parameter], bool]:
    """The named parameters of ``pipe.__call__`` and whether it also takes ``**kwargs``."""
    try:
        signature = inspect.signature(pipe.__call__)
    except (TypeError, ValueError):  # a builtin or C callable: assume nothing
        return {}, True
    named = {
        name: p
        for name, p in signature.parameters.items()
        if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    }
    swallows = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    return named, swallows


def _config(module: object) -> dict[str, Any]:
    config = getattr(module, "config", None)
    return dict(config) if config is not None and hasattr(config, "keys") else {}


def denoiser_of(pipe: object) -> object:
    """The transformer or UNet of a pipeline (of its decoder, for two-stage pipelines), or None."""
    for holder in (pipe, getattr(pipe, "decoder_pipe", None)):
        for name in ("transformer", "unet"):
            module = getattr(holder, name, None) if holder is not None else None
            if module is not None:
                return module
    return None


def size_multiple(pipe: object) -> int | None:
    """The multiple a pipeline needs its width and height to be: its image processor's scale factor, or the
    VAE's scale factor times the denoiser's patch size, whichever is larger (Flux: 8 x 2 packing = 16)."""
    for holder in (pipe, getattr(pipe, "decoder_pipe", None)):
        if holder is None:
            continue
        scale = getattr(holder, "vae_scale_factor", None)
        processor = _config(getattr(holder, "image_processor", None)).get("vae_scale_factor")
        patch = _config(denoiser_of(holder)).get("patch_size") or 1
        patch = patch if isinstance(patch, int) else 1
        found = [v for v in (processor, scale * patch if isinstance(scale, int) else None) if isinstance(v, int)]
        if found:
            return max(found)
    return None


def native_size(pipe: object, params: dict[str, inspect.Parameter]) -> tuple[int, int] | None:
    """The size a pipeline makes when none is asked: its ``__call__`` defaults, else its sample size."""
    width, height = (params[k].default if k in params else None for k in ("width", "height"))
    if isinstance(width, int) and isinstance(height, int):
        return width, height
    scale = getattr(pipe, "vae_scale_factor", None)
    if not isinstance(scale, int):
        return None
    sample = getattr(pipe, "default_sample_size", None)
    if not isinstance(sample, int):
        sample = _config(denoiser_of(pipe)).get("sample_size")
    if isinstance(sample, int):
        return sample * scale, sample * scale
    if isinstance(sample, list | tuple) and len(sample) == 2:
        return int(sample[1]) * scale, int(sample[0]) * scale
    return None


def _takes_generator_list(params: dict[str, inspect.Parameter]) -> bool:
    parameter = params.get("generator")
    if parameter is None or parameter.annotation is inspect.Parameter.empty:
        return True
    return "list" in str(parameter.annotation).lower()


def _default_int(params: dict[str, inspect.Parameter], name: str) -> int | None:
    parameter = params.get(name)
    value = parameter.default if parameter is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass
class PipelineCall:
    """The keywords one pipeline gets, and how its progress and generators work."""

    pipeline: str
    base: dict[str, Any]  # every keyword but the per-call count, generators and callbacks
    width: int | None
    height: int | None
    steps: int | None  # the (decoder's) denoising steps, as run
    prior_steps: int | None  # two-stage pipelines: the prior's steps
    guidance: float | None
    guidance_knob: str | None
    counts_images: bool  # takes num_images_per_prompt
    generator_list: bool  # takes a list of generators
    progress: str  # "steps" (callback_on_step_end), "legacy" (callback/callback_steps) or "call"
    prior_progress: bool  # takes prior_callback_on_step_end
    notes: list[str] = field(default_factory=list)
    steps_run: int | None = None  # img2img runs only the last steps x strength of its schedule

    @property
    def total_steps(self) -> int | None:
        """Progress total: prior and decoder steps together; None when progress is per call."""
        if self.progress == "call" or self.steps is None:
            return None
        if self.steps_run is not None:
            return self.steps_run
        if self.prior_steps is not None:
            return self.steps + self.prior_steps if self.prior_progress else self.steps
        return self.steps

    def kwargs(self, batch: LocalBatch) -> dict[str, Any]:
        """The keywords of one call, without the generators and callbacks (the runner adds them)."""
        kwargs = dict(self.base)
        if batch.prompts:
            # One prompt per image (a server's batch of requests): each image is its own prompt's only image.
            kwargs["prompt"] = list(batch.prompts)
            if isinstance(kwargs.get("negative_prompt"), str):
                kwargs["negative_prompt"] = [kwargs["negative_prompt"]] * len(batch.prompts)
            if self.counts_images:
                kwargs["num_images_per_prompt"] = 1
            return kwargs
        if self.counts_images:
            kwargs["num_images_per_prompt"] = len(batch.seeds)
        return kwargs

    def describe(self) -> dict[str, Any]:
        """What is recorded in each image's metadata about the mapping."""
        return {"guidance_knob": self.guidance_knob, "prior_steps": self.prior_steps}


def adapt(pipe: object, plan: LocalPlan) -> tuple[PipelineCall, LocalPlan]:
    """Map ``plan`` onto ``pipe``'s ``__call__``: the call, and the plan with its size and batches adjusted."""
    name = type(pipe).__name__
    where = f"local:{plan.source.name} ({name})"
    notes = Notes(plan.request.strict)
    params, swallows = call_parameters(pipe)

    def takes(keyword: str) -> bool:
        return keyword in params

    def not_taken(flag: str, keyword: str) -> None:
        # With **kwargs the pipeline would accept the keyword and silently ignore it: say so instead.
        why = f"{name}.__call__ has no {keyword}" + (" (its **kwargs would ignore it)" if swallows else "")
        notes.dropped(flag, where, why)

    base: dict[str, Any] = {"prompt": plan.request.prompt}
    width, height = plan.width, plan.height
    native = native_size(pipe, params)
    if width and height:
        multiple = size_multiple(pipe)
        if multiple and (width % multiple or height % multiple):
            rounded = round_to(width, multiple), round_to(height, multiple)
            asked = plan.request.size or f"{width}x{height}"
            notes.approximated(f"--size {asked} → {rounded[0]}x{rounded[1]} (multiples of {multiple} for {name})")
            width, height = rounded
        if native:
            check_pixels(width, height, native, where)
        if takes("width") and takes("height"):
            base.update(width=width, height=height)
        elif not plan.request.images:
            not_taken("--size", "width/height")
            width = height = None
        # else: an image-to-image call takes its size from the image, resized to width x height below
        if takes("max_area") and width and height:
            # Flux Kontext scales any size to max_area (1024² by default): the asked size is the area to keep.
            base["max_area"] = width * height
        if takes("use_resolution_binning"):
            # Binning snaps the size to the model's aspect-ratio table (HunyuanDiT: 64x64 becomes 1024x1024).
            base["use_resolution_binning"] = False

    if plan.request.images:
        base.update(_inputs(plan, name, width, height, takes, not_taken, notes))
    steps = plan.steps
    if steps is not None and not takes("num_inference_steps"):
        not_taken("--steps", "num_inference_steps")
        steps = None
    if steps is not None:
        base["num_inference_steps"] = steps
    prior_steps: int | None = None
    if takes("prior_num_inference_steps"):
        prior_steps = steps if steps is not None else _default_int(params, "prior_num_inference_steps")
        if steps is not None:
            base["prior_num_inference_steps"] = steps
    if steps is None:
        steps = _default_int(params, "num_inference_steps")

    negative = plan.negative_prompt
    guidance, knob = plan.guidance, None
    embedded = bool(_config(denoiser_of(pipe)).get("guidance_embeds"))
    if guidance is not None:
        if takes("true_cfg_scale") and not embedded:
            knob = "true_cfg_scale"
            if guidance > 1 and not negative and takes("negative_prompt"):
                negative = EMPTY_NEGATIVE
                notes.info(
                    f"--guidance {guidance:g} → true_cfg_scale on {name}, with an empty negative prompt "
                    "(its true CFG applies only with one)"
                )
        elif takes("guidance_scale"):
            knob = "guidance_scale"
            if "guidance_embeds" in _config(denoiser_of(pipe)) and not embedded and plan.request.guidance is not None:
                notes.info(f"--guidance has no effect on {name}: its transformer has no guidance embedding")
        elif takes("prior_guidance_scale"):
            knob = "prior_guidance_scale"
        else:
            not_taken("--guidance", "guidance_scale")
            guidance = None
        if knob:
            base[knob] = guidance
        if takes("prior_guidance_scale"):
            base["prior_guidance_scale"] = guidance
    if negative:
        if takes("negative_prompt"):
            base["negative_prompt"] = negative
            if knob == "true_cfg_scale" and guidance is not None and guidance <= 1:
                notes.info(f"--negative-prompt has no effect on {name} at --guidance {guidance:g} (true CFG needs > 1)")
        else:
            not_taken("--negative-prompt", "negative_prompt")
    for key, value in plan.extra.items():
        if takes(key):
            base[key] = value
        else:
            not_taken(f"--param {key}", key)

    max_sequence = base.get("max_sequence_length", _default_int(params, "max_sequence_length"))
    for what, text in (("prompt", plan.request.prompt), ("negative prompt", plan.negative_prompt)):
        cut = prompt_cut(pipe, text, max_sequence if takes("max_sequence_length") else None)
        if cut:
            notes.approximated(f"the {what} is {cut}")

    if takes("callback_on_step_end"):
        progress = "steps"
    elif takes("callback") and takes("callback_steps"):
        progress = "legacy"
    else:
        progress = "call"
        notes.info(f"{name} reports no steps: progress is per image, and Ctrl-C waits for the current image")
    call = PipelineCall(
        pipeline=name,
        base=base,
        width=width,
        height=height,
        steps=steps,
        prior_steps=prior_steps,
        guidance=guidance,
        guidance_knob=knob,
        counts_images=takes("num_images_per_prompt"),
        generator_list=_takes_generator_list(params),
        progress=progress,
        prior_progress=takes("prior_callback_on_step_end"),
        notes=notes.items,
        steps_run=_steps_run(steps, base, params, "FlowMatch" in type(getattr(pipe, "scheduler", None)).__name__),
    )
    batches = plan.batches
    if not (call.counts_images and call.generator_list):
        # One generator per call: one image per call, so image i keeps seed+i.
        batches = singles(batches)
    return call, replace(plan, width=width, height=height, batches=batches)


def _steps_run(steps: int | None, base: dict[str, Any], params: dict[str, inspect.Parameter], flow: bool) -> int | None:
    """The steps an image-to-image call denoises, as diffusers counts them: ``int(steps x strength)`` (SD, SDXL),
    or ``steps - int(steps - steps x strength)`` (the flow-matching pipelines: Flux, SD3)."""
    if steps is None or "image" not in base or "strength" not in params:
        return None
    strength = base.get("strength", params["strength"].default)
    if not isinstance(strength, int | float):
        return None
    run = steps - int(steps - steps * strength) if flow else min(int(steps * strength), steps)
    if run < 1:
        from imagegen_cli.errors import UsageError

        raise UsageError(
            f"--strength {strength:g} x {steps} steps is less than one denoising step",
            hint=f"give --steps {int(1 / strength) + 1 if strength > 0 else 10} or more, or a higher --strength",
        )
    return run


def _inputs(
    plan: LocalPlan,
    name: str,
    width: int | None,
    height: int | None,
    takes: Callable[[str], bool],
    not_taken: Callable[[str, str], None],
    notes: Notes,
) -> dict[str, Any]:
    """``image``, ``mask_image`` and ``strength``: the input decoded, resized to the planned size (with a note)."""
    from PIL import Image

    from imagegen_cli.inputs import edit_area

    request = plan.request
    source = request.images[0]
    image = source.decoded().convert("RGB")
    if width and height and image.size != (width, height):
        notes.info(f"--image {source.name} {image.width}x{image.height} → {width}x{height} (resized for {name})")
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    kwargs: dict[str, Any] = {"image": image}
    if request.mask is not None:
        area = edit_area(request.mask.decoded())
        if area.size != image.size:
            area = area.resize(image.size, Image.Resampling.NEAREST)  # a mask stays black and white
        kwargs["mask_image"] = area
    if request.strength is not None:
        if takes("strength"):
            kwargs["strength"] = request.strength
        else:
            not_taken("--strength", "strength")
    return kwargs


# transformers' tokenizers say "no limit" with a huge model_max_length (int(1e30)).
_NO_LIMIT = 1_000_000


def prompt_cut(pipe: object, text: str | None, max_sequence: int | None) -> str | None:
    """``120 tokens; CLIPTextModel reads only the first 75: the rest is ignored`` when every text encoder of
    ``pipe`` cuts ``text``; None when one reads it whole (Flux's T5 reads what its CLIP cuts) or it cannot tell.

    Each tokenizer reads ``model_max_length`` tokens (its start and end tokens included), or
    ``max_sequence_length`` where the call takes one and it is smaller (the T5 and LLM encoders).
    """
    components = getattr(pipe, "components", None)
    if not text or not isinstance(components, dict):
        return None
    readers: list[tuple[int, int, str]] = []  # (tokens of the text, tokens read of it, the encoder's name)
    for name, tokenizer in components.items():
        limit = getattr(tokenizer, "model_max_length", None)
        if "tokenizer" not in name or not isinstance(limit, int) or not callable(tokenizer):
            continue
        if max_sequence is not None:
            limit = min(limit, max_sequence)
        if limit >= _NO_LIMIT:
            return None  # this encoder reads any length
        try:
            ids = tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
            marked = tokenizer(text, truncation=False, verbose=False)["input_ids"]
        except Exception:  # noqa: BLE001 - a tokenizer that cannot count: say nothing rather than fail the run
            return None
        encoder = components.get(name.replace("tokenizer", "text_encoder"))
        reader = type(encoder).__name__ if encoder is not None else type(tokenizer).__name__
        readers.append((len(ids), limit - (len(marked) - len(ids)), reader))
    if not readers or any(tokens <= read for tokens, read, _ in readers):
        return None
    longest = max(read for _, read, _ in readers)
    tokens = next(count for count, read, _ in readers if read == longest)
    names = list(dict.fromkeys(reader for _, read, reader in readers if read == longest))
    verb = "reads" if len(names) == 1 else "read"
    return f"{tokens} tokens; {' and '.join(names)} {verb} only the first {longest}: the rest is ignored"


def singles(batches: tuple[LocalBatch, ...] | list[LocalBatch]) -> tuple[LocalBatch, ...]:
    """The same images, one per call."""
    return tuple(
        LocalBatch(b.first + i, (seed,), (b.prompts[i],) if b.prompts else ())
        for b in batches
        for i, seed in enumerate(b.seeds)
    )


def task_pipeline(cache: dict[tuple[int, str], Any], pipe: Any, plan: LocalPlan, diffusers: Any) -> Any:
    """``pipe`` for the plan's inputs: itself when its ``__call__`` takes them (an editing pipeline such as Flux
    Kontext or Qwen-Image-Edit), else its image-to-image or inpainting form, built with diffusers' ``from_pipe``
    from the loaded components (nothing is loaded twice) and kept in ``cache`` beside it."""
    from imagegen_cli.errors import UsageError

    request = plan.request
    if not request.images:
        return pipe
    task, keyword = ("inpainting", "mask_image") if request.mask is not None else ("image-to-image", "image")
    if keyword in call_parameters(pipe)[0]:
        return pipe
    key = (id(pipe), task)
    if key not in cache:
        auto = diffusers.AutoPipelineForInpainting if task == "inpainting" else diffusers.AutoPipelineForImage2Image
        try:
            derived = auto.from_pipe(pipe)
        except Exception as exc:  # noqa: BLE001 - diffusers' ValueError/KeyError for a pipeline with no such task
            raise UsageError(
                f"local:{plan.source.name} ({type(pipe).__name__}) has no {task} pipeline in diffusers "
                f"({type(exc).__name__})",
                hint="use a model with one (SD, SDXL, SD3, Flux...), or a gateway that edits",
            ) from None
        derived.set_progress_bar_config(disable=True)  # progress is ours (events), as for the loaded pipeline
        cache[key] = derived
    return cache[key]
