"""``local:tiny``: a tiny random-weight Stable Diffusion pipeline, built offline, deterministically.

It draws abstract noise in about a tenth of a second on a CPU (64x64, once loaded). It exists so users and CI
pipelines can smoke-test scripts with no GPU, no key and no network. It is saved once to the user cache dir and
then loaded through ``from_pretrained`` like any downloaded model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

TINY_VERSION = 2  # 2: the VAE scales by 8, as real Stable Diffusion's does (1 scaled by 2)
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def tiny_dir() -> Path:
    """``$XDG_CACHE_HOME/imagegen/models/tiny-sd-vN``."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("imagegen", appauthor=False)) / "models" / f"tiny-sd-v{TINY_VERSION}"


def byte_level_vocab(extra: tuple[str, ...] = ()) -> dict[str, int]:
    """The GPT-2 byte-to-unicode alphabet as a vocabulary: any text tokenizes with no merges."""
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes = visible[:]
    shift = 0
    for byte in range(256):
        if byte not in visible:
            visible.append(byte)
            codes.append(256 + shift)
            shift += 1
    chars = [chr(c) for c in codes]
    vocab: dict[str, int] = {}
    for ch in chars:
        vocab[ch] = len(vocab)
    for ch in chars:
        vocab[ch + "</w>"] = len(vocab)
    for token in extra:
        vocab[token] = len(vocab)
    return vocab


def clip_tokenizer() -> Any:
    """A CLIP tokenizer over :func:`byte_level_vocab`: built in memory, no merges, no files, no Hub."""
    from transformers import CLIPTokenizer

    bos, eos = SPECIAL_TOKENS
    return CLIPTokenizer(
        vocab=byte_level_vocab(SPECIAL_TOKENS),
        merges=[],
        unk_token=eos,
        bos_token=bos,
        eos_token=eos,
        pad_token=eos,
        model_max_length=77,
    )


def build_tiny_pipeline(target: Path) -> None:
    """Build the pipeline with fixed seeds and save it to ``target`` (atomically: a temp dir, then rename)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    vocab = byte_level_vocab(SPECIAL_TOKENS)
    bos, eos = SPECIAL_TOKENS
    tokenizer = clip_tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(vocab),
            max_position_embeddings=77,
            projection_dim=32,
            bos_token_id=vocab[bos],
            eos_token_id=vocab[eos],
            pad_token_id=vocab[eos],
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,  # 64x64 pixels: the default size
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        # Four blocks, three downsamplings: latents are 1/8 of the image, as in every real SD model. (With
        # two, a 64x64 image had 32x32 latents: self-attention over 1,024 tokens made an image 3x slower.)
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[32, 64, 64, 64],
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="trailing", steps_offset=1
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    try:
        pipe.save_pretrained(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "model_index.json").exists():
                raise
            # Another process built it first; theirs is identical.
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_tiny_pipeline() -> Path:
    """The tiny pipeline's directory, built on first use."""
    target = tiny_dir()
    if not (target / "model_index.json").exists():
        build_tiny_pipeline(target)
    return target
