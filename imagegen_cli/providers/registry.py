"""Provider registry: built-in profiles merged with the config file, model-string resolution, keys."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import SplitResult, quote, urlsplit

from imagegen_cli import __version__
from imagegen_cli.config import KeySource, env_name, find_key, is_secret_name, key_env_vars
from imagegen_cli.errors import ConfigError, UsageError, register_secret
from imagegen_cli.providers.calls import HttpCall, Payload
from imagegen_cli.providers.profiles import (
    BUILTIN_PROFILES,
    LOCAL_PROVIDER,
    ModelCaps,
    ProviderProfile,
    caps_from_config,
)

_PROFILE_KEYS = {
    "base_url", "dialect", "api_key_env", "default_model", "models", "capabilities", "headers",
    "generate_path", "task_path", "cancel_path", "records_path", "models_path", "poll_interval",
    "on_behalf_of_header",
}  # fmt: skip


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}")


def _headers(table: object, where: str) -> dict[str, str]:
    """A provider's configured headers, checked as keys are: one printable ASCII line each, never echoed.

    A CR or LF would reach the HTTP library, whose error quotes the value in a form redaction misses (and a
    header value could inject another header); a secret-looking one is registered for redaction first.
    """
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ConfigError(f"headers in {where} must be a table", hint='e.g. headers = { "X-Trace" = "on" }')
    headers: dict[str, str] = {}
    for name, raw in table.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ConfigError(
                f"invalid header name in {where}", hint="a header name is letters, digits and -, at most 64"
            )
        if not isinstance(raw, str):
            raise ConfigError(f"header {name} in {where} must be a string", hint=f'e.g. "{name}" = "value"')
        if is_secret_name(name):
            register_secret(raw)
        bad = next((c for c in raw if not (" " <= c <= "~" or c == "\t")), None)
        if bad is not None:
            what = {"\r": "a carriage return (CR)", "\n": "a line feed (LF)"}.get(bad)
            what = what or ("a non-ASCII character" if ord(bad) > 0x9F else "a control character")
            raise ConfigError(
                f"header {name} in {where} contains {what}; refusing to use it",
                hint="write its value on one line, in printable ASCII",
            )
        headers[name] = raw
    return headers


def _seconds(value: object, key: str, where: str) -> float:
    """A positive, finite number of seconds from the config (a string, NaN or a huge integer is one clear error)."""
    try:
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or number <= 0 or number > 3600:
        raise ConfigError(f"{key} in {where} must be a number of seconds", hint=f"e.g. {key} = 2 (at most 3600)")
    return number


def load_profiles(config: dict[str, Any], source: str = "the config file") -> dict[str, ProviderProfile]:
    """Built-in profiles, with ``[providers.NAME]`` tables from the config applied or added."""
    profiles = dict(BUILTIN_PROFILES)
    tables = config.get("providers", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"config key 'providers' in {source} must be a table of [providers.NAME] tables")
    for name, table in tables.items():
        where = f"[providers.{name}] in {source}"
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
        if "base_url" in table and not isinstance(table["base_url"], str):
            raise ConfigError(f"base_url in {where} must be a URL in quotes", hint='e.g. base_url = "https://host/v1"')
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
            headers={**base.headers, **_headers(table.get("headers"), where)},
            generate_path=str(table.get("generate_path", base.generate_path)),
            task_path=str(table.get("task_path", base.task_path)),
            cancel_path=table.get("cancel_path", base.cancel_path),
            records_path=table.get("records_path", base.records_path),
            models_path=table.get("models_path", base.models_path),
            poll_interval=_seconds(table.get("poll_interval", base.poll_interval), "poll_interval", where),
            on_behalf_of_header=table.get("on_behalf_of_header", base.on_behalf_of_header),
        )
    return profiles


def same_origin(url_a: str, url_b: str) -> bool:
    """Scheme, host and port equal: the only case in which a key may be sent."""
    a, b = urlsplit(url_a), urlsplit(url_b)

    def port(parts: SplitResult) -> int | None:
        return parts.port or {"http": 80, "https": 443}.get(parts.scheme)

    try:
        return (a.scheme, a.hostname, port(a)) == (b.scheme, b.hostname, port(b))
    except ValueError:  # a port out of range: no key for a URL that cannot be reached anyway
        return False


def is_loopback(host: str) -> bool:
    """True for localhost and any address in 127.0.0.0/8 or ::1."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def profile_key_vars(profile: ProviderProfile) -> list[str]:
    """The one key-lookup rule: environment variables checked for a provider's key, first wins.

    A user-defined provider's ``api_key_env`` comes first; built-in profiles use the documented names, and the
    ``imagegen`` provider (an optional key) the one ``imagegen serve`` reads: ``IMAGEGEN_SERVE_API_KEY``.
    """
    if profile.builtin and profile.key_optional:
        return list(profile.key_env)
    extra = profile.key_env[0] if profile.key_env and not profile.builtin else None
    return key_env_vars(profile.name, extra)


@dataclass(frozen=True)
class ResolvedProvider:
    """A profile bound to this invocation: base URL chosen, key looked up (not yet required)."""

    profile: ProviderProfile
    model: str
    caps: ModelCaps
    base_url: str
    key: str | None
    key_source: KeySource | None
    base_url_source: str = ""  # where base_url came from, for hints: "--base-url", an env var, the config

    @property
    def name(self) -> str:
        return self.profile.name

    def base_url_hint(self) -> str:
        """Where the base URL came from and how to change it, naming only what applies to this command."""
        env = f"IMAGEGEN_{env_name(self.name)}_BASE_URL"
        if self.base_url_source in ("", "default"):
            return f"it is {self.base_url}, {self.name}'s default (set {env} or [providers.{self.name}] base_url)"
        return f"it is {self.base_url} (from {self.base_url_source})"

    @property
    def official(self) -> bool:
        """True when the base URL is the built-in provider's own (not a gateway in front of it)."""
        builtin = BUILTIN_PROFILES.get(self.name)
        return builtin is not None and self.base_url.rstrip("/") == builtin.base_url.rstrip("/")

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")

    def task_url(self, path_template: str, remote_id: str) -> str:
        """The URL of one task: its id, whatever the gateway made it, is one percent-encoded path segment.

        An id such as ``../admin?x`` must not steer a request that carries the key to another path.
        """
        segment = quote(remote_id, safe="")
        if segment.strip(".") == "":  # "." and ".." are path steps, not names, unless encoded
            segment = segment.replace(".", "%2E")
        return self.url(path_template.replace("{id}", segment))

    def headers_for(
        self, url: str, extra: dict[str, str] | None = None, *, content_type: str | None, key: bool = True
    ) -> dict[str, str]:
        """The one header builder: what a request to ``url`` carries (``key=False``: all but the key).

        Profile headers, then the call's own, then the key last (:meth:`auth_header`). ``content_type`` is the
        payload's (None: no body, or a multipart body whose Content-Type the transport sets with its boundary).
        """
        headers = {"User-Agent": f"imagegen/{__version__}", "Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        headers.update({**self.profile.headers, **(extra or {})})
        return {**headers, **self.auth_header(url)} if key else headers

    def call(
        self, method: str, url: str, payload: Payload | None = None, extra: dict[str, str] | None = None
    ) -> HttpCall:
        """A call to this provider, built once: its headers (all but the key) and payload as they are sent."""
        content_type = payload.content_type if payload is not None else None
        return HttpCall(method, url, self.headers_for(url, extra, content_type=content_type, key=False), payload)

    def shown_headers(self, call: HttpCall) -> dict[str, str]:
        """A call's headers as ``--dry-run`` shows them: secret-looking values and the key redacted."""
        headers = {name: "***" if is_secret_name(name) else value for name, value in call.headers.items()}
        if self.auth_header(call.url):
            headers["Authorization"] = "Bearer ***"
        elif not self.key and not self.profile.key_optional:
            headers["Authorization"] = f"Bearer <missing: set {self.key_vars()[0]}>"
        return headers

    def auth_header(self, url: str) -> dict[str, str]:
        """The key as a header, for ``url`` on the provider's own origin only: never a CDN or any other host."""
        if self.key and same_origin(url, self.base_url):
            return {"Authorization": f"Bearer {self.key}"}
        return {}

    def key_vars(self) -> list[str]:
        return profile_key_vars(self.profile)

    def missing_key_error(self) -> ConfigError:
        return ConfigError(
            f"no API key for {self.name}",
            hint=f"set {self.key_vars()[0]} or run: imagegen keys set {self.name}",
        )

    def require_key(self) -> str:
        """The key; a provider whose key is optional (an imagegen serve) may have none ("")."""
        if not self.key and not self.profile.key_optional:
            raise self.missing_key_error()
        return self.key or ""

    def check_transport(self) -> None:
        """Refuse to send a key over plain http unless the host is a loopback address."""
        try:
            parts = urlsplit(self.base_url)  # raises ValueError for a malformed IPv6 host ("http://[::1")
            parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            valid = False
        if not valid:
            shown = self.base_url if len(self.base_url) <= 80 else self.base_url[:77] + "..."
            raise ConfigError(f"invalid base URL for {self.name}: {shown!r}", hint="use https://host/path")
        parts = urlsplit(self.base_url)
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
    env = f"IMAGEGEN_{env_name(name)}_BASE_URL"
    builtin = BUILTIN_PROFILES.get(name)
    candidates = (
        (base_url, "--base-url"),
        (os.environ.get(env), env),
        (os.environ.get("OPENAI_BASE_URL") if name == "openai" else None, "OPENAI_BASE_URL"),
        (
            profile.base_url,
            "default" if builtin and builtin.base_url == profile.base_url else f"[providers.{name}] base_url",
        ),
    )
    url, url_source = next(((value, where) for value, where in candidates if value), (profile.base_url, "default"))
    found = find_key(name, profile_key_vars(profile))
    key, source = found if found else (None, None)
    return ResolvedProvider(profile, model_id, profile.caps_for(model_id), url, key, source, url_source)
