"""Downloading and removing local model weights in the Hugging Face cache.

huggingface_hub comes with the ``local`` extra and is imported only here, inside the functions.
"""

from __future__ import annotations

import shutil

from imagegen_cli.errors import ConfigError, GatewayError, UsageError
from imagegen_cli.local.catalog import LOCAL_MODELS, repo_cache_dir

LOCAL_EXTRA_HINT = "pip install 'imagegen-cli[local]' torch==2.13.0 (or your own CUDA build of torch)"
# Root-level single-file checkpoints duplicate the diffusers folders; other formats are for other libraries.
ALLOW_PATTERNS = ["model_index.json", "*.json", "*.txt", "*/*"]
IGNORE_PATTERNS = ["*.ckpt", "*.pt", "*.pth", "*.onnx", "*.onnx_data", "*.msgpack", "*.h5", "*.gguf"]


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


def remove(model_id: str) -> tuple[str, bool]:
    """Delete a model's cache folder; (repo, whether anything was there)."""
    repo = repo_for(model_id)
    folder = repo_cache_dir(repo)
    if not folder.exists():
        return repo, False
    shutil.rmtree(folder)
    return repo, True
