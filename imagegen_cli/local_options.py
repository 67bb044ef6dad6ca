"""The local-only flags as one typed value, checked when it is built; no torch, no catalog, no planning here.

It is a shared type (outside ``local/``) so that the core options and every ``generate`` (a remote one too) can
build it without reaching into the local engine package (layering: see tests/test_core.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from imagegen_cli.errors import UsageError

DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPES = ("auto", "bf16", "fp16", "fp32")
OFFLOADS = ("none", "model", "sequential")
QUANTIZE = ("8bit", "4bit", "fp8")


def parse_lora(text: str) -> tuple[str, float]:
    """``PATH|org/name[:SCALE]`` → (source, scale); the scale defaults to 1."""
    source, scale = text, 1.0
    head, sep, tail = text.rpartition(":")
    if sep and head:
        try:
            scale = float(tail)
        except ValueError:
            pass  # a colon that is part of the path
        else:
            source = head
    if not source or not math.isfinite(scale):
        raise UsageError(f"invalid --lora {text!r}", hint="use --lora PATH or --lora org/name, with :SCALE (e.g. :0.8)")
    return source, scale


@dataclass(frozen=True)
class LocalOptions:
    """The local-only flags."""

    device: str = "auto"
    dtype: str = "auto"
    offload: str = "none"
    vae_tiling: bool = False
    compile: bool = False
    variant: str | None = None  # weight files *.VARIANT.safetensors (fp16, bf16...); found by itself in folders
    loras: tuple[str, ...] = ()  # PATH|org/name[:SCALE], in order
    quantize: str | None = None  # 8bit | 4bit | fp8 (CUDA, compute capability 8.9+)
    gguf: str | None = None  # a single-file GGUF transformer
    scheduler: str | None = None  # a name of imagegen_cli.local.schedulers.SCHEDULERS

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("--device", self.device, DEVICES),
            ("--dtype", self.dtype, DTYPES),
            ("--offload", self.offload, OFFLOADS),
        ):
            if value not in allowed:
                raise UsageError(f"invalid {name} {value!r}", hint="use one of " + ", ".join(allowed))
        if self.quantize is not None and self.quantize not in QUANTIZE:
            raise UsageError(f"invalid --quantize {self.quantize!r}", hint="use 8bit, 4bit or fp8")
        if self.variant is not None and not re.fullmatch(r"[A-Za-z0-9_]+", self.variant):
            raise UsageError(f"invalid --variant {self.variant!r}", hint="e.g. --variant fp16")
        if self.gguf is not None and self.quantize is not None:
            raise UsageError(
                "--gguf and --quantize both given", hint="a GGUF file is already quantized: drop --quantize"
            )
        for lora in self.loras:
            parse_lora(lora)
        if self.scheduler is not None:
            from imagegen_cli.local.schedulers import find_scheduler

            find_scheduler(self.scheduler)

    @property
    def lora_specs(self) -> list[tuple[str, float]]:
        return [parse_lora(text) for text in self.loras]
