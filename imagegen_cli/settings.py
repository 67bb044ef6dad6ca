"""Validated settings: the config file and the environment, read once and checked value by value.

Every setting has one :class:`SettingSpec` that says its type, its accepted values and how a string
from ``config set`` becomes a value. A bad value in the file is a one-line usage error (exit 2) that
names the key and the file, raised when the settings are loaded, never later as an "internal error".
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagegen_cli.errors import UsageError
from imagegen_cli.request import OUTPUT_FORMATS

if TYPE_CHECKING:
    from imagegen_cli.providers.profiles import ProviderProfile

DEFAULT_MODEL = "local:auto"
BUILT_IN = "built in"  # Settings.default_model_source when neither IMAGEGEN_MODEL nor the config names a model
DEFAULT_TIMEOUT = 300.0
DEFAULT_SERVER = "http://127.0.0.1:8188"  # where `imagegen serve` listens by default; local runs try it first


class SettingError(UsageError):
    """A setting's value is not one it accepts (exit 2)."""

    code = "setting"


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a non-empty string")
    return value


def _positive_number(value: object) -> float:
    if isinstance(value, str):
        try:
            value = int(value) if value.strip().isdigit() else float(value)
        except ValueError:
            raise ValueError("a number of seconds above 0, e.g. 300") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError("a number of seconds above 0, e.g. 300")
    return value  # an int stays an int in the file: `timeout = 60`, not `60.0`


def _positive_int(value: object) -> int:
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise ValueError("a whole number from 1 to 64") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
        raise ValueError("a whole number from 1 to 64")
    return value


def _boolean(value: object) -> bool:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, bool):
        return value
    raise ValueError("true or false")


def _format(value: object) -> str:
    if not isinstance(value, str) or value.lower() not in OUTPUT_FORMATS:
        raise ValueError("one of " + ", ".join(OUTPUT_FORMATS))
    return value.lower()


def _template(value: object) -> str:
    from imagegen_cli.store.naming import check_template

    text = _text(value)
    try:
        check_template(text)
    except UsageError as exc:
        raise ValueError(f"a file-name template ({exc.message})") from None
    return text


def _server(value: object) -> str:
    """``off`` (always in-process), or the ``http(s)://HOST[:PORT]`` of an ``imagegen serve``."""
    from urllib.parse import urlsplit

    text = _text(value).strip()
    if text.lower() == "off":
        return "off"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.username is not None  # a password here would be printed in notes and dry runs
        or parts.query
        or parts.fragment
    ):
        raise ValueError("off, or http://HOST:PORT of an imagegen serve (e.g. http://127.0.0.1:8188)")
    return text.rstrip("/")


def _ray_address(value: object) -> str:
    from imagegen_cli.options import RAY_ADDRESS_HINT, ray_address_ok

    text = _text(value).strip()
    if not ray_address_ok(text):
        raise ValueError(RAY_ADDRESS_HINT)
    return text


def _gpus(value: object) -> float:
    try:
        number = float(value) if isinstance(value, str | int | float) and not isinstance(value, bool) else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or not 0 <= number <= 64:
        raise ValueError("a number from 0 to 64, e.g. 1 (0.5 shares a GPU)")
    return number


def _count(value: object) -> int:
    try:
        number = int(value) if isinstance(value, str | int) and not isinstance(value, bool) else 0
    except ValueError:
        number = 0
    if not 1 <= number <= 4096:
        raise ValueError("a whole number from 1 to 4096")
    return number


@dataclass(frozen=True)
class SettingSpec:
    """One top-level setting: what it means and how a value is checked (raises ValueError naming the accepted)."""

    name: str
    help: str
    check: Callable[[object], object]


SETTINGS: dict[str, SettingSpec] = {
    spec.name: spec
    for spec in (
        SettingSpec("default_model", "model used when -m is not given", _text),
        SettingSpec("output_dir", "directory images are saved to when -o is not given", _text),
        SettingSpec("name_template", "file-name template, e.g. {date}-{slug}-{index}.{ext}", _template),
        SettingSpec("format", "file format written: " + ", ".join(OUTPUT_FORMATS), _format),
        SettingSpec("timeout", "overall bound for remote work, in seconds", _positive_number),
        SettingSpec("concurrency", "calls in flight per provider (1-64)", _positive_int),
        SettingSpec("metadata", "embed generation parameters in images (true/false)", _boolean),
        SettingSpec("server", "imagegen serve that local models run on when it answers (a URL, or off)", _server),
        SettingSpec("ray_address", "--engine ray: the cluster (auto, ray://HOST:PORT, HOST:PORT, local)", _ray_address),
        SettingSpec("ray_workers", "--engine ray: workers (actors each holding a pipeline)", _count),
        SettingSpec("ray_gpus_per_worker", "--engine ray: GPUs each worker reserves (0 to 64)", _gpus),
    )
}
PROVIDERS_KEY = "providers"
ENGINES_KEY = "engines"  # [engines] PROVIDER = "ENGINE": which registered engine serves a provider
KNOWN_KEYS = (*SETTINGS, PROVIDERS_KEY, ENGINES_KEY)


def check_setting(key: str, value: object, where: str) -> object:
    """The checked value of a top-level setting; a bad one is exit 2 naming the key and ``where``."""
    spec = SETTINGS.get(key)
    if spec is None:
        raise SettingError(f"unknown setting {key!r} in {where}", hint="known: " + ", ".join(sorted(KNOWN_KEYS)))
    try:
        return spec.check(value)
    except ValueError as exc:
        raise SettingError(
            f"invalid {key} {shown_value(_no_userinfo(value))} in {where}: expected {exc}", hint=f"{key}: {spec.help}"
        ) from None


def _no_userinfo(value: object) -> object:
    """A URL's ``user:password@`` masked: a refused address is quoted in the error, its password never."""
    import re

    return re.sub(r"(?<=//)[^/@\s]*@", "***@", value) if isinstance(value, str) else value


def shown_value(value: object, limit: int = 60) -> str:
    """A setting's value as an error quotes it: bounded, and safe for integers too long to print."""
    try:
        text = repr(value)
    except ValueError:  # an integer beyond Python's digit limit
        return "(an integer of thousands of digits)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Settings:
    """Everything the config file and the environment say, checked; built once per command."""

    path: Path
    default_model: str = DEFAULT_MODEL
    default_model_source: str = BUILT_IN  # or "IMAGEGEN_MODEL", or the config file's path
    output_dir: str | None = None
    name_template: str | None = None
    format: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    concurrency: int | None = None
    metadata: bool = True
    ray_address: str | None = None
    ray_workers: int | None = None
    ray_gpus_per_worker: float | None = None
    server: str = DEFAULT_SERVER  # "off": local models always run in-process
    server_source: str = BUILT_IN  # or "IMAGEGEN_SERVER", or the config file's path
    provider_tables: dict[str, Any] = field(default_factory=dict)
    engines: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: dict[str, Any], path: Path) -> Settings:
        values: dict[str, Any] = {}
        for key, raw in data.items():
            if key == PROVIDERS_KEY:
                if not isinstance(raw, dict):
                    raise SettingError(
                        f"{PROVIDERS_KEY} in {path} must be a table of [providers.NAME] tables",
                        hint="see: imagegen config show",
                    )
                values["provider_tables"] = raw
                continue
            if key == ENGINES_KEY:
                values["engines"] = _engines(raw, path)
                continue
            values[key] = check_setting(key, raw, str(path))
        if "default_model" in values:
            values["default_model_source"] = str(path)
        if "server" in values:
            values["server_source"] = str(path)
        env_server = os.environ.get("IMAGEGEN_SERVER", "").strip()
        if env_server:
            values["server"] = check_setting("server", env_server, "IMAGEGEN_SERVER")
            values["server_source"] = "IMAGEGEN_SERVER"
        env_model = os.environ.get("IMAGEGEN_MODEL", "").strip()
        if env_model:
            values["default_model"], values["default_model_source"] = env_model, "IMAGEGEN_MODEL"
        return cls(path=path, **values)

    @property
    def server_url(self) -> str | None:
        """The ``imagegen serve`` local runs try first; None when the setting is ``off``."""
        return None if self.server == "off" else self.server

    def poll_interval(self, default: float) -> float:
        """Seconds between polls of a task: ``IMAGEGEN_POLL_INTERVAL`` when set (checked), else ``default``."""
        return env_number("IMAGEGEN_POLL_INTERVAL", default)

    def profiles(self) -> dict[str, ProviderProfile]:
        """Built-in provider profiles with the config file's ``[providers.NAME]`` tables applied (checked once)."""
        from imagegen_cli.providers.registry import load_profiles

        key = json.dumps([str(self.path), self.provider_tables], sort_keys=True, default=str)
        if key not in _PROFILES:
            _PROFILES[key] = load_profiles({PROVIDERS_KEY: self.provider_tables}, source=str(self.path))
        return _PROFILES[key]


_PROFILES: dict[str, dict[str, ProviderProfile]] = {}  # by file and tables: a batch checks its tables once


def _engines(raw: object, path: Path) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise SettingError(
            f'{ENGINES_KEY} in {path} must be a table of PROVIDER = "ENGINE" strings',
            hint='e.g. [engines] then local = "local"',
        )
    return dict(raw)


def load_settings() -> Settings:
    """Read and check the config file (``IMAGEGEN_CONFIG`` or the user config dir) and the environment."""
    from imagegen_cli.config import config_path, load_config

    for name in ENV_NUMBERS:  # a bad value is one clear error now, not an internal one mid-run
        env_number(name, 0.0)
    path = config_path()
    return Settings.from_mapping(load_config(), path)


# The numeric environment variables: (lowest, highest, whole numbers only, example).
ENV_NUMBERS: dict[str, tuple[float, float, bool, str]] = {
    "IMAGEGEN_POLL_INTERVAL": (0.001, 3600, False, "2"),
    "IMAGEGEN_MAX_RETRIES": (0, 20, True, "4"),
    "IMAGEGEN_RETRY_BASE_DELAY": (0, 60, False, "0.5"),
}


def env_number(name: str, default: float) -> float:
    """A numeric environment variable, checked (``default`` when unset): NaN, text or out of range is exit 4."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    low, high, whole, example = ENV_NUMBERS[name]
    try:
        value = float(raw)
    except ValueError:  # also an integer of thousands of digits
        value = math.nan
    if not math.isfinite(value) or not low <= value <= high or (whole and not value.is_integer()):
        from imagegen_cli.errors import ConfigError

        kind = "a whole number" if whole else "a number"
        raise ConfigError(
            f"{name}={raw[:40]!r} is not {kind} from {low:g} to {high:g}",
            hint=f"set it to e.g. {example}, or unset it",
        )
    return value
