"""Turn a :class:`GenerationRequest` into the exact calls a provider will receive (the plan).

This is where DESIGN.md's mapping rules live: unsupported flags are dropped with a note, values
outside what a model accepts are usage errors raised before anything is sent, ratios and sizes are
converted between pixel and ratio providers, and ``-n`` fans out into several calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from imagegen_cli.errors import UsageError
from imagegen_cli.inputs import SourceImage
from imagegen_cli.plans import JournalEntry
from imagegen_cli.providers.calls import HttpCall, JsonPayload, MultipartPayload, describe_call
from imagegen_cli.providers.inputs import InputPlan, Upload, plan_inputs
from imagegen_cli.providers.profiles import ModelCaps
from imagegen_cli.providers.registry import ResolvedProvider
from imagegen_cli.request import (
    GenerationRequest,
    Notes,
    Ratio,
    Size,
    aspect_distance,
    nearest_ratio,
    nearest_size,
    ratio_tier_pixels,
    size_to_ratio_tier,
)


@dataclass(frozen=True)
class PlannedCall:
    """One HTTP call of the plan: the body, extra headers, and which images it yields."""

    index: int  # 0-based call number
    first_image: int  # 1-based index of the first image this call yields
    count: int
    http: HttpCall  # the request exactly as it is sent (built once, here)
    seed: int | None

    @property
    def body(self) -> dict[str, Any]:
        """The JSON value the call sends."""
        return self.http.json


@dataclass(frozen=True)
class Plan:
    """Everything a run will send, plus the notes the mapping produced."""

    provider: ResolvedProvider
    request: GenerationRequest
    calls: tuple[PlannedCall, ...]
    notes: tuple[str, ...]
    response_format: str | None
    output_format: str | None = None  # --format as planned: a narrowed (resumed) plan asks for it again
    uploads: tuple[Upload, ...] = ()  # input files sent ahead of the calls (apimart), each once per job
    inlines: tuple[SourceImage, ...] = ()  # input files sent as data: URIs, read when each call goes out

    @property
    def method_url(self) -> tuple[str, str]:
        return "POST", self.provider.url(self.provider.profile.generate_path)

    @property
    def provider_name(self) -> str:
        return self.provider.name

    @property
    def model_name(self) -> str:
        return self.provider.model

    def describe(self) -> dict[str, Any]:
        """The ``--dry-run`` form: each call exactly as it is sent (the same header builder), key redacted."""
        sent = [upload.http for upload in self.uploads] + [call.http for call in self.calls]
        calls = [describe_call(http, self.provider.shown_headers(http)) for http in sent]
        return {"provider": self.provider.name, "model": self.provider.model, "calls": calls}

    def journal_entry(self) -> JournalEntry:
        calls = [{"first_image": c.first_image, "count": c.count, "seed": c.seed} for c in self.calls]
        return JournalEntry(self.provider.profile.dialect, self.provider.base_url, calls)


def _where(provider: ResolvedProvider) -> str:
    return f"{provider.name}:{provider.model}"


def _map_size(request: GenerationRequest, caps: ModelCaps, where: str, notes: Notes) -> dict[str, Any]:
    """The body fields that carry the size, in the form the model takes."""
    mode = caps.size_mode
    tier = request.resolution
    if mode == "none":
        for flag, value in (("--size", request.size), ("--ratio", request.ratio), ("--resolution", tier)):
            if value:
                notes.dropped(flag, where)
        return {}

    if mode == "pixels":
        listed = list(caps.pixel_sizes)
        if request.size:
            if str(request.size) not in caps.sizes:
                raise UsageError(
                    f"size {request.size} is not accepted by {where}",
                    hint="accepted sizes: " + ", ".join(caps.sizes),
                )
            return {"size": str(request.size)}
        if request.ratio or tier:
            ratio = request.ratio or Ratio(1, 1)
            target = ratio_tier_pixels(ratio, tier) if tier else None
            chosen = nearest_size(listed, ratio.aspect, target.width * target.height if target else None)
            text = f"--ratio {ratio}{' --resolution ' + tier if tier else ''} → size {chosen} for {where}"
            if aspect_distance(chosen.aspect, ratio.aspect) > 1e-3 or (target and target != chosen):
                notes.approximated(text + " (nearest supported)")
            else:
                notes.info(text)
            return {"size": str(chosen)}
        return {}

    if mode == "free":
        if request.size:
            _check_free_size(request.size, caps, where)
            _note_experimental(request.size, caps, where, notes)
            return {"size": str(request.size)}
        if request.ratio and caps.ratio_field and not tier:
            return {caps.ratio_field: str(request.ratio)}
        if request.ratio or tier:
            ratio = request.ratio or Ratio(1, 1)
            asked = ratio_tier_pixels(ratio, tier or "1K")
            pixels = _clamp_free_size(asked, caps)
            text = f"--ratio {ratio} --resolution {tier or '1K'} → size {pixels} for {where}"
            if pixels != asked:
                notes.approximated(f"{text} ({asked} is above the model's maximum)")
            else:
                notes.info(text)
            _check_free_size(pixels, caps, where)
            _note_experimental(pixels, caps, where, notes)
            return {"size": str(pixels)}
        return {}

    # Ratio providers: ratio_size (apimart), aspect_ratio (kkiai flux), ratio_field (token360).
    field_name = {"ratio_size": "size", "aspect_ratio": "aspect_ratio", "ratio_field": "ratio"}[mode]
    body: dict[str, Any] = {}
    ratio_text: str | None = None
    if request.ratio:
        ratio_text = str(request.ratio)
        if ratio_text not in caps.ratios:
            raise UsageError(
                f"ratio {ratio_text} is not accepted by {where}",
                hint="accepted ratios: " + " ".join(caps.ratios),
            )
    elif request.size:
        if caps.tiers:
            ratio_text, mapped_tier, exact = size_to_ratio_tier(request.size, list(caps.ratios), list(caps.tiers))
            text = f"--size {request.size} → ratio {ratio_text}, resolution {mapped_tier} for {where}"
            tier = mapped_tier
        else:
            ratio_text = nearest_ratio(list(caps.ratios), request.size.aspect)
            exact = aspect_distance(Ratio.parse(ratio_text).aspect, request.size.aspect) < 1e-3
            text = f"--size {request.size} → ratio {ratio_text} for {where}"
        if exact:
            notes.info(text)
        else:
            notes.approximated(text + " (nearest supported)")
    elif caps.default_ratio:
        ratio_text = caps.default_ratio
    if ratio_text:
        body[field_name] = ratio_text
    if tier:
        if not caps.tiers:
            if request.resolution:
                notes.dropped("--resolution", where)
        elif tier not in caps.tiers:
            raise UsageError(f"resolution {tier} is not accepted by {where}", hint="accepted: " + ", ".join(caps.tiers))
        else:
            body["resolution"] = tier
    return body


def _check_free_size(size: Size, caps: ModelCaps, where: str) -> None:
    problems = []
    if caps.size_multiple and (size.width % caps.size_multiple or size.height % caps.size_multiple):
        problems.append(f"both sides must be multiples of {caps.size_multiple}")
    if caps.min_aspect and size.aspect < caps.min_aspect - 1e-9:
        problems.append(f"aspect must be at least {caps.min_aspect:.3g}")
    if caps.max_aspect and size.aspect > caps.max_aspect + 1e-9:
        problems.append(f"aspect must be at most {caps.max_aspect:.3g}")
    if caps.max_pixels and size.width * size.height > caps.max_pixels:
        problems.append(f"at most {caps.max_pixels} pixels")
    if caps.max_side and max(size.width, size.height) > caps.max_side:
        problems.append(f"sides at most {caps.max_side}")
    if problems:
        raise UsageError(f"size {size} is not accepted by {where}: " + "; ".join(problems))


def _clamp_free_size(size: Size, caps: ModelCaps) -> Size:
    """Scale a computed size down, keeping its aspect, until the model's pixel and side limits hold."""
    factor = 1.0
    if caps.max_pixels and size.width * size.height > caps.max_pixels:
        factor = min(factor, math.sqrt(caps.max_pixels / (size.width * size.height)))
    if caps.max_side and max(size.width, size.height) > caps.max_side:
        factor = min(factor, caps.max_side / max(size.width, size.height))
    if factor >= 1.0:
        return size
    step = caps.size_multiple or 1
    return Size(max(step, int(size.width * factor) // step * step), max(step, int(size.height * factor) // step * step))


_PIXELS_NAMED = {2560 * 1440: "2560x1440"}  # the built-in threshold, in the words OpenAI's docs use


def _note_experimental(size: Size, caps: ModelCaps, where: str, notes: Notes) -> None:
    limit = caps.experimental_pixels
    if limit and size.width * size.height > limit:
        notes.info(f"size {size} is above {_PIXELS_NAMED.get(limit, f'{limit} pixels')}: experimental for {where}")


def _map_quality(request: GenerationRequest, caps: ModelCaps, where: str, notes: Notes) -> dict[str, Any]:
    quality = request.quality
    if quality is None:
        return {}
    if caps.qualities is None or quality in caps.qualities:
        return {"quality": quality}
    if not caps.qualities:
        notes.dropped("--quality", where)
        return {}
    mapped = caps.quality_map.get(quality)
    if mapped is None:
        raise UsageError(f"quality {quality} is not accepted by {where}", hint="accepted: " + ", ".join(caps.qualities))
    notes.approximated(f"--quality {quality} → {mapped} for {where}")
    return {"quality": mapped}


def _map_output_format(
    output_format: str | None, provider: ResolvedProvider, where: str, notes: Notes, params: dict[str, Any]
) -> dict[str, Any]:
    """``--format`` as the model's own ``output_format`` where it has one; GIF and SVG rules."""
    caps = provider.caps
    native = output_format is not None and output_format in caps.output_formats
    if output_format == "svg" and not native:
        makers = [m for m, c in provider.profile.models.items() if "svg" in c.output_formats and not c.retired]
        raise UsageError(
            f"--format svg: {where} does not draw SVG and a raster image cannot become one",
            hint=("models that do: " + ", ".join(f"{provider.name}:{m}" for m in makers)) if makers else None,
        )
    if output_format == "gif" and not native:
        notes.info(f"--format gif: {where} makes no animations; its image is saved as a one-frame GIF")
    animated = output_format == "gif" and native
    for name, low, high in (("frame_count", 2, 16), ("frame_duration_ms", 1, None)):
        if name not in params:
            continue
        if not animated:
            raise UsageError(
                f"--param {name} needs --format gif on a model that makes animated GIFs",
                hint=f"add --format gif{'' if output_format != 'gif' else ', and pick a model that makes GIFs'}",
            )
        value = params[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < low or (high and value > high):
            bounds = f"{low}-{high}" if high else f"at least {low}"
            raise UsageError(f"--param {name}={value!r} is out of range", hint=f"an integer, {bounds}")
    if native and output_format in ("gif", "svg") and "output_compression" in params:
        raise UsageError(f"--param output_compression does not apply to --format {output_format}")
    if params.get("background") == "transparent" and output_format in ("jpeg", "gif"):
        raise UsageError(
            f"--param background=transparent needs --format png or webp, not {output_format}",
            hint="JPEG has no transparency",
        )
    return {"output_format": output_format} if native else {}


def _check_retired(provider: ResolvedProvider, where: str, notes: Notes) -> None:
    """A retired model fails fast at its own provider; a gateway elsewhere may still serve it."""
    caps = provider.caps
    if not caps.retired:
        return
    instead = f"; use {caps.replacement}" if caps.replacement else ""
    if provider.official:
        first = caps.replacement.split(" or ")[0] if caps.replacement else None
        raise UsageError(
            f"{where} {caps.retired}{instead}",
            hint=(f"e.g. -m {provider.name}:{first}; " if first else "")
            + "a gateway that still serves it: --base-url URL",
        )
    notes.info(f"{where} {caps.retired} at {provider.name}; sent anyway to {provider.base_url}{instead}")


def _chunks(n: int, caps: ModelCaps, one_per_call: bool) -> list[int]:
    """Split n images into per-call counts that the model accepts."""
    if one_per_call or not caps.send_n:
        return [1] * n
    allowed = sorted(set(caps.n_values) or range(1, caps.n_max + 1), reverse=True)
    counts: list[int] = []
    remaining = n
    while remaining:
        step = next((a for a in allowed if a <= remaining), 1)
        counts.append(step)
        remaining -= step
    return counts


def _payload(body: dict[str, Any], inputs: InputPlan | None, where: str) -> JsonPayload | MultipartPayload:
    """The call's body: JSON, or multipart with the input images as files (an edit)."""
    if inputs is not None and inputs.files:
        return inputs.multipart(body)
    if inputs is not None:
        body = {**body, **inputs.fields}
    try:
        return JsonPayload(body)
    except ValueError as exc:
        raise UsageError(
            f"the request for {where} cannot be sent as JSON: {exc}", hint="check --param values"
        ) from None


def build_plan(
    request: GenerationRequest, provider: ResolvedProvider, output_format: str | None = None, first_image: int = 1
) -> Plan:
    """Validate the request against the model and lay out every call; raises UsageError.

    ``first_image`` numbers the images from there (a resumed batch line making only its missing images).
    """
    caps = provider.caps
    where = _where(provider)
    notes = Notes(request.strict)
    _check_retired(provider, where, notes)

    if caps.prompt_max and len(request.prompt) > caps.prompt_max:
        raise UsageError(
            f"the prompt is {len(request.prompt)} characters; {where} accepts at most {caps.prompt_max}",
            hint="shorten the prompt",
        )

    body: dict[str, Any] = {"model": provider.model, "prompt": request.prompt}
    body.update(_map_size(request, caps, where, notes))
    body.update(_map_quality(request, caps, where, notes))

    response_format = request.response_format
    if caps.response_formats:
        if response_format and response_format not in caps.response_formats:
            raise UsageError(
                f"--response-format {response_format} is not accepted by {where}",
                hint="accepted: " + ", ".join(caps.response_formats),
            )
        response_format = response_format or caps.default_response_format
        if response_format:
            body["response_format"] = response_format
    elif response_format:
        notes.dropped("--response-format", where, "chosen by the gateway, not settable")
        response_format = None

    body.update(_map_output_format(output_format, provider, where, notes, dict(request.params)))

    optional = (
        ("--style", "style", request.style),
        ("--user", "user", request.user),
        ("--negative-prompt", "negative_prompt", request.negative_prompt),
        ("--steps", "steps", request.steps),
        ("--guidance", "guidance", request.guidance),
    )
    for flag, name, value in optional:
        if value is None:
            continue
        if name in caps.flag_fields:
            body[caps.flag_fields[name]] = value
        else:
            notes.dropped(flag, where)

    headers: dict[str, str] = {}
    if request.on_behalf_of:
        if provider.profile.on_behalf_of_header:
            headers[provider.profile.on_behalf_of_header] = request.on_behalf_of
        else:
            notes.dropped("--on-behalf-of", where)

    seed_field = caps.flag_fields.get("seed")
    if request.seed is not None and not seed_field:
        notes.dropped("--seed", where)
    per_image_seed = request.seed is not None and seed_field is not None
    # A seeded call makes one image, unless the gateway gives image i of a call the seed + i (as imagegen serve
    # does): then image i of the run still has --seed + i, and the calls keep their n. SVG output takes n=1 only.
    one_per_call = (per_image_seed and not caps.seed_counts_up) or body.get("output_format") == "svg"
    counts = _chunks(request.n, caps, one_per_call=one_per_call)
    if len(counts) > 1:
        per_call = "1 image per call" if max(counts) == 1 else f"up to {max(counts)} images per call"
        notes.info(f"-n {request.n} → {len(counts)} calls to {where} ({per_call})")

    inputs = plan_inputs(request, provider, where, notes)
    path = inputs.path if inputs is not None and inputs.path else provider.profile.generate_path
    calls: list[PlannedCall] = []
    first = first_image
    for number, count in enumerate(counts):
        call_body = dict(body)
        if caps.send_n:
            call_body["n"] = count
        seed = request.seed_for(first - 1) if per_image_seed else None
        if seed is not None and seed_field:
            call_body[seed_field] = seed
        # --param values are sent as given, last: they are the escape hatch for anything unmodelled.
        call_body.update(dict(request.params))
        http = provider.call("POST", provider.url(path), _payload(call_body, inputs, where), headers)
        calls.append(PlannedCall(number, first, count, http, seed))
        first += count

    uploads, inlines = (inputs.uploads, inputs.inlines) if inputs is not None else ((), ())
    return Plan(provider, request, tuple(calls), tuple(notes.items), response_format, output_format, uploads, inlines)
