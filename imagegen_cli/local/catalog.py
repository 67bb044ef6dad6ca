"""Local models as data, and what the Hugging Face cache holds of them (read without huggingface_hub)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class LocalModel:
    """A diffusers text-to-image model the local backend knows by name."""

    id: str
    repo: str | None
    pipeline: str
    steps: int
    guidance: float
    native_size: tuple[int, int]
    size_multiple: int
    dtype: str
    licence: str
    memory_gb: float
    negative_prompt: bool = True
    # The ``__call__`` keyword --guidance goes to (``local.calls.adapt`` reads it from the loaded pipeline; this
    # is what --dry-run and ``models show`` say before loading): ``true_cfg_scale`` where the pipeline has one and
    # its transformer no guidance embedding (Qwen-Image, FLUX.1-schnell).
    guidance_knob: str = "guidance_scale"
    summary: str = ""
    # Approximate peak GPU memory at the native size with --quantize 8bit / 4bit (memory_gb: unquantized).
    memory_8bit_gb: float | None = None
    memory_4bit_gb: float | None = None

    @property
    def memory_by_mode(self) -> dict[str, float | None]:
        """GB of GPU memory per mode: the model's own dtype, --quantize 8bit, --quantize 4bit."""
        return {self.dtype: self.memory_gb, "8bit": self.memory_8bit_gb, "4bit": self.memory_4bit_gb}

    @property
    def native(self) -> str:
        return f"{self.native_size[0]}x{self.native_size[1]}"


LOCAL_MODELS: dict[str, LocalModel] = {
    m.id: m
    for m in (
        LocalModel(
            id="z-image-turbo",
            repo="Tongyi-MAI/Z-Image-Turbo",
            pipeline="ZImagePipeline",
            steps=8,
            guidance=0.0,
            native_size=(1024, 1024),
            size_multiple=16,
            dtype="bf16",
            licence="apache-2.0",
            memory_gb=21,
            negative_prompt=False,
            summary="6B DiT, distilled; best quality per second",
            memory_8bit_gb=13,
            memory_4bit_gb=9,
        ),
        LocalModel(
            id="flux-schnell",
            repo="black-forest-labs/FLUX.1-schnell",
            pipeline="FluxPipeline",
            steps=4,
            guidance=0.0,
            native_size=(1024, 1024),
            size_multiple=16,
            dtype="bf16",
            licence="apache-2.0",
            memory_gb=34,
            negative_prompt=False,
            guidance_knob="true_cfg_scale",
            summary="12B rectified flow, 4 steps",
            memory_8bit_gb=19,
            memory_4bit_gb=11,
        ),
        LocalModel(
            id="flux-kontext",
            repo="black-forest-labs/FLUX.1-Kontext-dev",
            pipeline="FluxKontextPipeline",
            steps=28,
            guidance=2.5,
            native_size=(1024, 1024),
            size_multiple=16,
            dtype="bf16",
            licence="flux-1-dev-non-commercial",
            memory_gb=34,
            negative_prompt=False,
            summary="12B editing model: --image PHOTO and an instruction (FLUX.1's memory figures)",
            memory_8bit_gb=19,
            memory_4bit_gb=11,
        ),
        LocalModel(
            id="sdxl-turbo",
            repo="stabilityai/sdxl-turbo",
            pipeline="StableDiffusionXLPipeline",
            steps=1,
            guidance=0.0,
            native_size=(512, 512),
            size_multiple=8,
            dtype="fp16",
            licence="sai-nc-community (non-commercial)",
            memory_gb=7,
            summary="SDXL distilled to one step",
            memory_8bit_gb=5,
            memory_4bit_gb=4,
        ),
        LocalModel(
            id="sd-turbo",
            repo="stabilityai/sd-turbo",
            pipeline="StableDiffusionPipeline",
            steps=1,
            guidance=0.0,
            native_size=(512, 512),
            size_multiple=8,
            dtype="fp16",
            licence="sai-nc-community (non-commercial)",
            memory_gb=3,
            summary="SD 2.1 distilled to one step; runs anywhere",
            memory_8bit_gb=2.5,
            memory_4bit_gb=2,
        ),
        LocalModel(
            id="sd-1.5",
            repo="stable-diffusion-v1-5/stable-diffusion-v1-5",
            pipeline="StableDiffusionPipeline",
            steps=25,
            guidance=7.5,
            native_size=(512, 512),
            size_multiple=8,
            dtype="fp16",
            licence="creativeml-openrail-m",
            memory_gb=4,
            summary="the classic",
            memory_8bit_gb=3,
            memory_4bit_gb=2.5,
        ),
        LocalModel(
            id="qwen-edit",
            repo="Qwen/Qwen-Image-Edit",
            pipeline="QwenImageEditPipeline",
            steps=50,
            guidance=4.0,
            native_size=(1024, 1024),
            size_multiple=16,
            dtype="bf16",
            licence="apache-2.0",
            memory_gb=58,
            guidance_knob="true_cfg_scale",
            summary="20B editing model: --image PHOTO and an instruction (Qwen-Image's memory figures)",
            memory_8bit_gb=30,
            memory_4bit_gb=17,
        ),
        LocalModel(
            id="qwen-image",
            repo="Qwen/Qwen-Image",
            pipeline="QwenImagePipeline",
            steps=50,
            guidance=4.0,
            native_size=(1328, 1328),
            size_multiple=16,
            dtype="bf16",
            licence="apache-2.0",
            memory_gb=58,
            guidance_knob="true_cfg_scale",
            summary="20B MMDiT; strong text rendering",
            memory_8bit_gb=30,
            memory_4bit_gb=17,
        ),
        LocalModel(
            id="tiny",
            repo=None,
            pipeline="StableDiffusionPipeline",
            steps=4,
            guidance=0.0,
            native_size=(64, 64),
            size_multiple=8,
            dtype="fp32",
            licence="test fixture",
            memory_gb=0.1,
            summary="random weights, built offline: draws noise, for smoke tests",
            memory_8bit_gb=0.1,
            memory_4bit_gb=0.1,
        ),
    )
}
AUTO_ID = "auto"


def hf_cache_dir() -> Path:
    """The hub cache: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def repo_cache_dir(repo: str) -> Path:
    """Where huggingface_hub keeps a model repo: ``models--org--name``."""
    return hf_cache_dir() / ("models--" + repo.replace("/", "--"))


@dataclass(frozen=True)
class CacheState:
    """Whether a repo's weights are in the cache, and how much disk they take."""

    downloaded: bool
    size_bytes: int


def cache_state(repo: str | None) -> CacheState:
    """A repo counts as downloaded when a snapshot holds a ``model_index.json`` (a complete diffusers layout)."""
    if repo is None:
        return CacheState(False, 0)
    root = repo_cache_dir(repo)
    snapshots = root / "snapshots"
    downloaded = snapshots.is_dir() and any((snap / "model_index.json").exists() for snap in snapshots.iterdir())
    size = 0
    blobs = root / "blobs"
    if blobs.is_dir():
        for blob in blobs.iterdir():
            if blob.is_file() and not blob.name.endswith(".incomplete"):
                size += blob.stat().st_size
    return CacheState(downloaded, size)


def human_size(size: int) -> str:
    """1536 → ``1.5 KB``."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
