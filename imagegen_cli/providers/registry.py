"""Provider registry: built-in profiles merged with the config file, model-string resolution, keys."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from imagegen_cli.config import KeySource, env_name, find_key, key_env_vars
from imagegen_cli.errors import ConfigError, UsageError
from imagegen_cli.providers.profiles import (
    BUILTIN_PROFILES,
    LOCAL_PROVIDER,
    ModelCaps,
    ProviderProfile,
    caps_from_config,
)

DEFAULT_MODEL = "local:auto"
_PROFILE_KEYS = {
    "base_url", "dialect", "api_key_env", "default_model", "models", "capabilities", "headers",
    "generate_path", "task_path", "cancel_path", "records_path", "models_path", "poll_interval",
    "on_behalf_of_header",
}  # fmt: skip


def load_profiles(config: dict[str, Any]) -> dict[str, ProviderProfile]:
    """Built-in profiles, with ``[providers.NAME]`` tables from the config applied or added."""
    profiles = dict(BUILTIN_PROFILES)
    tables = config.get("providers", {})
    if not isinstance(tables, dict):
        raise ConfigError("config key 'providers' must be a table of [providers.NAME] tables")
    for name, table in tables.items():
        where = f"[providers.{name}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table")
        if name == LOCAL_PROVIDER:
            continue
        unknown = set(table) - _PROFILE_KEYS
        if unknown:
            raise ConfigError(
                f"unknown setting {sorted(unknown)[0]!r} in {where}",
                hint="known: " + ", ".join(sorted(_PROFILE_KEYS)),
            )
        base = profiles.get(name)
        if base is None:
            if "base_url" not in table:
                raise ConfigError(f"{where} defines a new provider but has no base_url")
            base = ProviderProfile(name=name, base_url=str(table["base_url"]), builtin=False)
        dialect = table.get("dialect", base.dialect)
        if dialect not in ("openai", "tasks"):
            raise ConfigError(f"{where} dialect must be 'openai' or 'tasks', not {dialect!r}")
        default_caps = base.default_caps
        if "capabilities" in table:
            default_caps = caps_from_config("*", table["capabilities"], default_caps, f"{where}.capabilities")
        models = dict(base.models)
        for model_id, raw in (table.get("models") or {}).items():
            if not isinstance(raw, dict):
                raise ConfigError(f"{where}.models.{model_id} must be a table")
            models[model_id] = caps_from_config(model_id, raw, models.get(model_id, default_caps), f"{where}.models")
        key_env = base.key_env
        if table.get("api_key_env"):
            key_env = (str(table["api_key_env"]), *key_env)
        profiles[name] = replace(
            base,
            base_url=str(table.get("base_url", base.base_url)),
            dialect=dialect,
            default_model=table.get("default_model", base.default_model),
            default_caps=default_caps,
            models=models,
            key_env=key_env,
            headers={**base.headers, **{str(k): str(v) for k, v in (table.get("headers") or {}).items()}},
            generate_path=str(table.get("generate_path", base.generate_path)),
            task_path=str(table.get("task_path", base.task_path)),
            cancel_path=table.get("cancel_path", base.cancel_path),
            records_path=table.get("records_path", base.records_path),
            models_path=table.get("models_path", base.models_path),
            poll_interval=float(table.get("poll_interval", base.poll_interval)),
            on_behalf_of_header=table.get("on_behalf_of_header", base.on_behalf_of_header),
        )
    return profiles


def split_model(
    model_arg: str | None, provider_arg: str | None, config: dict[str, Any], names: set[str]
) -> tuple[str, str | None]:
    """Resolve ``-m``/``--provider``/defaults into (provider, model or None for its default)."""
    model = model_arg or os.environ.get("IMAGEGEN_MODEL") or None
    if model is None and provider_arg is None:
        model = str(config.get("default_model") or DEFAULT_MODEL)
    if model is None:
        assert provider_arg is not None
        return _check_provider(provider_arg, names), None
    prefix, sep, rest = model.partition(":")
    if sep and prefix in names:
        if provider_arg and provider_arg != prefix:
            raise UsageError(
                f"--provider {provider_arg} conflicts with model {model!r}",
                hint=f"drop --provider, or write -m {provider_arg}:{rest}",
            )
        return prefix, rest or None
    if provider_arg:
        return _check_provider(provider_arg, names), model
    from imagegen_cli.local.catalog import LOCAL_MODELS

    owners = sorted(name for name, profile in BUILTIN_PROFILES.items() if model in profile.models)
    if model in LOCAL_MODELS:
        owners.append(LOCAL_PROVIDER)
    if len(owners) == 1:
        return owners[0], model
    if owners:
        raise UsageError(
            f"model {model!r} is offered by several providers: {', '.join(owners)}",
            hint=f"name one, e.g. -m {owners[0]}:{model}",
        )
    raise UsageError(
        f"unknown model {model!r} and no provider given",
        hint="prefix it with a provider (" + ", ".join(sorted(names)) + "), e.g. -m openai:" + model,
    )


def _check_provider(name: str, names: set[str]) -> str:
    if name not in names:
        raise UsageError(f"unknown provider {name!r}", hint="known providers: " + ", ".join(sorted(names)))
    return name


def is_loopback(host: str) -> bool:
    """True for localhost and any address in 127.0.0.0/8 or ::1."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ResolvedProvider:
    """A profile bound to this invocation: base URL chosen, key looked up (not yet required)."""

    profile: ProviderProfile
    model: str
    caps: ModelCaps
    base_url: str
    key: str | None
    key_source: KeySource | None

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def official(self) -> bool:
        """True when the base URL is the built-in provider's own (not a gateway in front of it)."""
        builtin = BUILTIN_PROFILES.get(self.name)
        return builtin is not None and self.base_url.rstrip("/") == builtin.base_url.rstrip("/")

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")

    def key_vars(self) -> list[str]:
        extra = self.profile.key_env[0] if self.profile.key_env and not self.profile.builtin else None
        return key_env_vars(self.name, extra)

    def missing_key_error(self) -> ConfigError:
        return ConfigError(
            f"no API key for {self.name}",
            hint=f"set {self.key_vars()[0]} or run: imagegen keys set {self.name}",
        )

    def require_key(self) -> str:
        if not self.key:
            raise self.missing_key_error()
        return self.key

    def check_transport(self) -> None:
        """Refuse to send a key over plain http unless the host is a loopback address."""
        parts = urlsplit(self.base_url)
        try:
            parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            valid = False
        if not valid:
            raise ConfigError(f"invalid base URL for {self.name}: {self.base_url!r}", hint="use https://host/path")
        if parts.scheme == "http" and self.key and not is_loopback(parts.hostname or ""):
            raise ConfigError(
                f"refusing to send the {self.name} API key over plain http to {parts.hostname}",
                hint="use an https:// base URL",
            )


def resolve_provider(
    profiles: dict[str, ProviderProfile], name: str, model: str | None, base_url: str | None
) -> ResolvedProvider:
    """Bind a profile: model (or its default), base URL by precedence, and the key if any."""
    profile = profiles[name]
    model_id = model or profile.default_model
    if not model_id:
        raise UsageError(f"provider {name} has no default model", hint=f"name one: -m {name}:MODEL")
    url = (
        base_url
        or os.environ.get(f"IMAGEGEN_{env_name(name)}_BASE_URL")
        or (os.environ.get("OPENAI_BASE_URL") if name == "openai" else None)
        or profile.base_url
    )
    extra = profile.key_env[0] if profile.key_env and not profile.builtin else None
    found = find_key(name, extra)
    key, source = found if found else (None, None)
    return ResolvedProvider(profile, model_id, profile.caps_for(model_id), url, key, source)
