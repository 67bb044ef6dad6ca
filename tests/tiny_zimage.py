"""A tiny random-weight ZImagePipeline (the DiT architecture), built offline for the tests.

It is a pipeline imagegen did not build, saved with ``save_pretrained`` and loaded back through
``-m local:/path`` like any downloaded one. The GPU benchmark reuses its small parts around a full-size
transformer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TINY_TRANSFORMER = {
    "dim": 32,
    "n_layers": 2,
    "n_refiner_layers": 1,
    "n_heads": 2,
    "n_kv_heads": 2,
    "cap_feat_dim": 32,
    "axes_dims": [8, 4, 4],
    "axes_lens": [256, 64, 64],
}


def tiny_parts(cap_dim: int = 32, vae_levels: int = 2) -> dict[str, Any]:
    """Tokenizer, text encoder, VAE and scheduler: everything of a ZImagePipeline but the transformer."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler
    from transformers import Qwen2Tokenizer, Qwen3Config, Qwen3Model

    from imagegen_cli.local.tiny import byte_level_vocab

    torch.manual_seed(0)
    vocab = byte_level_vocab(("<|endoftext|>", "<|im_start|>", "<|im_end|>"))
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        model_max_length=512,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    text_encoder = Qwen3Model(
        Qwen3Config(
            hidden_size=cap_dim,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=16,
            vocab_size=len(vocab),
            max_position_embeddings=512,
        )
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * vae_levels,
        up_block_types=["UpDecoderBlock2D"] * vae_levels,
        block_out_channels=[32] * vae_levels,
        latent_channels=16,
        norm_num_groups=32,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    return {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "vae": vae,
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0),
    }


def transformer(config: dict[str, Any]) -> Any:
    """A ZImageTransformer2DModel with random weights, its pad tokens filled."""
    import torch
    from diffusers import ZImageTransformer2DModel

    model = ZImageTransformer2DModel(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, **config)
    with torch.no_grad():  # the pad tokens may start uninitialised: fill them
        model.x_pad_token.normal_()
        model.cap_pad_token.normal_()
    return model


def build_tiny_zimage(target: Path) -> Path:
    from diffusers import ZImagePipeline

    pipe = ZImagePipeline(**tiny_parts(), transformer=transformer(TINY_TRANSFORMER))
    pipe.save_pretrained(target)
    return target
