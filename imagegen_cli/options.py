"""Typed options, built once from the command line (or the Python API), and prompt lines.

``GenerateOptions`` holds everything a run needs besides the prompt: the request fields, where and
how to write, the local engine's flags and the run's bounds. A batch line is
``options.with_overrides(line.overrides)``; a single prompt is a batch of one line, so both take
exactly the same path through planning, the dry run, the journal and the JSON document.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from imagegen_cli.errors import ImagegenError, LineErrors, UsageError
from imagegen_cli.jsontypes import loads
from imagegen_cli.local_options import LocalOptions
from imagegen_cli.request import Ratio, RequestOptions, Size, parse_param, parse_tier

__all__ = [
    "ClusterOptions",
    "GenerateOptions",
    "OutputOptions",
    "PromptLine",
    "RequestOptions",
    "RunOptions",
    "read_prompt_file",
]
ENGINES = ("local", "ray")  # --engine: where local models run (remote gateways have their own engine)

# Keys a JSON Lines prompt file may set per line (``-`` in a key is read as ``_``).
# A line's local options: the flags of the same names, checked by LocalOptions as the flags are.
LOCAL_LINE_KEYS = ("scheduler", "lora", "quantize", "variant", "dtype", "device", "offload", "compile", "gguf")
LINE_KEYS = (
    "prompt", "model", "provider", "n", "size", "ratio", "resolution", "quality", "style", "seed",
    "negative_prompt", "steps", "guidance", "params", "param", "response_format", "user", "on_behalf_of",
    "name", "format", "out", "image", "mask", "strength", "input_fidelity",
    *LOCAL_LINE_KEYS,
)  # fmt: skip


@dataclass(frozen=True)
class OutputOptions:
    """Where and how images are written: ``-o``, ``--name``, ``--format``, ``--overwrite``, ``--no-metadata``."""

    out: str | None = None
    name: str | None = None
    format: str | None = None
    overwrite: bool = False
    metadata: bool = True


@dataclass(frozen=True)
class ClusterOptions:
    """``--engine ray``: where the cluster is and how it is used (None: the config's value, else the default)."""

    address: str | None = None  # None or "local": a Ray instance started on this machine; "auto", ray://HOST:PORT
    workers: int | None = None  # None: one per GPU group of the cluster (one on a cluster without GPUs)
    gpus_per_worker: float | None = None  # None: 1 on a cluster with GPUs, else 0
    worker_writes: bool = False  # workers place the files on a filesystem every node shares; the driver journals

    def __post_init__(self) -> None:
        if self.workers is not None and not 1 <= self.workers <= 4096:
            raise UsageError(f"--workers {self.workers} is out of range", hint="use 1 to 4096")
        gpus = self.gpus_per_worker
        if gpus is not None and (not math.isfinite(gpus) or not 0 <= gpus <= 64):
            raise UsageError(f"--gpus-per-worker {gpus:g} is out of range", hint="use 0 to 64 (0.5 shares a GPU)")
        if self.address is not None and not ray_address_ok(self.address):
            raise UsageError(f"invalid --ray-address {self.address[:60]!r}", hint=RAY_ADDRESS_HINT)

    def flags(self) -> list[str]:
        """The flags given (each only means something with ``--engine ray``)."""
        given = {"--ray-address": self.address, "--workers": self.workers, "--worker-writes": self.worker_writes}
        given["--gpus-per-worker"] = self.gpus_per_worker is not None
        return [flag for flag, value in given.items() if value]


RAY_ADDRESS_HINT = "auto (RAY_ADDRESS or the cluster this node joined), ray://HOST:10001, HOST:6379, or local"


def ray_address_ok(address: str) -> bool:
    """A Ray address imagegen passes on: ``auto``, ``local``, ``ray://HOST:PORT`` or ``HOST:PORT``."""
    return re.fullmatch(r"auto|local|(ray://)?[\w.\-\[\]:]+:\d{1,5}", address) is not None


@dataclass(frozen=True)
class RunOptions:
    """Bounds and modes of a run."""

    timeout: float | None = None  # None: the config's timeout (300 s by default)
    concurrency: int | None = None
    no_wait: bool = False
    no_server: bool = False  # local models: never on an `imagegen serve`, always in-process
    engine: str | None = None  # --engine: local models in this process ("local") or on a Ray cluster ("ray")
    cluster: ClusterOptions = field(default_factory=ClusterOptions)
    base_url: str | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        if self.timeout is not None and (not math.isfinite(self.timeout) or self.timeout <= 0):
            raise UsageError("--timeout must be a positive number of seconds")
        if self.concurrency is not None and not 1 <= self.concurrency <= 64:
            raise UsageError(f"--concurrency {self.concurrency} is out of range", hint="use 1 to 64")
        if self.engine is not None and self.engine not in ENGINES:
            raise UsageError(f"unknown --engine {self.engine!r}", hint="use " + " or ".join(ENGINES))


@dataclass(frozen=True)
class GenerateOptions:
    """Every flag of ``generate`` but the prompt, typed and checked."""

    model: str | None = None
    provider: str | None = None
    request: RequestOptions = field(default_factory=RequestOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    local: LocalOptions = field(default_factory=LocalOptions)
    run: RunOptions = field(default_factory=RunOptions)
    local_flags_given: tuple[str, ...] = ()  # local-only flags on the command line: a remote line notes them

    def with_overrides(self, overrides: Mapping[str, Any]) -> GenerateOptions:
        """These options with one prompt-file line's values applied (each checked like its flag)."""
        request = _request_overrides(self.request, overrides)
        output = self.output
        if "name" in overrides:
            output = replace(output, name=_string("name", overrides["name"]))
        if "format" in overrides:
            output = replace(output, format=_string("format", overrides["format"]))
        if "out" in overrides:
            output = replace(output, out=_string("out", overrides["out"]))
        local, local_given = _local_overrides(self.local, overrides)
        model, provider = self.model, self.provider
        if "model" in overrides:
            # A line's model replaces the command line's model and provider (unless the line names one too).
            model, provider = _string("model", overrides["model"]), None
        if "provider" in overrides:
            provider = _string("provider", overrides["provider"])
        return replace(
            self,
            model=model,
            provider=provider,
            request=request,
            output=output,
            local=local,
            local_flags_given=tuple(dict.fromkeys((*self.local_flags_given, *local_given))),
        )


def _local_overrides(base: LocalOptions, values: Mapping[str, Any]) -> tuple[LocalOptions, tuple[str, ...]]:
    """A line's local options over the flags' (LocalOptions checks them), and the keys given, for remote notes."""
    changes: dict[str, Any] = {}
    for key in LOCAL_LINE_KEYS:
        if key not in values:
            continue
        value = values[key]
        if key == "compile":
            if not isinstance(value, bool):
                raise UsageError('"compile" must be true or false', hint='e.g. {"prompt": "...", "compile": true}')
            changes["compile"] = value
        elif key == "lora":
            items = value if isinstance(value, list) else [value]
            if not all(isinstance(item, str) for item in items):
                raise UsageError('"lora" must be a string or a list of strings', hint='e.g. "lora": ["org/name:0.8"]')
            changes["loras"] = tuple(items)
        else:
            changes[key] = _string(key, value)
    if not changes:
        return base, ()
    return replace(base, **changes), tuple(f'"{key}"' for key in LOCAL_LINE_KEYS if key in values)


def _string(key: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise UsageError(f'"{key}" must be a string')
    return value


def _request_overrides(base: RequestOptions, values: Mapping[str, Any]) -> RequestOptions:
    changes: dict[str, Any] = {}
    params = dict(base.params)
    for key, value in values.items():
        if key in ("prompt", "model", "provider", "name", "format", "out", *LOCAL_LINE_KEYS):
            continue
        if key == "params":
            if not isinstance(value, dict):
                raise UsageError('"params" must be an object')
            params.update(value)
        elif key == "param":
            for item in value if isinstance(value, list) else [value]:
                name, parsed = parse_param(str(item))
                params[name] = parsed
        elif key in ("size", "ratio", "resolution"):
            if value is None:
                changes[key] = None
            elif key == "size":
                # A line's size replaces the command line's ratio and tier.
                changes.update(size=Size.parse(str(value)), ratio=None, resolution=None)
            elif key == "ratio":
                changes["ratio"] = Ratio.parse(str(value))
                if "size" not in values:
                    changes["size"] = None
            else:
                changes["resolution"] = parse_tier(str(value))
        elif key in ("n", "seed", "steps"):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise UsageError(f'"{key}" must be an integer')
            changes[key] = value
        elif key in ("guidance", "strength"):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise UsageError(f'"{key}" must be a number')
            changes[key] = None if value is None else float(value)
        elif key in ("image", "mask"):
            changes.update(_line_inputs(key, value))
        else:
            changes[key] = _string(key, value)
    changes["params"] = tuple(params.items())
    return replace(base, **changes)


def _line_inputs(key: str, value: object) -> dict[str, Any]:
    """A line's ``"image"`` (a path or URL, or a list of them) or ``"mask"``, read and checked like the flags."""
    from imagegen_cli.inputs import load_input

    items: list[str] = [item for item in (value if isinstance(value, list) else [value]) if isinstance(item, str)]
    if value is None:
        items = []
    elif len(items) != (len(value) if isinstance(value, list) else 1) or "-" in items:
        raise UsageError(
            f'"{key}" must be a path or URL' + (" (or a list of them)" if key == "image" else ""),
            hint='e.g. "image": ["photo.png"] (standard input is the flags\' --image -, not a line\'s)',
        )
    if key == "mask":
        if len(items) > 1:
            raise UsageError('"mask" takes one file')
        return {"mask": load_input(items[0], "mask") if items else None}
    return {"images": tuple(load_input(item) for item in items)}


@dataclass(frozen=True)
class PromptLine:
    """One prompt: its line number in the prompt file (``None`` for a single prompt) and its overrides."""

    number: int | None
    prompt: str
    overrides: Mapping[str, Any] = field(default_factory=dict)


def read_prompt(prompt: str) -> str:
    """The PROMPT argument; ``-`` reads it from stdin (which must not be a terminal)."""
    if prompt != "-":
        return prompt
    if sys.stdin.isatty():
        raise UsageError(
            "PROMPT is - but stdin is a terminal", hint='pipe the prompt in: echo "a fox" | imagegen generate -'
        )
    return _decode(sys.stdin.buffer.read(), "stdin").strip("\r\n")


def _decode(data: bytes, where: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{where} is not valid UTF-8 (byte {exc.start})", hint="save the prompt as UTF-8 text"
        ) from None
    return text.removeprefix("\ufeff")  # a BOM from a Windows editor is not part of the first prompt


def _json_line(number: int, text: str) -> PromptLine:
    try:
        decoded = loads(text)
    except ValueError as exc:
        raise UsageError(f"line {number}: invalid JSON ({str(exc)[:120]})", hint=_LINE_HINT) from None
    if not isinstance(decoded, dict):
        raise UsageError(f"line {number}: a JSON line must be an object", hint=_LINE_HINT)
    values = {str(k).replace("-", "_"): v for k, v in decoded.items()}
    unknown = sorted(set(values) - set(LINE_KEYS))
    if unknown:
        raise UsageError(f"line {number}: unknown key {unknown[0][:60]!r}", hint="keys: " + ", ".join(LINE_KEYS))
    prompt = values.pop("prompt", None)
    if not isinstance(prompt, str) or not prompt.strip():
        raise UsageError(f'line {number}: a JSON line needs a "prompt" string', hint=_LINE_HINT)
    return PromptLine(number, prompt, values)


_LINE_HINT = 'a JSON line is one object, e.g. {"prompt": "a red fox", "seed": 7}'


def read_prompt_file(path: str) -> list[PromptLine]:
    """Plain text (a prompt per line) or JSON Lines; blank lines and ``#`` comments are skipped."""
    from imagegen_cli.localfiles import MAX_PROMPT_FILE_BYTES, read_bounded, read_stream_bounded

    def refuse(reason: str) -> UsageError:
        return UsageError(f"prompt file {path} {reason}", hint="give a text or JSON Lines file of prompts")

    try:
        if path == "-":
            data = read_stream_bounded(sys.stdin.buffer, MAX_PROMPT_FILE_BYTES, refuse)
        else:
            data = read_bounded(Path(path).expanduser(), MAX_PROMPT_FILE_BYTES, refuse)
    except FileNotFoundError:
        raise UsageError(
            f"prompt file {path} does not exist", hint="check the path, or give - to read prompts from stdin"
        ) from None
    except OSError as exc:
        raise UsageError(
            f"cannot read prompt file {path}: {exc.strerror or exc}", hint="check the path and its permissions"
        ) from None
    text = _decode(data, f"prompt file {path}")
    lines: list[PromptLine] = []
    errors: list[ImagegenError] = []  # every bad line is reported at once, then nothing is sent
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not stripped.startswith("{"):
            lines.append(PromptLine(number, stripped))
            continue
        try:
            lines.append(_json_line(number, stripped))
        except UsageError as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise LineErrors(errors)
    if not lines:
        raise UsageError(f"prompt file {path} has no prompts", hint="one prompt per line; # starts a comment")
    return lines


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$", re.IGNORECASE)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` (a bare number is days) → seconds."""
    match = _DURATION.match(text)
    if not match:
        raise UsageError(f"invalid duration {text!r}", hint="write it as 30d, 12h, 90m, 45s or 2w")
    return float(match[1]) * _UNIT[(match[2] or "d").lower()]
