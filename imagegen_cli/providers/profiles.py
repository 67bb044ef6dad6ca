"""Built-in provider profiles and per-model capabilities: the registry of gateways, as data.

Adding a gateway is a new :class:`ProviderProfile` entry (or a ``[providers.NAME]`` table in the config
file), never a new branch in the code. Facts come from ``shared/spec/providers.md``. The profile types live
in ``profile_types``, the built-in catalogue in ``catalog_openai`` and ``catalog_gateways``; what callers
need of them is re-exported here (``__all__``).
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from imagegen_cli.errors import ConfigError
from imagegen_cli.providers.catalog_gateways import APIMART, IMAGEGEN, KKIAI, MKA1, MODELMAX, TOKEN360
from imagegen_cli.providers.catalog_openai import OPENAI
from imagegen_cli.providers.profile_types import ImageInputs, ModelCaps, ProviderProfile

__all__ = ["BUILTIN_PROFILES", "LOCAL_PROVIDER", "OPENAI", "ModelCaps", "ProviderProfile", "caps_from_config"]

BUILTIN_PROFILES: dict[str, ProviderProfile] = {}
for _profile in (OPENAI, MKA1, KKIAI, MODELMAX, TOKEN360, APIMART, IMAGEGEN):
    if _profile.name in BUILTIN_PROFILES:  # a slip in the catalogue: two gateways under one name
        raise ValueError(f"provider {_profile.name!r} registered twice")
    BUILTIN_PROFILES[_profile.name] = _profile

LOCAL_PROVIDER = "local"

_CAPS_FIELDS = {f.name for f in fields(ModelCaps)} - {"id"}
_TUPLE_FIELDS = {"sizes", "ratios", "tiers", "n_values", "qualities", "response_formats", "output_formats"}


_INPUT_KEYS = {f.name for f in fields(ImageInputs)}


def _image_inputs(value: object, base: ImageInputs | None, where: str) -> ImageInputs:
    """An ``image_inputs`` table (way, max_images, mask, path, field, as_list, ...) over the model's own."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table", hint='e.g. image_inputs = { way = "field", field = "image" }')
    unknown = set(value) - _INPUT_KEYS
    if unknown:
        raise ConfigError(
            f"unknown key {sorted(unknown)[0]!r} in {where}", hint="known: " + ", ".join(sorted(_INPUT_KEYS))
        )
    if value.get("way", "edits") not in ("edits", "field", "upload"):
        raise ConfigError(f'{where}.way must be "edits", "field" or "upload"')
    values: dict[str, Any] = {key: tuple(item) if isinstance(item, list) else item for key, item in value.items()}
    # A table in the config is the user's own word for the field: it is no longer "unconfirmed".
    return replace(base or ImageInputs(), **{"confirmed": True, **values})


def caps_from_config(model_id: str, raw: dict[str, Any], base: ModelCaps, where: str) -> ModelCaps:
    """Capabilities from a config table, on top of ``base``; unknown keys are a config error."""
    if "params" in raw:  # the key's name before 0.2: still read, so existing config files keep working
        raw = {("flag_fields" if k == "params" else k): v for k, v in raw.items()}
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
        elif key == "image_inputs":
            values[key] = _image_inputs(value, base.image_inputs, f"{where}.image_inputs")
        elif key in ("flag_fields", "quality_map"):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{key} must be a table")
            values[key] = {str(k): str(v) for k, v in value.items()}
        else:
            values[key] = value
    try:
        return replace(base, id=model_id, **values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"invalid capabilities in {where}: {exc}", hint="see the README's Providers section"
        ) from None
