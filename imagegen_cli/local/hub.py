"""Downloading and removing local model weights in the Hugging Face cache.

huggingface_hub comes with the ``local`` extra and is imported only here, inside the functions.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from imagegen_cli.errors import ConfigError, GatewayError, UsageError
from imagegen_cli.local.catalog import LOCAL_MODELS, repo_cache_dir

LOCAL_EXTRA_HINT = "pip install 'imagegen-cli[local]' torch==2.13.0 (or your own CUDA build of torch)"
# What a remote-only install is pointed to when no model is configured (the built-in default is local:auto).
REMOTE_EXAMPLE = "apimart:z-image-turbo"
REMOTE_DEFAULT_HINT = (
    f"use a remote model: -m {REMOTE_EXAMPLE}, or once for all: imagegen config set default_model {REMOTE_EXAMPLE}"
)
# Root-level single-file checkpoints duplicate the diffusers folders; other formats are for other libraries.
ALLOW_PATTERNS = ["model_index.json", "*.json", "*.txt", "*/*"]
IGNORE_PATTERNS = ["*.ckpt", "*.pt", "*.pth", "*.onnx", "*.onnx_data", "*.msgpack", "*.h5", "*.gguf"]


def missing_local_module() -> str | None:
    """torch or diffusers when it cannot be imported (the ``local`` extra is not installed), found without
    importing either."""
    from imagegen_cli.local.weights import installed

    return next((module for module in ("torch", "diffusers") if not installed(module)), None)


def require_local_extra(model: str, *, default: str | None = None) -> None:
    """Refuse a local run before it starts when the ``local`` extra is missing; ``default`` is the built-in
    default model when no model was given or configured, and the hint then points to a remote model first."""
    missing = missing_local_module()
    if missing is None:
        return
    if default is not None:
        raise ConfigError(
            f"no model was given, and the default ({default}) needs the local extra ({missing} is not installed)",
            hint=f"{REMOTE_DEFAULT_HINT}; or install the local extra: {LOCAL_EXTRA_HINT}",
        )
    raise ConfigError(f"{model} needs the local extra ({missing} is not installed)", hint=LOCAL_EXTRA_HINT)


def repo_for(model_id: str) -> str:
    """Catalog name → repo id; ``org/name`` passes through."""
    name = model_id.removeprefix("local:")
    if name in LOCAL_MODELS:
        repo = LOCAL_MODELS[name].repo
        if repo is None:
            raise UsageError(f"{name} is built on this machine on first use; there is nothing to download")
        return repo
    if name.count("/") == 1 and all(name.split("/")):
        return name
    raise UsageError(f"unknown local model {name!r}", hint="local models: " + ", ".join(LOCAL_MODELS) + ", or ORG/NAME")


def pull(model_id: str) -> str:
    """Download (or resume downloading) a model's weights; returns the snapshot path."""
    repo = repo_for(model_id)
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
        )
    except ImportError:
        raise ConfigError("downloading models needs the local extra", hint=LOCAL_EXTRA_HINT) from None
    try:
        # snapshot_download resumes partial files and skips complete ones, and shows its own progress bars.
        return str(snapshot_download(repo, allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS))
    except GatedRepoError:
        raise ConfigError(
            f"{repo} is gated: accept its licence on its Hugging Face page first",
            hint="then log in with `hf auth login` or set HF_TOKEN",
        ) from None
    except RepositoryNotFoundError:
        raise UsageError(
            f"no model {repo} on the Hugging Face Hub (or it is private)",
            hint="check the name; private repos need HF_TOKEN",
        ) from None
    except (OfflineModeIsEnabled, LocalEntryNotFoundError):
        raise GatewayError(
            f"cannot download {repo}: offline (no network, or HF_HUB_OFFLINE is set)",
            hint="connect and run again; it resumes where it stopped",
        ) from None
    except HfHubHTTPError as exc:
        raise GatewayError(f"cannot download {repo}: {str(exc).splitlines()[0][:200]}") from None
    except OSError as exc:
        raise GatewayError(
            f"cannot download {repo}: {exc.strerror or exc}", hint="check the network and free disk space"
        ) from None


def local_files(model_id: str) -> tuple[str, Path]:
    """What ``models rm`` removes: (its name, its folder): a repo's Hugging Face cache folder, or the folder the
    tiny pipeline was built in."""
    name = model_id.removeprefix("local:")
    if name in LOCAL_MODELS and LOCAL_MODELS[name].repo is None:
        from imagegen_cli.local.tiny import tiny_dir

        return f"local:{name}", tiny_dir()
    repo = repo_for(model_id)
    return repo, repo_cache_dir(repo)


def remove(model_id: str) -> tuple[str, bool]:
    """Delete a model's cache folder (or the tiny pipeline's build); (its name, whether anything was there)."""
    name, folder = local_files(model_id)
    if not folder.exists():
        return name, False
    shutil.rmtree(folder)
    return name, True
