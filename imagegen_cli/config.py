"""Settings, environment variables, paths and API keys (config file, keys file, lookup order)."""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagegen_cli.errors import ConfigError, UsageError, register_secret
from imagegen_cli.jsontypes import loads

APP_NAME = "imagegen"


def config_dir() -> Path:
    """User config dir (``$XDG_CONFIG_HOME/imagegen`` on Linux)."""
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_NAME, appauthor=False))


def data_dir() -> Path:
    """User data dir (``$XDG_DATA_HOME/imagegen`` on Linux): the task journal lives here."""
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME, appauthor=False))


def config_path() -> Path:
    """The config file: ``IMAGEGEN_CONFIG`` if set, else ``config.toml`` in the config dir."""
    override = os.environ.get("IMAGEGEN_CONFIG")
    return Path(override).expanduser() if override else config_dir() / "config.toml"


def keys_path() -> Path:
    """The keys file, created with mode 0600."""
    return config_dir() / "keys.json"


def env_name(provider: str) -> str:
    """Provider name as it appears in environment variable names (``my-gw`` → ``MY_GW``)."""
    return re.sub(r"[^A-Za-z0-9]", "_", provider).upper()


# ---------------------------------------------------------------------------------------------
# The config file


def load_config() -> dict[str, Any]:
    """Read the config file; a missing file is an empty config, a broken one is exit 4."""
    from imagegen_cli.localfiles import MAX_CONFIG_BYTES, read_bounded

    path = config_path()
    fix = "fix it, or point IMAGEGEN_CONFIG elsewhere (imagegen config path shows which file is read)"

    def refuse(reason: str) -> ConfigError:
        return ConfigError(f"config file {path} {reason}", hint=fix)

    try:
        data = read_bounded(path, MAX_CONFIG_BYTES, refuse)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}", hint=fix) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refuse(f"is not UTF-8 text (byte {exc.start})") from None
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise refuse(f"is not valid TOML: {exc}") from None
    except RecursionError:
        raise refuse("is not valid TOML: values nested too deeply") from None
    except ValueError as exc:  # an integer of thousands of digits (Python's int-str limit)
        raise refuse(f"is not valid TOML: {str(exc).split(':')[0]}") from None
    problem = _unusable_value(config)
    if problem is not None:
        raise refuse(problem)
    return config


_MAX_DEPTH = 32
_INT64 = 1 << 63


def _unusable_value(value: object, key: str = "", depth: int = 0) -> str | None:
    """What in a parsed config no setting could use and later code would choke on: deep nesting, huge integers."""
    if depth > _MAX_DEPTH:
        return f"nests {key or 'a value'} more than {_MAX_DEPTH} levels deep"
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and not -_INT64 <= value < _INT64:
        return f"has an integer beyond 64 bits at {key or 'the top'}"
    if isinstance(value, dict):
        items: list[tuple[str, object]] = [(f"{key}.{k}" if key else str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(f"{key}[{i}]", v) for i, v in enumerate(value)]
    else:
        return None
    for name, item in items:
        problem = _unusable_value(item, name, depth + 1)
        if problem is not None:
            return problem
    return None


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise UsageError(f"cannot store {value!r} in the config file")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def dump_toml(data: dict[str, Any]) -> str:
    """Serialise a config dict (scalars, lists and nested tables) as TOML."""
    lines: list[str] = []

    def table(prefix: list[str], body: dict[str, Any]) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in body.items() if isinstance(v, dict)}
        if prefix and (scalars or not tables):
            lines.append("[" + ".".join(_toml_key(p) for p in prefix) + "]")
        for key, value in scalars.items():
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        if scalars:
            lines.append("")
        for key, value in tables.items():
            table([*prefix, key], value)

    table([], data)
    return "\n".join(lines).rstrip() + "\n"


def atomic_write(path: Path, text: str, mode: int) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: readers see the old or the new file."""
    ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def get_dotted(data: dict[str, Any], key: str) -> object:
    """``providers.openai.base_url`` → the value, or KeyError."""
    node: object = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def set_dotted(data: dict[str, Any], key: str, value: object) -> None:
    """Set a dotted key, creating tables on the way."""
    parts = key.split(".")
    if not all(parts):
        raise UsageError(f"invalid config key {key!r}", hint="use dotted names such as providers.openai.base_url")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UsageError(f"config key {part!r} is a value, not a table")
        node = child
    node[parts[-1]] = value


def unset_dotted(data: dict[str, Any], key: str) -> bool:
    """Remove a dotted key; True when something was removed."""
    parts = key.split(".")
    node: object = data
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and parts[-1] in node:
        del node[parts[-1]]
        return True
    return False


_SECRET_NAME = re.compile(r"(?i)(auth|key|token|secret|password|cookie|signature)")


def is_secret_name(name: str) -> bool:
    """The one rule for names whose values are secret: config settings and request headers alike.

    ``api_key_env`` and its kind name a variable, not a key. ``config show``, ``--dry-run`` and
    ``config set`` (which refuses to write a key) all go by this.
    """
    return bool(_SECRET_NAME.search(name)) and not name.endswith("_env")


def redact_config(data: dict[str, Any]) -> dict[str, object]:
    """A copy of the config with every key-like value replaced (``config show`` prints this)."""
    # A table is looked into, never blanked: a model id such as "keyframe-1" names capabilities, not a key.
    return {
        k: ("***" if is_secret_name(k) and v and not isinstance(v, dict) else _redacted(v)) for k, v in data.items()
    }


def _redacted(value: object) -> object:
    """A value of the config, with the key-like values of its tables (nested in lists too) replaced."""
    if isinstance(value, dict):
        return redact_config(value)
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# API keys


def _read_keys_file() -> dict[str, str]:
    path = keys_path()
    try:
        info = path.stat()
    except FileNotFoundError:
        return {}
    if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"keys file {path} is readable by other users (mode {stat.S_IMODE(info.st_mode):o}); refusing to use it",
            hint=f"chmod 600 {path}",
        )
    from imagegen_cli.localfiles import MAX_KEYS_BYTES, read_bounded

    def refuse(reason: str) -> ConfigError:
        return ConfigError(f"keys file {path} {reason}", hint="re-create it with: imagegen keys set NAME")

    try:
        data = loads(read_bounded(path, MAX_KEYS_BYTES, refuse).decode("utf-8"))
    except (OSError, ValueError):
        raise refuse("is unreadable") from None
    if not isinstance(data, dict):
        raise ConfigError(f"keys file {path} is malformed", hint="re-create it with: imagegen keys set NAME")
    keys = {str(k): str(v) for k, v in data.items()}
    for value in keys.values():
        register_secret(value)
    return keys


def _temp_suffix() -> str:
    import secrets  # here, not at the top: secrets pulls in hashlib and hmac, and every command loads this module

    return secrets.token_hex(8)


def ensure_private_dir(path: Path, *, tighten: bool = False) -> Path:
    """Create ``path`` with mode 0700 whatever the umask; with ``tighten``, also close an existing one to others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
        created = True
    except FileExistsError:
        created = False
    if os.name != "posix":
        return path
    # mkdir's mode is filtered by the umask: set it explicitly; an existing dir is tightened only when ours.
    info = path.stat()
    if created or (tighten and stat.S_IMODE(info.st_mode) & 0o077 and info.st_uid == os.getuid()):
        os.chmod(path, 0o700)
    return path


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a 0600 file that no planted link can redirect.

    The temporary file gets a random name and is opened with ``O_CREAT|O_EXCL|O_NOFOLLOW``: a symlink
    (or any file) planted under that name makes the open fail instead of sending the keys elsewhere.
    """
    ensure_private_dir(path.parent, tighten=True)  # the directory of the keys file
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(16):
        tmp = path.with_name(f".{path.name}.{_temp_suffix()}.tmp")
        try:
            fd = os.open(tmp, flags, 0o600)
        except FileExistsError:
            continue
        break
    else:
        raise ConfigError(f"cannot create a temporary file next to {path}", hint=f"check the directory {path.parent}")
    try:
        if os.name == "posix":
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def store_key(provider: str, key: str) -> Path:
    """Save a key in the 0600 keys file (in a 0700 directory)."""
    check_key(provider, key, "the new key")
    keys = _read_keys_file()
    keys[provider] = key
    path = keys_path()
    _write_private(path, json.dumps(keys, indent=2) + "\n")
    return path


def remove_key(provider: str) -> bool:
    """Remove a stored key; True when one was there."""
    keys = _read_keys_file()
    if provider not in keys:
        return False
    del keys[provider]
    _write_private(keys_path(), json.dumps(keys, indent=2) + "\n")
    return True


def check_key(provider: str, key: str, where: str) -> str:
    """Refuse a key that is not one printable ASCII word, without ever repeating it.

    A CR or LF in a key would otherwise reach the HTTP library, whose "Illegal header value" error
    quotes it in a form exact-match redaction misses.
    """
    register_secret(key)
    for char in key:
        if "!" <= char <= "~":
            continue
        what = {"\r": "a carriage return (CR)", "\n": "a line feed (LF)", " ": "a space", "\t": "a tab"}.get(char)
        if what is None:
            what = "a control character" if ord(char) < 0x20 or ord(char) == 0x7F else "a non-ASCII character"
        raise ConfigError(
            f"the {provider} API key from {where} contains {what}; refusing to use it",
            hint="set it again: the key alone, on one line",
        )
    return key


@dataclass(frozen=True)
class KeySource:
    """Where a provider's key comes from: ``env`` (with the variable) or ``file``."""

    kind: str
    name: str


def key_env_vars(provider: str, extra: str | None = None) -> list[str]:
    """Environment variables checked for a provider's key, first wins."""
    names = [f"IMAGEGEN_{env_name(provider)}_API_KEY"]
    if extra:
        names.insert(0, extra)
    names.append(f"{env_name(provider)}_API_KEY")
    return list(dict.fromkeys(names))


def find_key(provider: str, env_vars: list[str]) -> tuple[str, KeySource] | None:
    """The key for a provider: ``env_vars`` in order (``registry.profile_key_vars``), then the keys file."""
    for var in env_vars:
        value = os.environ.get(var, "").strip()
        if value:
            return check_key(provider, value, var), KeySource("env", var)
    stored = _read_keys_file().get(provider)
    if stored:
        return check_key(provider, stored, str(keys_path())), KeySource("file", str(keys_path()))
    return None
