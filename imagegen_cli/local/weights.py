"""What gets loaded besides the pipeline folder: weight variants, quantization, a GGUF transformer, LoRAs.

- ``--variant``: the ``*.VARIANT.safetensors`` files (``fp16``...); a folder holding only one variant is
  detected without the flag (``planning.detect_variant``).
- ``--quantize 8bit|4bit``: diffusers' ``PipelineQuantizationConfig`` on the denoiser and the text encoders,
  with bitsandbytes on CUDA, and optimum-quanto where bitsandbytes cannot run (CPU, Apple GPUs).
- ``--gguf FILE``: a single-file GGUF transformer (``from_single_file`` with ``GGUFQuantizationConfig``).
- ``--lora PATH|org/name[:SCALE]``: ``load_lora_weights`` then ``set_adapters``; needs peft.

Missing packages are one-line errors that name the package and the pip command.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagegen_cli.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from types import ModuleType

DENOISERS = ("transformer", "unet", "prior", "decoder")


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def model_index(location: str) -> dict[str, Any]:
    """The pipeline's ``model_index.json`` (a folder's, or a repo's from the cache); {} when unknown."""
    path = Path(location) / "model_index.json"
    if not path.is_file():
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(location, "model_index.json"))
        except Exception:  # noqa: BLE001 - not cached and offline, or no such repo: from_pretrained will say
            return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _components(index: dict[str, Any]) -> dict[str, str]:
    """Component name → library (``diffusers`` or ``transformers``) for the model components."""
    found = {}
    for name, entry in index.items():
        library = entry[0] if isinstance(entry, list) and len(entry) == 2 else None
        if library in ("diffusers", "transformers") and (name in DENOISERS or "text_encoder" in name):
            found[name] = library
    return found


def quantization_config(
    diffusers: ModuleType, location: str, quantize: str, device: str, dtype: object
) -> tuple[object, str]:
    """(``PipelineQuantizationConfig``, the backend's name) for ``--quantize`` on ``device``."""
    components = _components(model_index(location)) or {"transformer": "diffusers", "unet": "diffusers"}
    if quantize == "fp8":
        return fp8_config(diffusers, components, device)
    bits = 8 if quantize == "8bit" else 4
    if device == "cuda":
        if not installed("bitsandbytes"):
            raise ConfigError(
                f"--quantize {quantize} on CUDA needs bitsandbytes (not installed)", hint="pip install bitsandbytes"
            )
        kwargs: dict[str, Any] = (
            {"load_in_8bit": True}
            if bits == 8
            else {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": dtype}
        )
        config = diffusers.PipelineQuantizationConfig(
            quant_backend=f"bitsandbytes_{bits}bit", quant_kwargs=kwargs, components_to_quantize=list(components)
        )
        return config, "bitsandbytes"
    if installed("optimum.quanto"):
        import transformers

        weights = "int8" if bits == 8 else "int4"
        mapping = {
            name: diffusers.QuantoConfig(weights_dtype=weights)
            if library == "diffusers"
            else transformers.QuantoConfig(weights=weights)
            for name, library in components.items()
        }
        return diffusers.PipelineQuantizationConfig(quant_mapping=mapping), "optimum-quanto"
    raise ConfigError(
        f"--quantize {quantize} on {device} needs optimum-quanto (not installed); bitsandbytes needs a CUDA GPU",
        hint="pip install optimum-quanto",
    )


FP8_CAPABILITY = (8, 9)  # Ada (8.9), Hopper (9.0), Blackwell (10.0, 12.0): tensor cores with float8
FP8_HINT = "drop --quantize, or use --quantize 8bit (any device)"


def fp8_config(diffusers: ModuleType, components: dict[str, str], device: str) -> tuple[object, str]:
    """torchao's float8 dynamic quantization (activations and weights, one scale per row) of the denoiser's linear
    layers; the text encoders and the VAE stay in their dtype. Refused (exit 2) where float8 has no tensor cores."""
    import torch

    if device != "cuda":
        raise UsageError(f"--quantize fp8 needs a CUDA GPU; this run is on {device}", hint=FP8_HINT)
    capability = torch.cuda.get_device_capability()
    if capability < FP8_CAPABILITY:
        name = torch.cuda.get_device_name()
        raise UsageError(
            f"--quantize fp8 needs compute capability 8.9 or newer (Ada, Hopper, Blackwell); the {name} has "
            f"{capability[0]}.{capability[1]}",
            hint=FP8_HINT,
        )
    if not installed("torchao"):
        raise ConfigError("--quantize fp8 needs torchao (not installed)", hint="pip install 'torchao>=0.15'")
    denoiser = next((name for name in ("transformer", "unet") if name in components), None)
    if denoiser is None:
        raise UsageError("--quantize fp8 quantizes a transformer or UNet, and this pipeline has none", hint=FP8_HINT)
    config = diffusers.TorchAoConfig(fp8_torchao_config())
    return diffusers.PipelineQuantizationConfig(quant_mapping={denoiser: config}), "torchao float8, per row"


def fp8_torchao_config() -> object:
    """torchao's float8 dynamic activations and weights, one scale per row: what ``--quantize fp8`` applies."""
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow

    return Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())


def gguf_transformer(diffusers: ModuleType, location: str, path: str, dtype: object) -> object:
    """The pipeline's transformer, loaded from a single GGUF file with the folder's config."""
    entry = model_index(location).get("transformer")
    if not (isinstance(entry, list) and len(entry) == 2):
        raise UsageError(f"--gguf replaces a transformer, and {location} has none", hint="drop --gguf")
    cls = getattr(diffusers, str(entry[1]), None)
    if cls is None or not hasattr(cls, "from_single_file"):
        raise UsageError(f"diffusers cannot load a {entry[1]} from a single GGUF file", hint="drop --gguf")
    if not installed("gguf"):
        raise ConfigError("--gguf needs the gguf package (not installed)", hint="pip install gguf")
    if not Path(path).is_file() and not path.startswith(("http://", "https://")):
        raise UsageError(f"--gguf {path}: no such file")
    try:
        return cls.from_single_file(
            path,
            quantization_config=diffusers.GGUFQuantizationConfig(compute_dtype=dtype),
            config=location,
            subfolder="transformer",
            torch_dtype=dtype,
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise UsageError(
            f"cannot load {path} as the {entry[1]} of {location}: {str(exc).splitlines()[0][:200]}",
            hint="use a GGUF of this model's transformer",
        ) from None


@contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """diffusers logs a failed LoRA load in full (every key of the state dict) before raising the same error:
    the error is reported in one line, so the log is held back while loading."""
    logger = logging.getLogger("diffusers")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


_SIZE_MISMATCH = re.compile(
    r"size mismatch for (\S+): copying a param with shape torch\.Size\(\[([\d, ]*)\]\) from checkpoint, "
    r"the shape in current model is torch\.Size\(\[([\d, ]*)\]\)"
)
_TARGETS = re.compile(r"Target modules \{(.*)\} not found in the base model")


def lora_mismatch(text: str) -> str:
    """One short line for why a LoRA does not fit, from the error diffusers or peft raised (which can list
    every key of the state dict over hundreds of lines)."""
    mismatches = _SIZE_MISMATCH.findall(text)
    if mismatches:
        key, theirs, ours = mismatches[0]
        return (
            f"{len(mismatches)} of its weights have other shapes than the model's "
            f"(e.g. {key}: {_shape(theirs)} in the LoRA, {_shape(ours)} in the model)"
        )
    targets = _TARGETS.search(text)
    if targets:
        names = sorted(re.findall(r"'([^']*)'", targets.group(1)))
        if names:
            return f"none of its {len(names)} target layers is in the model (e.g. {names[0]})"
    return _first_line(text)


def _shape(dims: str) -> str:
    """``4, 999`` → ``4x999``."""
    return "x".join(d.strip() for d in dims.split(","))


def _first_line(text: str) -> str:
    """The first non-empty line, a long set or list in it elided, at most 160 characters."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = re.sub(r"[{\[][^{}\[\]]{60,}[}\]]", "[…]", line)
    return line if len(line) <= 160 else line[:159] + "…"


def _adapters(pipe: Any) -> set[str]:
    try:
        listed = pipe.get_list_adapters()
    except (AttributeError, ValueError):
        return set()
    return {name for names in listed.values() for name in names}


def apply_loras(pipe: Any, specs: list[tuple[str, float]]) -> list[dict[str, Any]]:
    """Load each LoRA as its own adapter and activate them all with their scales; what to record."""
    if not specs:
        return []
    pipeline = type(pipe).__name__
    if not hasattr(pipe, "load_lora_weights"):
        raise UsageError(f"{pipeline} does not take LoRAs", hint="drop --lora")
    if not installed("peft"):
        raise ConfigError("--lora needs peft (not installed)", hint="pip install peft (or the local extra)")
    names: list[str] = []
    for number, (source, _scale) in enumerate(specs, 1):
        name = f"lora{number}"
        path = Path(source).expanduser()
        where: dict[str, Any] = {}
        target: str = source
        if path.is_file():  # a single .safetensors file: diffusers wants its folder and its name
            target, where = str(path.parent), {"weight_name": path.name}
        elif path.is_dir():
            target = str(path)
        try:
            with _quiet_diffusers():
                pipe.load_lora_weights(target, adapter_name=name, **where)
        except OSError as exc:
            raise UsageError(f"cannot read the LoRA {source}: {_first_line(str(exc))}") from None
        except (ValueError, RuntimeError, KeyError, TypeError, AttributeError) as exc:
            raise UsageError(
                f"the LoRA {source} does not fit {pipeline}: {lora_mismatch(str(exc))}",
                hint="use a LoRA trained for this model's architecture",
            ) from None
        if name not in _adapters(pipe):
            raise UsageError(
                f"the LoRA {source} does not fit {pipeline}: none of its weights matches the model's layers",
                hint="use a LoRA trained for this model's architecture",
            )
        names.append(name)
    pipe.set_adapters(names, adapter_weights=[scale for _, scale in specs])
    return [{"source": source, "scale": scale} for source, scale in specs]
