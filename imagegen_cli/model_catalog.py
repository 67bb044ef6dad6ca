"""What every model accepts, as plain data for ``imagegen models`` (list, show) and shell completion.

Reads profiles and the local catalog only: no network, no torch, no httpx.
"""

from __future__ import annotations

import math
from typing import Any

from imagegen_cli.errors import UsageError
from imagegen_cli.local.catalog import AUTO_ID, LOCAL_MODELS, LocalModel, cache_state, repo_cache_dir
from imagegen_cli.providers.profiles import LOCAL_PROVIDER, ModelCaps, ProviderProfile
from imagegen_cli.providers.registry import profile_key_vars

COMMON_FLAGS = (
    "-n",
    "--size",
    "--ratio",
    "--resolution",
    "--quality",
    "--style",
    "--seed",
    "--negative-prompt",
    "--steps",
    "--guidance",
    "--user",
    "--on-behalf-of",
    "--response-format",
)
_PARAM_FLAGS = {
    "style": "--style",
    "seed": "--seed",
    "negative_prompt": "--negative-prompt",
    "steps": "--steps",
    "guidance": "--guidance",
    "user": "--user",
}


def n_range(caps: ModelCaps) -> str:
    if not caps.send_n:
        return "1"
    if caps.n_values:
        return ",".join(str(v) for v in caps.n_values)
    return "1" if caps.n_max == 1 else f"1-{caps.n_max}"


def notable_params(caps: ModelCaps, profile: ProviderProfile) -> list[str]:
    """seed, style, negative prompt, quality values, ... in one short list."""
    notes = [_PARAM_FLAGS[p].lstrip("-") for p in caps.flag_fields if p in _PARAM_FLAGS and p != "user"]
    if caps.retired:
        notes.insert(0, caps.retired.removeprefix("was ") + (f"; use {caps.replacement}" if caps.replacement else ""))
    if caps.qualities:
        notes.append("quality " + "|".join(caps.qualities))
    elif caps.qualities is None:
        notes.append("quality (as given)")
    animated = [f for f in ("gif", "svg") if f in caps.output_formats]
    if animated:
        notes.append("--format " + "/".join(animated))
    if caps.prompt_max:
        notes.append(f"prompt ≤ {caps.prompt_max}")
    if profile.on_behalf_of_header:
        notes.append("on-behalf-of")
    if caps.size_mode == "aspect_ratio":
        notes.append("aspect_ratio required")
    if caps.image_inputs is not None:
        inputs = caps.image_inputs
        notes.append(
            f"--image ≤ {inputs.max_images}"
            + (" + --mask" if inputs.mask else "")
            + ("" if inputs.confirmed else " (unconfirmed field)")
        )
    return notes


def remote_model_info(profile: ProviderProfile, caps: ModelCaps) -> dict[str, Any]:
    return {
        "provider": profile.name,
        "id": caps.id,
        "ref": f"{profile.name}:{caps.id}",
        "mode": "async" if profile.is_async else "sync",
        "size_mode": caps.size_mode,
        "sizes": list(caps.sizes),
        "ratios": list(caps.ratios),
        "tiers": list(caps.tiers),
        "size_limits": {
            k: v
            for k, v in (
                ("multiple", caps.size_multiple),
                ("min_aspect", caps.min_aspect),
                ("max_aspect", caps.max_aspect),
                ("max_pixels", caps.max_pixels),
                ("max_side", caps.max_side),
            )
            if v
        },
        "n": n_range(caps),
        "n_max_per_call": caps.n_max if caps.send_n else 1,
        "n_values": list(caps.n_values),
        "prompt_max": caps.prompt_max,
        "qualities": None if caps.qualities is None else list(caps.qualities),
        "quality_map": dict(caps.quality_map),
        "response_formats": list(caps.response_formats),
        "params": sorted(caps.flag_fields),
        "notable": notable_params(caps, profile),
        "summary": caps.summary,
        "retired": caps.retired.removeprefix("was ") if caps.retired else None,
        "replacement": caps.replacement,
        "default": caps.id == profile.default_model,
        "image_inputs": None
        if caps.image_inputs is None
        else {
            "way": caps.image_inputs.way,
            "max_images": caps.image_inputs.max_images,
            "mask": caps.image_inputs.mask,
            "input_fidelities": list(caps.image_inputs.input_fidelities),
            "confirmed": caps.image_inputs.confirmed,
        },
    }


def local_state(model: LocalModel) -> tuple[bool, int, str | None, str]:
    """(on disk, bytes on disk, where, state in words): the Hub cache, or the tiny pipeline's build dir."""
    if model.repo is None:
        from imagegen_cli.local.tiny import tiny_dir

        # local:tiny is built on this machine the first time it runs: until then nothing is on disk.
        where = tiny_dir()
        if not (where / "model_index.json").is_file():
            return False, 0, str(where), "built on first use"
        size = sum(f.stat().st_size for f in where.rglob("*") if f.is_file())
        return True, size, str(where), "built"
    state = cache_state(model.repo)
    words = "downloaded" if state.downloaded else "not downloaded"
    return state.downloaded, state.size_bytes, str(repo_cache_dir(model.repo)), words


def local_model_info(model: LocalModel) -> dict[str, Any]:
    on_disk, size, where, state = local_state(model)
    return {
        "provider": LOCAL_PROVIDER,
        "id": model.id,
        "ref": f"{LOCAL_PROVIDER}:{model.id}",
        "mode": "local",
        "repo": model.repo,
        "pipeline": model.pipeline,
        "steps": model.steps,
        "guidance": model.guidance,
        "native_size": model.native,
        "size_multiple": model.size_multiple,
        "dtype": model.dtype,
        "licence": model.licence,
        "memory_gb": model.memory_gb,
        "memory_by_mode_gb": model.memory_by_mode,
        "negative_prompt": model.negative_prompt,
        "downloaded": on_disk,
        "state": state,
        "size_on_disk": size,
        "cache_dir": where,
        "summary": model.summary,
    }


DEFAULT_ONLY = "the provider's configured default model: its general limits apply"


def listed_models(profile: ProviderProfile) -> dict[str, ModelCaps]:
    """A provider's models: its catalogue (built-in and ``[providers.NAME.models.ID]`` tables) and its default.

    A gateway added in the config often names only a ``default_model``; it is still a model it offers.
    """
    models = dict(profile.models)
    if profile.default_model and profile.default_model not in models:
        models[profile.default_model] = profile.caps_for(profile.default_model)
    if not models:  # a provider whose models are whatever its server has (imagegen): the limits of any of them
        models[profile.default_caps.id] = profile.default_caps
    return models


def _listed_model_info(profile: ProviderProfile, caps: ModelCaps) -> dict[str, Any]:
    info = remote_model_info(profile, caps)
    if caps.id not in profile.models:
        info["summary"] = info["summary"] or DEFAULT_ONLY
    return info


def provider_info(profile: ProviderProfile) -> dict[str, Any]:
    return {
        "name": profile.name,
        "base_url": profile.base_url,
        "dialect": profile.dialect,
        "mode": "async" if profile.is_async else "sync",
        "description": profile.docs,
        "key_env": profile_key_vars(profile),
        "default_model": profile.default_model,
        "builtin": profile.builtin,
        "models": [_listed_model_info(profile, caps) for caps in listed_models(profile).values()],
    }


def local_provider_info() -> dict[str, Any]:
    return {
        "name": LOCAL_PROVIDER,
        "base_url": None,
        "dialect": "diffusers",
        "mode": "local",
        "key_env": [],
        "default_model": AUTO_ID,
        "builtin": True,
        "models": [local_model_info(m) for m in LOCAL_MODELS.values()],
    }


def catalog(
    profiles: dict[str, ProviderProfile], *, provider: str | None = None, local: bool = True, remote: bool = True
) -> list[dict[str, Any]]:
    """Every provider with its models, as ``imagegen models --json`` prints them."""
    names = [*profiles, LOCAL_PROVIDER]
    if provider is not None and provider not in names:
        raise UsageError(f"unknown provider {provider!r}", hint="known providers: " + ", ".join(sorted(names)))
    entries: list[dict[str, Any]] = []
    if remote:
        entries.extend(provider_info(p) for name, p in profiles.items() if provider in (None, name))
    if local and provider in (None, LOCAL_PROVIDER):
        entries.append(local_provider_info())
    return entries


def model_refs(profiles: dict[str, ProviderProfile]) -> list[str]:
    """``provider:model`` for every known model: what ``-m`` completes to."""
    refs = [f"{name}:{model}" for name, p in profiles.items() for model in listed_models(p)]
    refs += [f"{LOCAL_PROVIDER}:{m}" for m in (*LOCAL_MODELS, AUTO_ID)]
    return refs


def find_model(profiles: dict[str, ProviderProfile], ref: str) -> tuple[str, dict[str, Any]]:
    """Resolve ``provider:model`` or a bare id that names exactly one model."""
    prefix, sep, rest = ref.partition(":")
    if sep and prefix == LOCAL_PROVIDER:
        if rest in LOCAL_MODELS:
            return LOCAL_PROVIDER, local_model_info(LOCAL_MODELS[rest])
        raise UsageError(f"unknown local model {rest!r}", hint="local models: " + ", ".join(LOCAL_MODELS))
    if sep and prefix in profiles:
        profile = profiles[prefix]
        caps = listed_models(profile).get(rest)
        if caps is None:
            caps = profile.caps_for(rest)
            info = remote_model_info(profile, caps)
            info["summary"] = "not a built-in model: passed through with the provider's general limits"
            return prefix, info
        return prefix, _listed_model_info(profile, caps)
    owners = [name for name, p in profiles.items() if ref in listed_models(p)]
    if ref in LOCAL_MODELS:
        owners.append(LOCAL_PROVIDER)
    if len(owners) == 1:
        return find_model(profiles, f"{owners[0]}:{ref}")
    if owners:
        raise UsageError(
            f"{ref!r} is offered by several providers: {', '.join(owners)}", hint=f"name one, e.g. {owners[0]}:{ref}"
        )
    raise UsageError(f"unknown model {ref!r}", hint="see: imagegen models")


def flag_mapping(profile: ProviderProfile, caps: ModelCaps) -> dict[str, str]:
    """How each common flag of ``generate`` maps onto this model."""
    field = {"ratio_size": "size", "aspect_ratio": "aspect_ratio", "ratio_field": "ratio"}.get(caps.size_mode)
    mapping: dict[str, str] = {}
    if caps.send_n:
        mapping["-n"] = f"sent as n ({n_range(caps)} per call); more → several calls"
    else:
        mapping["-n"] = "one image per call, n not sent; -n K → K calls"
    if caps.size_mode == "pixels":
        mapping["--size"] = "sent as size; one of " + " ".join(caps.sizes)
        mapping["--ratio"] = "→ the listed size of nearest aspect (with a note)"
        mapping["--resolution"] = "with --ratio: the nearest size to the tier's area"
    elif caps.size_mode == "free":
        mapping["--size"] = "sent as size (" + caps.describe_sizes() + ")"
        mapping["--ratio"] = (
            f"sent as {caps.ratio_field}" if caps.ratio_field else "→ pixels from the ratio/tier table (with a note)"
        )
        mapping["--resolution"] = "with --ratio: picks the tier of the table (default 1K)"
    elif caps.size_mode == "none":
        for flag in ("--size", "--ratio", "--resolution"):
            mapping[flag] = "dropped (with a note)"
    else:
        mapping["--ratio"] = f"sent as {field}; one of " + " ".join(caps.ratios)
        mapping["--size"] = f"→ the nearest ratio{' and tier' if caps.tiers else ''}, sent as {field} (with a note)"
        mapping["--resolution"] = (
            "sent as resolution; one of " + " ".join(caps.tiers) if caps.tiers else "dropped (with a note)"
        )
    if caps.qualities is None:
        mapping["--quality"] = "sent as given"
    elif not caps.qualities:
        mapping["--quality"] = "dropped (with a note)"
    else:
        aliases = ", ".join(f"{k}→{v}" for k, v in caps.quality_map.items())
        mapping["--quality"] = "one of " + " ".join(caps.qualities) + (f"; approximated: {aliases}" if aliases else "")
    for param, flag in _PARAM_FLAGS.items():
        if param in caps.flag_fields:
            extra = ", one call per image (seed, seed+1, …)" if param == "seed" else ""
            mapping[flag] = f"sent as {caps.flag_fields[param]}{extra}"
        else:
            mapping[flag] = "dropped (with a note)"
    mapping["--on-behalf-of"] = (
        f"sent as the {profile.on_behalf_of_header} header" if profile.on_behalf_of_header else "dropped (with a note)"
    )
    mapping["--response-format"] = (
        "one of " + " ".join(caps.response_formats)
        if caps.response_formats
        else "chosen by the gateway (dropped with a note)"
    )
    return {flag: mapping[flag] for flag in COMMON_FLAGS if flag in mapping}


def local_flag_mapping(model: LocalModel) -> dict[str, str]:
    """What each flag of ``generate`` does to a local pipeline call (as ``local.planning`` builds it)."""
    from imagegen_cli.local.planning import DEFAULT_BATCH, QUALITY_STEPS

    dropped = "dropped (with a note)"
    scaled = sorted({(scale, q) for q, scale in QUALITY_STEPS.items() if scale != 1.0})
    quality = ", ".join(f"{q} → {max(1, math.ceil(model.steps * scale))}" for scale, q in scaled)
    multiple = model.size_multiple
    true_cfg = model.guidance_knob == "true_cfg_scale"  # which applies only with a negative prompt
    return {
        "-n": f"num_images_per_prompt, up to {DEFAULT_BATCH} per pipeline call (fewer when memory runs out); 1-100",
        "--size": f"width and height, rounded to multiples of {multiple} (default {model.native})",
        "--ratio": f"→ pixels at the native pixel count ({model.native}) in that aspect, multiples of {multiple}",
        "--resolution": "with --ratio: the tier's pixels from the ratio/tier table",
        "--quality": f"scales the default {model.steps} steps: {quality}; ignored with --steps",
        "--style": dropped,
        "--seed": "a torch.Generator per image: seed, seed+1, … (random when not given, and saved)",
        "--negative-prompt": "negative_prompt" + (" (no effect at guidance ≤ 1)" if model.guidance <= 1 else "")
        if model.negative_prompt
        else dropped,
        "--steps": f"num_inference_steps (default {model.steps})",
        "--guidance": f"{model.guidance_knob} (default {model.guidance:g})"
        + (", with an empty negative prompt when above 1 and none is given" if true_cfg else ""),
        "--param": "KEY=VALUE passed to the pipeline call as a keyword argument",
        "--user": dropped,
        "--on-behalf-of": dropped,
        "--response-format": dropped,
        "--device": "auto → cuda, then mps, then cpu",
        "--dtype": "auto → bf16 on CUDA (fp16 without bf16), fp16 on MPS, fp32 on the CPU",
        "--offload": "none | model (enable_model_cpu_offload) | sequential (enable_sequential_cpu_offload)",
        "--vae-tiling": "decode in tiles: less memory for large images",
        "--compile": "torch.compile of the repeated blocks (slow first image, faster after)",
        "--lora": "load_lora_weights, then set_adapters with each scale (default 1); needs peft",
        "--quantize": "8bit | 4bit on the denoiser and text encoders: bitsandbytes on CUDA, else optimum-quanto; "
        "fp8: torchao float8 (dynamic, per row) on the denoiser, CUDA compute capability 8.9+",
        "--gguf": "the transformer from one GGUF file (from_single_file); not with --quantize",
        "--scheduler": "from_config of the pipeline's scheduler: same noise schedule, same family (diffusion or flow)",
        "--variant": "loads the *.VARIANT.safetensors weight files (fp16, …)",
    }


def example_command(info: dict[str, Any]) -> str:
    """A ready-to-copy ``imagegen generate`` line for a model."""
    parts = ['imagegen generate "a red fox in the snow"', f"-m {info['ref']}"]
    if info["mode"] == "local":
        parts.append(f"--size {info['native_size']} --seed 7")
    elif info.get("ratios"):
        ratio = "16:9" if "16:9" in info["ratios"] else info["ratios"][0]
        parts.append(f"--ratio {ratio}")
        if info.get("tiers"):
            parts.append(f"--resolution {info['tiers'][-1] if '2K' not in info['tiers'] else '2K'}")
    elif info.get("size_mode") == "none":
        pass
    elif info.get("sizes"):
        sizes = [s for s in info["sizes"] if s != "auto"]
        parts.append(f"--size {sizes[-1] if sizes else 'auto'}")
    else:
        parts.append("--size 1024x1024")
    if "seed" in info.get("params", []):
        parts.append("--seed 42")
    parts.append("-o out/")
    return " ".join(parts)
