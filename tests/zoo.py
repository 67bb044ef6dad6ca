"""A zoo of tiny random-weight diffusers pipelines, one per architecture, built offline for the tests.

The shapes follow diffusers' own ``get_dummy_components`` in its pipeline tests (facts copied, not code);
tokenizers are built from an in-memory vocabulary (no Hub). Each pipeline is saved with ``save_pretrained``
and loaded back through ``from_pretrained`` like a downloaded one: a few MB each, built once per test run.

``ZOO`` maps a name to its builder and to what a plain diffusers call needs besides the prompt, seeds,
steps and size (``plain``), so the tests can compare imagegen's pixels with plain diffusers' pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagegen_cli.local.tiny import SPECIAL_TOKENS, byte_level_vocab, clip_tokenizer
from imagegen_cli.result import SilentSink


def clip_config(hidden: int = 32, projection: int = 32, layers: int = 2) -> Any:
    from transformers import CLIPTextConfig

    vocab = byte_level_vocab(SPECIAL_TOKENS)
    bos, eos = SPECIAL_TOKENS
    return CLIPTextConfig(
        hidden_size=hidden,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=layers,
        vocab_size=len(vocab),
        max_position_embeddings=77,
        projection_dim=projection,
        hidden_act="gelu",
        bos_token_id=vocab[bos],
        eos_token_id=vocab[eos],
        pad_token_id=vocab[eos],
    )


def t5_pair(d_model: int = 32) -> tuple[Any, Any]:
    """A T5 tokenizer (a Unigram vocabulary of single characters) and a tiny T5 encoder."""
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -1.0)]
    pieces += [(chr(c), -2.0) for c in range(33, 127)]
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)
    encoder = T5EncoderModel(
        T5Config(
            vocab_size=len(pieces),
            d_model=d_model,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
        )
    )
    return tokenizer, encoder


def gemma_pair(hidden: int = 8, head_dim: int = 16, layers: int = 1) -> tuple[Any, Any]:
    from transformers import Gemma2Config, Gemma2Model, GemmaTokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<start_of_turn>": 4, "<end_of_turn>": 5, "▁": 6}
    for c in range(32, 127):
        vocab.setdefault(chr(c), len(vocab))
    tokenizer = GemmaTokenizer(vocab=vocab, merges=[], model_max_length=8192)
    tokenizer.padding_side = "right"
    encoder = Gemma2Model(
        Gemma2Config(
            head_dim=head_dim,
            hidden_size=hidden,
            intermediate_size=16,
            max_position_embeddings=8192,
            num_attention_heads=2,
            num_hidden_layers=layers,
            num_key_value_heads=2,
            vocab_size=len(vocab),
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
            attn_implementation="eager",
        )
    )
    return tokenizer, encoder


def vae_kl(channels: tuple[int, ...], latent: int = 4, groups: int = 1, **extra: Any) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * len(channels),
        up_block_types=["UpDecoderBlock2D"] * len(channels),
        block_out_channels=list(channels),
        latent_channels=latent,
        norm_num_groups=groups,
        layers_per_block=1,
        **extra,
    )


def euler() -> Any:
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="trailing", steps_offset=1
    )


# ---------------------------------------------------------------------------------------------- the builders
def build_sd(target: Path) -> None:
    from imagegen_cli.local.tiny import build_tiny_pipeline

    build_tiny_pipeline(target)


def build_sdxl(target: Path) -> None:
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=80,  # 6 * 8 + 32
        cross_attention_dim=64,
        norm_num_groups=1,
    )
    torch.manual_seed(0)
    pipe = StableDiffusionXLPipeline(
        vae=vae_kl((8, 8)),
        text_encoder=CLIPTextModel(clip_config()),
        text_encoder_2=CLIPTextModelWithProjection(clip_config()),
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(),
        unet=unet,
        scheduler=euler(),
    )
    pipe.save_pretrained(target)


def build_lcm(target: Path) -> None:
    import torch
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=2,
        time_cond_proj_dim=32,
    )
    scheduler = LCMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False
    )
    pipe = LatentConsistencyModelPipeline(
        vae=vae_kl((4, 8), groups=2),
        text_encoder=CLIPTextModel(clip_config()),
        tokenizer=clip_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(target)


def build_sd3(target: Path) -> None:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=32,
        pooled_projection_dim=64,
        out_channels=4,
    )
    tokenizer_3, text_encoder_3 = t5_pair(32)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae_kl((4, 4), shift_factor=0.0609, scaling_factor=1.5035, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=CLIPTextModelWithProjection(clip_config()),
        tokenizer=clip_tokenizer(),
        text_encoder_2=CLIPTextModelWithProjection(clip_config()),
        tokenizer_2=clip_tokenizer(),
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
    )
    pipe.save_pretrained(target)


def build_flux(target: Path, guidance_embeds: bool = False) -> None:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels, packed 2x2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
        guidance_embeds=guidance_embeds,
    )
    tokenizer_2, text_encoder_2 = t5_pair(32)
    pipe = FluxPipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        # Four levels, as the real one: a scale factor of 8, sizes in multiples of 16 (8 x the 2x2 packing).
        vae=vae_kl(
            (4, 4, 4, 4), shift_factor=0.0609, scaling_factor=1.5035, use_quant_conv=False, use_post_quant_conv=False
        ),
        text_encoder=CLIPTextModel(clip_config()),
        tokenizer=clip_tokenizer(),
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
    )
    pipe.save_pretrained(target)


def build_pixart(target: Path) -> None:
    import torch
    from diffusers import DDIMScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel

    torch.manual_seed(0)
    transformer = PixArtTransformer2DModel(
        sample_size=8,
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        caption_channels=32,
        in_channels=4,
        cross_attention_dim=24,
        out_channels=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )
    tokenizer, text_encoder = t5_pair(32)
    pipe = PixArtAlphaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae_kl((8, 8), groups=8),
        transformer=transformer,
        scheduler=DDIMScheduler(),
    )
    pipe.save_pretrained(target)


def _sana_vae() -> Any:
    from diffusers import AutoencoderDC

    return AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=2,
        encoder_block_types=("ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        encoder_qkv_multiscales=((), (5,)),
        decoder_qkv_multiscales=((), (5,)),
        encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=[1, 1],
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    )


def _sana_transformer(**extra: Any) -> Any:
    from diffusers import SanaTransformer2DModel

    return SanaTransformer2DModel(
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        num_attention_heads=2,
        attention_head_dim=4,
        num_cross_attention_heads=2,
        cross_attention_head_dim=4,
        cross_attention_dim=8,
        caption_channels=8,
        sample_size=16,
        **extra,
    )


def build_sana(target: Path) -> None:
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SanaPipeline

    torch.manual_seed(0)
    tokenizer, text_encoder = gemma_pair()
    pipe = SanaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=_sana_vae(),
        transformer=_sana_transformer(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
    )
    pipe.save_pretrained(target)


def build_sana_sprint(target: Path) -> None:
    import torch
    from diffusers import SanaSprintPipeline, SCMScheduler

    torch.manual_seed(0)
    tokenizer, text_encoder = gemma_pair()
    pipe = SanaSprintPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=_sana_vae(),
        transformer=_sana_transformer(qk_norm="rms_norm_across_heads", guidance_embeds=True),
        scheduler=SCMScheduler(),
    )
    pipe.save_pretrained(target)


def build_qwen(target: Path) -> None:
    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2Tokenizer

    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=3,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    vae = AutoencoderKLQwenImage(
        base_dim=24,
        z_dim=4,
        dim_mult=[1, 2, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    specials = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>")
    vocab = byte_level_vocab(specials)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=[], unk_token="<|endoftext|>", pad_token="<|endoftext|>", eos_token="<|im_end|>"
    )
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "vocab_size": len(vocab),
        },
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        hidden_size=16,
        vocab_size=len(vocab),
        vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"],
        vision_token_id=vocab["<|image_pad|>"],
        image_token_id=vocab["<|image_pad|>"],
    )
    text_encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
    pipe = QwenImagePipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
    )
    pipe.save_pretrained(target)


def build_kandinsky(target: Path) -> None:
    """Kandinsky 2.2 text-to-image: a prior (text → image embedding) and a decoder, in one pipeline."""
    import torch
    from diffusers import (
        DDIMScheduler,
        KandinskyV22CombinedPipeline,
        PriorTransformer,
        UnCLIPScheduler,
        UNet2DConditionModel,
        VQModel,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPTextModelWithProjection,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    torch.manual_seed(0)
    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=12, embedding_dim=32, num_layers=1)
    prior.clip_std = torch.nn.Parameter(torch.ones(prior.clip_std.shape))
    torch.manual_seed(0)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            image_size=28,
            projection_dim=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_channels=3,
            num_hidden_layers=1,
            patch_size=14,
        )
    )
    image_processor = CLIPImageProcessor(
        crop_size=28,
        do_center_crop=True,
        do_normalize=True,
        do_resize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
        resample=3,
        size=28,
    )
    prior_scheduler = UnCLIPScheduler(
        variance_type="fixed_small_log",
        prediction_type="sample",
        num_train_timesteps=1000,
        clip_sample=True,
        clip_sample_range=10.0,
    )
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        in_channels=4,
        out_channels=8,  # mean and variance
        addition_embed_type="image",
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        block_out_channels=(32, 64),
        layers_per_block=1,
        encoder_hid_dim=32,
        encoder_hid_dim_type="image_proj",
        cross_attention_dim=32,
        attention_head_dim=4,
        resnet_time_scale_shift="scale_shift",
        class_embed_type=None,
    )
    torch.manual_seed(0)
    movq = VQModel(
        block_out_channels=[32, 64],
        down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
        in_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        norm_type="spatial",
        num_vq_embeddings=12,
        out_channels=3,
        up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"],
        vq_embed_dim=4,
    )
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
        thresholding=False,
    )
    torch.manual_seed(0)
    pipe = KandinskyV22CombinedPipeline(
        unet=unet,
        scheduler=scheduler,
        movq=movq,
        prior_prior=prior,
        prior_image_encoder=image_encoder,
        prior_text_encoder=CLIPTextModelWithProjection(clip_config()),
        prior_tokenizer=clip_tokenizer(),
        prior_scheduler=prior_scheduler,
        prior_image_processor=image_processor,
    )
    pipe.save_pretrained(target)


def build_amused(target: Path) -> None:
    """aMUSEd: a masked-token transformer; its ``__call__`` takes one generator and no step callback."""
    import torch
    from diffusers import AmusedPipeline, AmusedScheduler, UVit2DModel, VQModel
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(0)
    transformer = UVit2DModel(
        hidden_size=8,
        use_bias=False,
        hidden_dropout=0.0,
        cond_embed_dim=8,
        micro_cond_encode_dim=2,
        micro_cond_embed_dim=10,
        encoder_hidden_size=8,
        vocab_size=32,
        codebook_size=8,
        in_channels=8,
        block_out_channels=8,
        num_res_blocks=1,
        downsample=True,
        upsample=True,
        block_num_heads=1,
        num_hidden_layers=1,
        num_attention_heads=1,
        attention_dropout=0.0,
        intermediate_size=8,
        layer_norm_eps=1e-06,
        ln_elementwise_affine=True,
    )
    torch.manual_seed(0)
    vqvae = VQModel(
        act_fn="silu",
        block_out_channels=[8],
        down_block_types=["DownEncoderBlock2D"],
        in_channels=3,
        latent_channels=8,
        layers_per_block=1,
        norm_num_groups=8,
        num_vq_embeddings=8,
        out_channels=3,
        sample_size=8,
        up_block_types=["UpDecoderBlock2D"],
        mid_block_add_attention=False,
        lookup_from_codebook=True,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModelWithProjection(clip_config(hidden=8, projection=8, layers=1))
    pipe = AmusedPipeline(
        vqvae=vqvae,
        tokenizer=clip_tokenizer(),
        text_encoder=text_encoder,
        transformer=transformer,
        scheduler=AmusedScheduler(mask_token_id=31),
    )
    pipe.save_pretrained(target)


def build_hunyuan(target: Path) -> None:
    """HunyuanDiT; its VAE has four levels so that its resolution binning (to 1024x1024) stays quick."""
    import torch
    from diffusers import DDPMScheduler, HunyuanDiT2DModel, HunyuanDiTPipeline
    from transformers import BertConfig, BertModel, BertTokenizer

    torch.manual_seed(0)
    transformer = HunyuanDiT2DModel(
        sample_size=16,
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        in_channels=4,
        cross_attention_dim=32,
        cross_attention_dim_t5=32,
        pooled_projection_dim=16,
        hidden_size=24,
        activation_fn="gelu-approximate",
    )
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(chr(c) for c in range(33, 127))]
    bert_tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)}, model_max_length=77)
    bert = BertModel(
        BertConfig(
            vocab_size=len(words),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=4,
            intermediate_size=37,
            max_position_embeddings=512,
        )
    )
    tokenizer_2, text_encoder_2 = t5_pair(32)
    pipe = HunyuanDiTPipeline(
        vae=vae_kl((8, 8, 8, 8), groups=8),
        text_encoder=bert,
        tokenizer=bert_tokenizer,
        transformer=transformer,
        scheduler=DDPMScheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
    )
    pipe.save_pretrained(target)


@dataclass(frozen=True)
class Species:
    """One zoo architecture: how to build it, and the extra keywords a plain diffusers call needs."""

    build: Callable[[Path], None]
    pipeline: str
    plain: dict[str, Any] = field(default_factory=dict)


ZOO: dict[str, Species] = {
    "sd": Species(build_sd, "StableDiffusionPipeline"),
    "sdxl": Species(build_sdxl, "StableDiffusionXLPipeline"),
    "sd3": Species(build_sd3, "StableDiffusion3Pipeline"),
    "flux": Species(build_flux, "FluxPipeline"),
    "pixart": Species(build_pixart, "PixArtAlphaPipeline", {"use_resolution_binning": False}),
    "sana": Species(build_sana, "SanaPipeline", {"use_resolution_binning": False}),
    "qwen": Species(build_qwen, "QwenImagePipeline"),
    "kandinsky": Species(build_kandinsky, "KandinskyV22CombinedPipeline", {"prior_num_inference_steps": 2}),
    "lcm": Species(build_lcm, "LatentConsistencyModelPipeline"),
    "sana-sprint": Species(build_sana_sprint, "SanaSprintPipeline", {"use_resolution_binning": False}),
    "amused": Species(build_amused, "AmusedPipeline"),
    "hunyuan": Species(build_hunyuan, "HunyuanDiTPipeline", {"use_resolution_binning": False}),
}


def build(name: str, root: Path) -> Path:
    """Build one zoo pipeline under ``root`` (once: an existing build is reused)."""
    target = root / name
    if not (target / "model_index.json").exists():
        ZOO[name].build(target)
    return target


# ------------------------------------------------------------------------------------ running imagegen in-process
class Recorder(SilentSink):
    """A progress sink that remembers each call's total and every step update."""

    def __init__(self, on_update: Callable[[int | None], None] | None = None) -> None:
        self.totals: list[int | None] = []
        self.updates: list[int | None] = []
        self.on_update = on_update

    def start(self, key: str, description: str, total: int | None) -> None:
        if key.startswith("batch"):
            self.totals.append(total)

    def update(self, key: str, completed: int | None = None, description: str | None = None) -> None:
        self.updates.append(completed)
        if self.on_update is not None:
            self.on_update(completed)

    def finish(self, key: str) -> None:
        pass


@dataclass
class Outcome:
    """A finished in-process local run."""

    result: Any
    run: Any

    @property
    def images(self) -> list[Any]:
        return sorted(self.result.images, key=lambda i: i.index)

    @property
    def notes(self) -> list[str]:
        return list(self.result.notes)

    @property
    def errors(self) -> list[str]:
        return [e.message for e in self.result.errors]

    def metadata(self, index: int = 0) -> dict[str, Any]:
        import json

        from PIL import Image

        with Image.open(self.images[index].path) as img:
            return dict(json.loads(img.text["imagegen"]))

    def pixels(self) -> list[bytes]:
        from PIL import Image

        out = []
        for image in self.images:
            with Image.open(image.path) as img:
                out.append(img.convert("RGB").tobytes())
        return out

    def sizes(self) -> list[tuple[int, int]]:
        return [(i.width, i.height) for i in self.images]


def generate(
    source: str | Path,
    out: Path,
    *,
    n: int = 2,
    seed: int = 7,
    size: str | None = "32x32",
    steps: int | None = 2,
    reporter: Any = None,
    options: dict[str, Any] | None = None,
    **fields: Any,
) -> Outcome:
    """imagegen's local backend in this process, as ``generate -m local:SOURCE`` runs it (errors kept)."""
    from imagegen_cli.events import StopToken
    from imagegen_cli.local.planning import LocalOptions, build_local_plan, resolve_source
    from imagegen_cli.local.runner import LocalRun
    from imagegen_cli.request import GenerationRequest, Size
    from imagegen_cli.result import JobResult, SilentSink
    from imagegen_cli.saving import JobRecorder
    from imagegen_cli.store.writer import ImageWriter, OutputSpec

    request = GenerationRequest(
        prompt=fields.pop("prompt", "a red fox in the snow"),
        provider="local",
        model=str(source),
        n=n,
        seed=seed,
        size=Size.parse(size) if size else None,
        steps=steps,
        **fields,
    )
    plan = build_local_plan(request, resolve_source(str(source)), LocalOptions(device="cpu", **(options or {})))
    spec = OutputSpec.from_args(
        str(out), default_dir=None, template=None, fmt=None, overwrite=False, metadata=True, n=n
    )
    writer = ImageWriter(spec, prompt=request.prompt, provider="local", model=str(source), n=n)
    result = JobResult("local", str(source), n)
    sink = reporter or SilentSink()
    run = LocalRun(plan, JobRecorder(result, None, sink, writer).handle, StopToken())
    from imagegen_cli.errors import ImagegenError

    try:
        run.run(local_engine())
    except ImagegenError as exc:
        result.errors.append(exc)
    result.interrupted = run.stop.requested
    return Outcome(result, run)


def plain(source: Path, seeds: list[int], *, size: int = 32, steps: int = 2, **extra: Any) -> list[bytes]:
    """The same images made by a plain diffusers script: one CPU generator per seed."""
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(source, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    kwargs = {"num_inference_steps": steps, "height": size, "width": size, **extra}
    if "list" in str(inspect_generator(pipe)):
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        images = pipe("a red fox in the snow", num_images_per_prompt=len(seeds), generator=generators, **kwargs).images
    else:  # one generator per call
        images = [
            pipe("a red fox in the snow", generator=torch.Generator("cpu").manual_seed(s), **kwargs).images[0]
            for s in seeds
        ]
    return [image.convert("RGB").tobytes() for image in images]


def inspect_generator(pipe: Any) -> Any:
    import inspect

    return inspect.signature(pipe.__call__).parameters["generator"].annotation


def local_engine() -> Any:
    """The process's local engine (the one ``generate -m local:...`` uses), which keeps the loaded pipeline."""
    from imagegen_cli.engines import ModelRef, engine_for

    return engine_for(ModelRef("local", None)).engine
