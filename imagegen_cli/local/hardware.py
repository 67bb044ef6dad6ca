"""What accelerator this machine has, found without importing torch (``local:auto`` in a dry run is instant).

NVIDIA GPUs are read from ``nvidia-smi`` (the driver's own tool); Apple GPUs from the platform. The answer
is cached for a day in the user cache dir, so only the first run on a machine pays the ~50 ms probe.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

AUTO_GPU_MEMORY_GB = 20  # a CUDA GPU with this much memory gets z-image-turbo under local:auto
CACHE_SECONDS = 86400


@dataclass(frozen=True)
class Accelerator:
    """The first GPU found: ``kind`` is cuda, mps or none."""

    kind: str
    name: str = ""
    memory_gb: float = 0.0


def _cache_file() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("imagegen", appauthor=False)) / "hardware.json"


def nvidia_smi(fields: str) -> list[list[str]]:
    """``nvidia-smi --query-gpu=FIELDS``: one row of values per GPU; empty without the driver's tool."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(  # noqa: S603 - a fixed argument list, no shell
            [smi, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [[part.strip() for part in line.split(",")] for line in out.strip().splitlines() if line.strip()]


def _probe() -> Accelerator:
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return Accelerator("mps", "Apple GPU")
    if os.environ.get("CUDA_VISIBLE_DEVICES", "0") not in ("", "-1"):
        for row in nvidia_smi("name,memory.total"):
            try:
                return Accelerator("cuda", ",".join(row[:-1]), float(row[-1]) / 1024)
            except (IndexError, ValueError):
                continue
    return Accelerator("none")


def detect_accelerator() -> Accelerator:
    """The machine's accelerator, from the cache when it is fresh."""
    path = _cache_file()
    try:
        data = json.loads(path.read_text())
        if time.time() - float(data.pop("probed_at")) < CACHE_SECONDS:
            return Accelerator(**data)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found = _probe()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**asdict(found), "probed_at": time.time()}))
    except OSError:
        pass  # a read-only cache dir costs a probe per run, nothing more
    return found


def choose_auto(accelerator: Accelerator) -> tuple[str, str]:
    """local:auto → (model, why): z-image-turbo on a big enough CUDA GPU, else sd-turbo."""
    if accelerator.kind == "cuda":
        memory = accelerator.memory_gb
        if memory >= AUTO_GPU_MEMORY_GB:
            return "z-image-turbo", f"{accelerator.name} with {memory:.0f} GB"
        return (
            "sd-turbo",
            f"{accelerator.name} has {memory:.0f} GB, under the {AUTO_GPU_MEMORY_GB} GB z-image-turbo needs",
        )
    if accelerator.kind == "mps":
        return "sd-turbo", "Apple GPU (MPS)"
    return "sd-turbo", "no GPU"
