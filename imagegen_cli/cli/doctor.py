"""``imagegen doctor``: one screen of what matters for generating, with a fix for each problem.

It never prints a key (only whether one is set, and where from), never imports torch when torch is not
installed (a GPU is then looked for with ``nvidia-smi``), and touches the network only with ``--online``.
Exit 0 when everything the default model needs is in place, 1 otherwise.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from imagegen_cli import __version__
from imagegen_cli.cli.options import JsonOpt
from imagegen_cli.errors import ImagegenError, UsageError, redact

if TYPE_CHECKING:
    from imagegen_cli.settings import Settings

OK, INFO, WARN, FAIL = "ok", "info", "warn", "fail"
LOCAL_PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "safetensors", "peft")
OPTIONAL_PACKAGES = ("bitsandbytes", "optimum-quanto", "gguf")


@dataclass
class Check:
    """One line of the report; ``needed`` marks what the default model cannot do without."""

    name: str
    status: str
    value: str
    fix: str | None = None
    needed: bool = False


def _version(package: str) -> str | None:
    # Imported here: importlib.metadata pulls in email, zipfile and csv, and app.py imports this module for
    # every command, --help included.
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _gpu_without_torch() -> str | None:
    """``nvidia-smi``'s view of the GPUs, for when torch is missing."""
    from imagegen_cli.local.hardware import nvidia_smi

    gpus = []
    for row in nvidia_smi("name,memory.free,memory.total"):
        try:
            gpus.append(f"{row[0]} ({float(row[1]) / 1024:.1f} of {float(row[2]) / 1024:.1f} GB free)")
        except (IndexError, ValueError):
            continue
    return "; ".join(gpus) or None


def _torch_checks(local_needed: bool) -> list[Check]:
    """torch, its accelerator and the GPU."""
    from imagegen_cli.local.hub import LOCAL_EXTRA_HINT
    from imagegen_cli.local.weights import installed

    if not installed("torch"):
        gpu = _gpu_without_torch()
        return [
            Check("torch", FAIL if local_needed else INFO, "not installed", LOCAL_EXTRA_HINT, needed=local_needed),
            Check("gpu", INFO, gpu or "no NVIDIA GPU found (nvidia-smi)"),
        ]
    import torch

    checks = [Check("torch", OK, torch.__version__)]
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(0)
        name = torch.cuda.get_device_name(0)
        checks.append(
            Check("gpu", OK, f"CUDA {torch.version.cuda}: {name}, {free / 2**30:.1f} of {total / 2**30:.1f} GB free")
        )
    elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        checks.append(Check("gpu", OK, "Apple GPU (MPS)"))
    else:
        gpu = _gpu_without_torch()
        fix = "install a CUDA build of torch: https://pytorch.org/get-started/locally/" if gpu else None
        value = f"none usable by torch (nvidia-smi sees {gpu})" if gpu else "none: local models run on the CPU (slowly)"
        checks.append(Check("gpu", WARN if gpu else INFO, value, fix))
    return checks


def _cache_checks() -> list[Check]:
    from imagegen_cli.local.catalog import hf_cache_dir, human_size
    from imagegen_cli.local.compile_cache import compile_root
    from imagegen_cli.local.compile_cache import total_size as compile_size

    cache = hf_cache_dir()
    size = 0
    if cache.is_dir():
        for repo in cache.glob("models--*"):
            for blob in (repo / "blobs").glob("*"):
                if blob.is_file():
                    size += blob.stat().st_size
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    return [
        Check("hf cache", INFO, f"{cache} ({human_size(size)})"),
        Check("compile cache", INFO, f"{compile_root()} ({human_size(compile_size())}; --compile reuses it)"),
        Check("offline", INFO, "yes (HF_HUB_OFFLINE is set): nothing is downloaded" if offline else "no"),
    ]


def _local_model_check(name: str) -> Check:
    """Whether the default local model can run now (weights downloaded, built, or a folder in place)."""
    from imagegen_cli.local.catalog import human_size
    from imagegen_cli.local.planning import resolve_source
    from imagegen_cli.model_catalog import local_state

    label = f"local:{name}"
    if name == "auto":
        from imagegen_cli.local.hardware import choose_auto, detect_accelerator

        name, why = choose_auto(detect_accelerator())
        label = f"local:auto → local:{name} ({why})"
    try:
        source = resolve_source(name)  # as generate resolves it
    except ImagegenError as exc:
        return Check("default model", FAIL, f"{label}: {exc.message}", exc.hint or "imagegen models", needed=True)
    if source.model is None:
        if source.is_dir:
            return Check("default model", OK, f"{label}: a pipeline folder")
        return Check("default model", INFO, f"{label}: a Hub repo, downloaded on first use")
    on_disk, size, _, state = local_state(source.model)
    if on_disk:
        return Check("default model", OK, f"{label}: {state} ({human_size(size)})")
    if source.model.repo is None:  # local:tiny, built offline on its first run
        return Check("default model", OK, f"{label}: {state}")
    # Not ready either way: offline the first run fails (after its retries when HF_HUB_OFFLINE is not set),
    # online it starts with gigabytes to download.
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    why = ", and offline" if offline else f" ({source.model.memory_gb:g} GB of weights to download first)"
    return Check("default model", FAIL, f"{label}: {state}{why}", f"imagegen models pull {name}", needed=True)


def _online(urls: list[str], timeout: float) -> dict[str, tuple[bool, str]]:
    """Probe every base URL at once, all within one overall ``timeout``: (answers, what was seen) per URL.

    Each probe runs in a daemon thread: a gateway that trickles its answer a byte at a time cannot hold the
    command past its bound, nor the interpreter's exit.
    """
    import threading

    import httpx

    from imagegen_cli.providers.transport import transport_reason

    results: dict[str, tuple[bool, str]] = {}
    deadline = time.monotonic() + timeout

    def probe(url: str) -> None:
        try:
            response = httpx.get(url, timeout=max(timeout, 0.1), follow_redirects=False)
        except httpx.TimeoutException:
            results[url] = (False, f"{url} does not answer (timed out)")
        except httpx.HTTPError as exc:
            results[url] = (False, f"{url} cannot be reached: {transport_reason(exc)}")
        else:
            results[url] = (True, f"{url} answers (HTTP {response.status_code})")

    threads = [threading.Thread(target=probe, args=(url,), daemon=True) for url in dict.fromkeys(urls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
    for url in urls:
        results.setdefault(url, (False, f"{url} does not answer (timed out: --timeout {timeout:g} s)"))
    return dict(results)


def run_checks(online: float | None) -> tuple[list[Check], str]:
    """Every check, and the default model they were judged for."""
    from imagegen_cli.config import config_path
    from imagegen_cli.local.hub import LOCAL_EXTRA_HINT
    from imagegen_cli.settings import Settings, load_settings

    checks = [
        Check("python", OK if sys.version_info >= (3, 11) else FAIL, f"{platform.python_version()} ({sys.executable})"),
        Check("imagegen", OK, __version__),
    ]
    path = config_path()
    settings = Settings(path=path)
    try:
        settings = load_settings()
        profiles = settings.profiles()
        checks.append(Check("config", OK, f"{path} ({'valid' if path.exists() else 'none yet; defaults apply'})"))
    except ImagegenError as exc:
        from imagegen_cli.providers.profiles import BUILTIN_PROFILES

        profiles = dict(BUILTIN_PROFILES)
        checks.append(Check("config", FAIL, f"{path}: {exc.message}", exc.hint or f"fix or remove {path}", True))
    default = _default_model(settings, profiles)
    provider, _, model = default.partition(":")
    local = provider == "local"
    checks += _torch_checks(local)
    for package in LOCAL_PACKAGES[1:]:
        version = _version(package)
        if version:
            checks.append(Check(package, OK, version))
        else:
            checks.append(Check(package, FAIL if local else INFO, "not installed", LOCAL_EXTRA_HINT, needed=local))
    extras = [f"{p} {_version(p)}" for p in OPTIONAL_PACKAGES if _version(p)]
    checks.append(Check("quantization", INFO, ", ".join(extras) or "none (--quantize and --gguf need one)"))
    checks += _cache_checks()
    checks.append(_server_check(settings, online))
    checks += _provider_checks(profiles, provider, online)
    if local:
        checks.append(_default_local_check(settings, default, model or "auto"))
    return checks, default


def _server_check(settings: Settings, online: float | None) -> Check:
    """Where local runs go: an ``imagegen serve`` that answers at the ``server`` setting, or this process."""
    from imagegen_cli.local.served import find_server, loopback

    url = settings.server_url
    if url is None:
        return Check("server", INFO, "off: local models run in this process")
    if online is None and not loopback(url):
        return Check("server", INFO, f"{url} (not asked without --online)")
    found = find_server(url)
    if found is None:
        return Check("server", INFO, f"none at {url}: local models run in this process")
    problem = found.key_problem()
    if problem:
        return Check("server", INFO, f"{url} answers, but {problem}: local runs stay in this process")
    served = ", ".join(found.models) or "none loaded"
    return Check("server", OK, f"{url} answers (loaded with -m: {served}); local runs it can make go there")


def _default_local_check(settings: Settings, default: str, model: str) -> Check:
    """The default local model; on an install without the local extra, with no model configured, the fix is a
    remote model first (imagegen's built-in default, local:auto, cannot run there)."""
    from imagegen_cli.local.hub import LOCAL_EXTRA_HINT, REMOTE_DEFAULT_HINT, missing_local_module
    from imagegen_cli.settings import BUILT_IN

    missing = missing_local_module()
    if missing and settings.default_model_source == BUILT_IN:
        value = f"{default} (built in: no default_model configured) needs the local extra ({missing} is not installed)"
        fix = f"{REMOTE_DEFAULT_HINT}; or install the local extra: {LOCAL_EXTRA_HINT}"
        return Check("default model", FAIL, value, fix, needed=True)
    return _local_model_check(model)


def _default_model(settings: Settings, profiles: dict[str, Any]) -> str:
    from imagegen_cli.backends import LOCAL, resolve_model_ref

    try:
        ref = resolve_model_ref(None, None, settings, profiles)
    except ImagegenError:
        return settings.default_model
    if ref.provider == LOCAL:
        return f"local:{ref.model or 'auto'}"
    default = profiles[ref.provider].default_model
    return f"{ref.provider}:{ref.model or default}"


def _provider_checks(profiles: dict[str, Any], default_provider: str, online: float | None) -> list[Check]:
    from imagegen_cli.providers.registry import resolve_provider

    checks = []
    probes: list[tuple[str, str, bool]] = []  # (provider, base URL, needed): probed together at the end
    for name in sorted(profiles):
        needed = name == default_provider
        try:
            resolved = resolve_provider(profiles, name, profiles[name].default_model or "x", None)
        except ImagegenError as exc:
            checks.append(Check(f"key {name}", FAIL if needed else WARN, exc.message, exc.hint, needed))
            continue
        if resolved.key_source is not None:
            where = resolved.key_source.name if resolved.key_source.kind == "env" else "keys file"
            checks.append(Check(f"key {name}", OK, f"set ({where})"))
        elif profiles[name].key_optional:
            checks.append(Check(f"key {name}", INFO, "not set (optional: only a server off loopback wants one)"))
        else:
            fix = f"imagegen keys set {name}"
            checks.append(Check(f"key {name}", FAIL if needed else INFO, "not set", fix, needed))
        probes.append((name, resolved.base_url, needed))
    if online is not None and probes:
        seen = _online([url for _, url, _ in probes], online)
        for name, url, needed in probes:
            answers, text = seen[url]
            status = OK if answers else (FAIL if needed else INFO if profiles[name].key_optional else WARN)
            hint = None if answers else "check the network, or the base URL (imagegen config show)"
            checks.append(Check(f"online {name}", status, text, hint, needed and not answers))
    return checks


def doctor(
    json_out: JsonOpt = False,
    online: Annotated[bool, typer.Option("--online", help="Also check that each provider's base URL answers.")] = False,
    timeout: Annotated[
        float,
        typer.Option("--timeout", metavar="SECONDS", help="With --online: one bound for every probe together."),
    ] = 10.0,
) -> None:
    """Check the set-up: Python, torch and GPU, packages, caches, keys (never shown), config."""
    from imagegen_cli.cli.render import Output, report_errors

    with report_errors(Output(json_mode=json_out)):
        if not (math.isfinite(timeout) and 0 < timeout <= 600):
            raise UsageError(f"--timeout {timeout:g} is out of range", hint="give seconds above 0, at most 600")
    checks, default = run_checks(timeout if online else None)
    failed = any(c.status == FAIL and c.needed for c in checks)
    problems = [c for c in checks if c.status in (FAIL, WARN)]
    if json_out:
        document = {
            "ok": not failed,
            "default_model": default,
            "checks": [asdict(c) for c in checks],
            "problems": [{"name": c.name, "problem": c.value, "fix": c.fix} for c in problems],
        }
        sys.stdout.write(redact(json.dumps(document, indent=2, ensure_ascii=False)) + "\n")
    else:
        width = max(len(c.name) for c in checks)
        lines = [f"imagegen doctor (default model: {default})"]
        lines += [f"  {c.status:<4}  {c.name:<{width}}  {c.value}" for c in checks]
        if problems:
            lines.append("")
            lines.append("to fix:")
            lines += [f"  {c.name}: {c.fix or c.value}" for c in problems]
        lines.append("")
        lines.append("ready" if not failed else "not ready: the default model cannot run (see above)")
        sys.stdout.write(redact("\n".join(lines)) + "\n")
    if failed:
        raise typer.Exit(1)
