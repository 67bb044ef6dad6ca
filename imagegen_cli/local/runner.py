"""The local engine: load a diffusers pipeline, place it, denoise with progress, and emit each image as it finishes.

It saves nothing and prints nothing: images, notes and progress are events (``imagegen_cli.events``) that the
driver records.

torch and diffusers are imported here, inside functions, and nowhere else in the package.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagegen_cli.errors import ConfigError, ImagegenError, UsageError
from imagegen_cli.events import CallDone, CallSent, Emit, ImageReady, Note, Progress, StopToken
from imagegen_cli.local.calls import PipelineCall, adapt, singles, task_pipeline
from imagegen_cli.local.hub import LOCAL_EXTRA_HINT
from imagegen_cli.local.planning import LocalBatch, LocalOptions, LocalPlan, detect_variant
from imagegen_cli.meta import ImageMeta, LoraRef

if TYPE_CHECKING:
    from types import ModuleType

    from PIL import Image


class LocalError(ImagegenError):
    """A local generation failed (weights missing, out of memory, a pipeline error)."""

    code = "local"


class OutOfMemory(LocalError):
    """The device ran out of memory even at one image per call."""

    code = "out_of_memory"


class _Interrupted(Exception):
    """Raised from the step callback after Ctrl-C, so the pipeline stops between steps."""


def import_stack() -> tuple[ModuleType, ModuleType]:
    """torch and diffusers, quietly; a missing ``local`` extra is a one-line error with the pip command."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from imagegen_cli.local.compile_cache import note_user_env

    note_user_env()  # before torch writes its own default into the environment
    import gc

    # torch and diffusers create millions of long-lived objects while importing; the cyclic collector would
    # walk them again and again (most of a second here), and none of them are garbage.
    gc.disable()
    try:
        import diffusers
        import torch
    except ImportError as exc:
        raise ConfigError(
            f"local generation needs the local extra ({exc.name} is not installed)", hint=LOCAL_EXTRA_HINT
        ) from None
    finally:
        gc.enable()
    gc.freeze()
    diffusers.utils.logging.disable_progress_bar()
    import warnings

    warnings.filterwarnings("ignore", module=r"(diffusers|transformers|torch)\..*")
    return torch, diffusers


@dataclass(frozen=True)
class Placement:
    """Where and in what precision the pipeline runs."""

    device: str
    dtype_name: str
    dtype: object  # a torch.dtype, passed on to diffusers


def resolve_placement(torch: ModuleType, device: str, dtype: str) -> Placement:
    """--device/--dtype auto → CUDA bf16 (fp16 without bf16 support), then MPS fp16, then CPU fp32."""
    has_cuda = torch.cuda.is_available()
    has_mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if device == "auto":
        device = "cuda" if has_cuda else "mps" if has_mps else "cpu"
    elif device == "cuda" and not has_cuda:
        raise UsageError("--device cuda: no CUDA device is available", hint="use --device cpu, or drop --device")
    elif device == "mps" and not has_mps:
        raise UsageError("--device mps: no Apple GPU is available", hint="use --device cpu, or drop --device")
    if dtype == "auto":
        if device == "cuda":
            dtype = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            dtype = "fp16" if device == "mps" else "fp32"
    if dtype == "fp16" and device == "cpu":
        raise UsageError("--dtype fp16 is not supported on the CPU", hint="use --dtype fp32 (or bf16)")
    if dtype == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError("--dtype bf16 is not supported by this GPU", hint="use --dtype fp16")
    table = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    return Placement(device, dtype, table[dtype])


def _is_oom(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def load_pipeline(
    diffusers: ModuleType, plan: LocalPlan, placement: Placement, record: dict[str, Any] | None = None
) -> Any:
    """``DiffusionPipeline.from_pretrained`` for every source, with its failures as one-line errors.

    ``record`` receives what was loaded besides the folder: the weight variant and the quantization.
    """
    from imagegen_cli.local.tiny import ensure_tiny_pipeline
    from imagegen_cli.local.weights import gguf_transformer, quantization_config

    source = plan.source
    options = plan.options
    location = str(ensure_tiny_pipeline()) if source.location == "tiny" else source.location
    record = record if record is not None else {}
    extra: dict[str, Any] = {}
    variant = options.variant or (detect_variant(Path(location)) if source.is_dir else None)
    if variant:
        extra["variant"] = variant
        record["variant"] = variant
    if options.quantize:
        extra["quantization_config"], backend = quantization_config(
            diffusers, location, options.quantize, placement.device, placement.dtype
        )
        record["quantize"] = f"{options.quantize} ({backend})"
    if options.gguf:
        extra["transformer"] = gguf_transformer(diffusers, location, options.gguf, placement.dtype)
        record["quantize"] = f"gguf ({Path(options.gguf).name})"
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    try:
        from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub ships with diffusers
        raise ConfigError("huggingface_hub is missing", hint=LOCAL_EXTRA_HINT) from None
    import gc

    gc.disable()  # as in import_stack: loading imports most of diffusers and transformers
    try:
        pipe = diffusers.DiffusionPipeline.from_pretrained(location, dtype=placement.dtype, **extra)
    except GatedRepoError:
        raise ConfigError(
            f"{location} is gated: accept its licence on its Hugging Face page",
            hint=f"then log in with `hf auth login` or set HF_TOKEN, and run: imagegen models pull {source.name}",
        ) from None
    except RepositoryNotFoundError:
        raise UsageError(f"no model {location} on the Hugging Face Hub (or it is private)") from None
    except (LocalEntryNotFoundError, OSError) as exc:
        if source.is_dir:
            raise LocalError(f"cannot load the pipeline in {location}: {str(exc).splitlines()[0][:200]}") from None
        why = "offline (HF_HUB_OFFLINE is set)" if offline else "and it could not be downloaded"
        raise LocalError(
            f"the weights of {source.name} are not downloaded {why}", hint=f"run: imagegen models pull {source.name}"
        ) from None
    except (ValueError, TypeError, AttributeError) as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        if variant and "variant" in first.lower():
            raise UsageError(
                f"cannot load {location} with --variant {variant}: {first}",
                hint="drop --variant, or name one whose files exist (e.g. model.fp16.safetensors → fp16)",
            ) from None
        raise LocalError(f"cannot load {location} as a diffusers pipeline: {first}") from None
    finally:
        gc.enable()
    gc.freeze()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def place(pipe: Any, plan: LocalPlan, placement: Placement, notes: list[str]) -> None:
    """Device placement or offloading, VAE tiling and regional compilation."""
    offload = plan.options.offload
    if offload != "none" and placement.device == "cpu":
        if plan.options.device != "cpu":  # with --device cpu the planner already said so
            notes.append(f"--offload {offload} skipped: no accelerator")
        offload = "none"
    if offload == "model":
        pipe.enable_model_cpu_offload(device=placement.device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=placement.device)
    else:
        pipe.to(placement.device)
    if plan.options.vae_tiling:
        vae = getattr(pipe, "vae", None)
        if vae is not None and hasattr(vae, "enable_tiling"):
            vae.enable_tiling()
        else:
            notes.append("--vae-tiling skipped: this pipeline's VAE cannot tile")
    if plan.options.compile:
        import torch

        from imagegen_cli.local.compile_cache import use_compile_cache

        use_compile_cache(plan, placement.dtype_name, str(torch.__version__))  # compiled once per machine
        denoiser = getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)
        if denoiser is None:
            notes.append("--compile skipped: no transformer or UNet to compile")
        elif getattr(denoiser, "_repeated_blocks", None):
            # Regional compilation: compile the repeated block once, reuse it for every layer.
            denoiser.compile_repeated_blocks(fullgraph=True)
        else:
            notes.append("--compile: this model declares no repeated blocks; compiling it whole")
            denoiser.compile(fullgraph=False)


class LocalEngine:
    """A long-lived engine object: it keeps the last loaded pipeline for the next job (the lines of a batch, the
    requests of a server), behind a lock, so one process can run many jobs one after another and side by side."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[str, LocalOptions], tuple[Any, dict[str, Any]]] = {}
        self._tasks: dict[tuple[int, str], Any] = {}  # (id of the loaded pipeline, task): its img2img/inpainting form
        self._lock = threading.RLock()

    def loaded_pipelines(self) -> list[Any]:
        """The pipelines held now (tests and ``serve`` look at them)."""
        with self._lock:
            return [pipe for pipe, _ in self._loaded.values()]

    def unload(self) -> None:
        with self._lock:
            self._loaded.clear()
            self._tasks.clear()

    def for_task(self, pipe: Any, plan: LocalPlan, diffusers: ModuleType) -> Any:
        """``pipe`` as the plan's inputs need it (:func:`local.calls.task_pipeline`), its derived forms kept."""
        return task_pipeline(self._tasks, pipe, plan, diffusers)

    def load(self, plan: LocalPlan, emit: Emit) -> None:
        """Load (and place) the plan's pipeline now, ahead of its first job (``imagegen serve -m``)."""
        with self._lock:
            torch, diffusers = import_stack()
            placement = resolve_placement(torch, plan.options.device, plan.options.dtype)
            self.pipeline(plan, placement, diffusers, lambda text: emit(Note(0, text)), emit, 0)

    def run(self, work: int, plan: LocalPlan, emit: Emit, stop: StopToken) -> None:
        """Make the images of ``plan``; every image, note and progress step is emitted. Raises ImagegenError.

        The pipeline is used by one job at a time (the lock): a second caller waits for it.
        """
        with self._lock:
            LocalRun(plan, emit, stop, work).run(self)

    def pipeline(
        self,
        plan: LocalPlan,
        placement: Placement,
        diffusers: ModuleType,
        say: Callable[[str], None],
        emit: Emit,
        work: int,
    ) -> tuple[Any, dict[str, Any]]:
        # Every option shapes the loaded pipeline, so the key is all of them (device and dtype as resolved): a new
        # field of LocalOptions cannot be forgotten here and reuse a pipeline loaded another way.
        options = replace(plan.options, device=placement.device, dtype=placement.dtype_name)
        key = (plan.source.location, options)
        loaded = self._loaded.get(key)
        if loaded is None:
            emit(CallSent(work, "load", f"loading {plan.source.name}", None, sends=False))
            try:
                details: dict[str, Any] = {}
                self._loaded.clear()  # one model in memory at a time: free the old one before loading
                self._tasks.clear()
                pipe = load_pipeline(diffusers, plan, placement, details)
                prepare(diffusers, pipe, plan, details)
                notes: list[str] = []
                place(pipe, plan, placement, notes)
                for note in notes:
                    say(note)
            finally:
                emit(CallDone(work, "load"))
            loaded = self._loaded[key] = (pipe, details)
        return loaded


class LocalRun:
    """Executes one :class:`LocalPlan`, emitting each image as its pipeline call finishes."""

    call: PipelineCall | None = None  # how the plan maps onto the loaded pipeline (set by run)
    details: dict[str, Any] | None = None  # what was loaded besides the folder: variant, quantization, LoRAs

    def __init__(self, plan: LocalPlan, emit: Emit, stop: StopToken, work: int = 0) -> None:
        self.plan = plan
        self.emit = emit
        self.stop = stop
        self.work = work
        self.notes: list[str] = []

    def say(self, text: str) -> None:
        """A note on the job's result (each said once)."""
        if text not in self.notes:
            self.notes.append(text)
            self.emit(Note(self.work, text))

    def run(self, engine: LocalEngine) -> None:
        torch, diffusers = import_stack()
        placement = resolve_placement(torch, self.plan.options.device, self.plan.options.dtype)
        pipe, self.details = engine.pipeline(self.plan, placement, diffusers, self.say, self.emit, self.work)
        pipe = engine.for_task(pipe, self.plan, diffusers)
        self._adapt(pipe)
        self._generate(torch, pipe, placement, diffusers.__version__)

    def _adapt(self, pipe: Any) -> PipelineCall:
        """Map the plan onto the pipeline's own signature (size, batches and notes follow)."""
        self.call, self.plan = adapt(pipe, self.plan)
        for note in self.call.notes:
            self.say(note)
        return self.call

    def image_meta(self, torch: ModuleType, pipe: Any, placement: Placement, diffusers_version: str) -> ImageMeta:
        """What makes every image of this run (each image adds its index and seed)."""
        call = self.call or self._adapt(pipe)
        details = self.details or {}
        plan = self.plan
        request = plan.request
        extra = {k: v for k, v in call.describe().items() if v}
        return ImageMeta.of_request(
            request,
            provider="local",
            model=plan.source.name,
            negative_prompt=call.base.get("negative_prompt"),
            steps=call.steps,
            guidance=call.guidance,
            scheduler=type(getattr(pipe, "scheduler", None)).__name__,
            loras=tuple(LoraRef(str(lora["source"]), float(lora["scale"])) for lora in details.get("loras", ())),
            quantize=details.get("quantize"),
            variant=details.get("variant"),
            pipeline=type(pipe).__name__,
            source=plan.source.location if plan.source.location != "tiny" else "imagegen tiny pipeline",
            device=placement.device,
            dtype=placement.dtype_name,
            versions={"diffusers": diffusers_version, "torch": str(torch.__version__)},
            params=dict(plan.extra),
            style=None,
            extra=extra,
        )

    def _generate(self, torch: ModuleType, pipe: Any, placement: Placement, diffusers_version: str) -> None:
        if self.call is None:
            self._adapt(pipe)  # run() adapts; direct callers (tests) get the same mapping
        plan = self.plan
        meta = self.image_meta(torch, pipe, placement, diffusers_version)
        retried = False
        queue = list(plan.batches)
        while queue:
            batch = queue.pop(0)
            try:
                images = self._call(torch, pipe, batch)
            except _Interrupted:
                return
            except Exception as exc:  # noqa: BLE001 - any pipeline failure becomes one line; OOM is retried
                if not _is_oom(exc) and len(batch.seeds) > 1 and not retried:
                    # Some pipelines fail on several images per call only (a bug in the pipeline): retry once,
                    # with one image per call for the rest of the run.
                    retried = True
                    queue[:] = list(singles([batch, *queue]))
                    self.say(
                        f"the {type(pipe).__name__} failed at {len(batch.seeds)} images per call "
                        f"({type(exc).__name__}); retrying one image per call"
                    )
                    continue
                if not _is_oom(exc):
                    raise LocalError(
                        f"the {type(pipe).__name__} failed: {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200] if str(exc) else ''}"
                    ) from None
                if placement.device == "cuda":
                    torch.cuda.empty_cache()
                if len(batch.seeds) == 1:
                    size = f"{plan.width}x{plan.height}" if plan.width else "this size"
                    raise OutOfMemory(
                        f"out of memory on {placement.device} generating one {size} image with {plan.source.name}",
                        hint="try --offload model (or sequential), a smaller --size, or fewer images at once",
                    ) from None
                # Halve the batch and try again: -n is batched as memory allows.
                half = len(batch.seeds) // 2
                queue[:0] = [
                    LocalBatch(batch.first, batch.seeds[:half], batch.prompts[:half]),
                    LocalBatch(batch.first + half, batch.seeds[half:], batch.prompts[half:]),
                ]
                self.say(f"out of memory at {len(batch.seeds)} images per call; trying {half}")
                continue
            for offset, image in enumerate(images):
                index, seed = batch.first + offset, batch.seeds[offset]
                self.emit(ImageReady(self.work, index, seed, meta, pixels=image))
            if self.stop.requested:
                # Even when this was the line's last call: the user asked the run to stop, so no later line starts.
                return

    def _call(self, torch: ModuleType, pipe: Any, batch: LocalBatch) -> list[Image.Image]:
        call = self.call
        assert call is not None
        key = f"batch{batch.first}"
        last = batch.first + len(batch.seeds) - 1
        label = f"image {batch.first}" if last == batch.first else f"images {batch.first}-{last}"
        self.emit(CallSent(self.work, key, f"{self.plan.source.name} {label}", call.total_steps))
        # Two-stage pipelines: the prior's steps come first on the same bar.
        offset = (call.prior_steps or 0) if call.prior_progress else 0

        def stepped(done: int) -> None:
            self.emit(Progress(self.work, key, done))
            if self.stop.requested:
                raise _Interrupted

        def on_step_end(pipeline: object, step: int, timestep: object, kwargs: dict[str, Any]) -> dict[str, Any]:
            stepped(offset + step + 1)
            return kwargs

        def on_prior_step_end(pipeline: object, step: int, timestep: object, kwargs: dict[str, Any]) -> dict[str, Any]:
            stepped(step + 1)
            return kwargs

        def on_step(step: int, timestep: object, latents: object) -> None:
            stepped(step + 1)

        kwargs = call.kwargs(batch)
        if call.progress == "steps":
            kwargs["callback_on_step_end"] = on_step_end
        elif call.progress == "legacy":
            kwargs.update(callback=on_step, callback_steps=1)
        if call.prior_progress:
            kwargs["prior_callback_on_step_end"] = on_prior_step_end
        # One CPU generator per image: image i's starting noise depends on seed+i alone, whatever the batch.
        generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in batch.seeds]
        try:
            output = pipe(**kwargs, generator=generators if call.generator_list else generators[0])
        finally:
            self.emit(CallDone(self.work, key))
        images = list(output.images)
        asked = (call.width, call.height)
        if call.width and images and images[0].size != asked:
            got = f"{images[0].width}x{images[0].height}"
            self.say(f"{call.pipeline} returned {got} images, not the {asked[0]}x{asked[1]} asked")
        return images


def prepare(diffusers: ModuleType, pipe: Any, plan: LocalPlan, record: dict[str, Any]) -> None:
    """LoRAs and the scheduler, before the pipeline is placed on its device."""
    from imagegen_cli.local.schedulers import swap_scheduler
    from imagegen_cli.local.weights import apply_loras

    loras = apply_loras(pipe, plan.options.lora_specs)
    if loras:
        record["loras"] = loras
    if plan.options.scheduler:
        swap_scheduler(diffusers, pipe, plan.options.scheduler)
