"""The local-only flags on tiny pipelines: --lora, --scheduler, --quantize, --gguf, --variant, size limits, notes."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.zoo import build, generate

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.getbasetemp() / "zoo"
    return lambda name: build(name, root)


def make_lora(pipeline_dir: Path, target: Path, seed: int = 1) -> Path:
    """A random LoRA on the pipeline's denoiser, made with peft and saved with save_lora_weights."""
    from diffusers import DiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = DiffusionPipeline.from_pretrained(pipeline_dir)
    torch.manual_seed(seed)
    name = "unet" if hasattr(pipe, "unet") else "transformer"
    denoiser = getattr(pipe, name)
    denoiser.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    )
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(denoiser))
    type(pipe).save_lora_weights(target, **{f"{name}_lora_layers": layers})
    return target


@pytest.fixture(scope="session")
def sd_lora(zoo: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lora(zoo("sd"), tmp_path_factory.mktemp("lora") / "sd-style")


# ---------------------------------------------------------------------------------------------------- --lora
def test_lora_changes_pixels_scales_and_is_recorded(zoo: Any, sd_lora: Path, tmp_path: Path) -> None:
    source = zoo("sd")
    without = generate(source, tmp_path / "a", n=1)
    styled = generate(source, tmp_path / "b", n=1, options={"loras": (str(sd_lora),)})
    assert styled.errors == [] and styled.pixels() != without.pixels()
    assert styled.metadata()["loras"] == [{"source": str(sd_lora), "scale": 1.0}]
    zero = generate(source, tmp_path / "c", n=1, options={"loras": (f"{sd_lora}:0",)})
    assert zero.pixels() == without.pixels()  # scale 0: the base model
    half = generate(source, tmp_path / "d", n=1, options={"loras": (f"{sd_lora}:0.5",)})
    assert half.pixels() not in (without.pixels(), styled.pixels())
    # a single .safetensors file, twice (two adapters): repeatable
    weights = next(sd_lora.glob("*.safetensors"))
    two = generate(source, tmp_path / "e", n=1, options={"loras": (f"{weights}:0.5", f"{weights}:0.5")})
    assert two.errors == [] and [lo["scale"] for lo in two.metadata()["loras"]] == [0.5, 0.5]
    assert generate(source, tmp_path / "f", n=1).pixels() == without.pixels()  # unloaded again without --lora


def test_a_lora_for_another_architecture_is_one_line(zoo: Any, tmp_path: Path) -> None:
    flux_lora = make_lora(zoo("flux"), tmp_path / "flux-lora")
    outcome = generate(zoo("sd"), tmp_path / "out", n=1, options={"loras": (str(flux_lora),)})
    assert outcome.images == [] and len(outcome.errors) == 1
    assert "does not fit StableDiffusionPipeline" in outcome.errors[0] and "\n" not in outcome.errors[0]
    missing = generate(zoo("sd"), tmp_path / "out2", n=1, options={"loras": (str(tmp_path / "nope"),)})
    assert missing.images == [] and "LoRA" in missing.errors[0]


def _foreign_loras(folder: Path) -> dict[str, Path]:
    """Two LoRA files the tiny SD pipeline cannot take: kohya-style keys for 40 SDXL layers it does not have,
    and diffusers-style keys for a layer it has, at a shape it does not have."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    layers = {}
    for i in range(40):
        name = f"lora_unet_output_blocks_{i}_1_transformer_blocks_0_attn1_to_q"
        layers |= {f"{name}.lora_down.weight": torch.zeros(4, 320), f"{name}.lora_up.weight": torch.zeros(320, 4)}
        layers[f"{name}.alpha"] = torch.tensor(4.0)
    save_file(layers, folder / "sdxl-layers.safetensors")
    q = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    shapes = {f"{q}.lora_A.weight": torch.zeros(4, 999), f"{q}.lora_B.weight": torch.zeros(999, 4)}
    save_file(shapes, folder / "wrong-shapes.safetensors")
    return {"layers": folder / "sdxl-layers.safetensors", "shapes": folder / "wrong-shapes.safetensors"}


def test_a_lora_whose_keys_do_not_fit_is_one_short_line(zoo: Any, tmp_path: Path) -> None:
    import logging

    # diffusers logs the whole state-dict error before raising it; the run must say one line, and only that.
    heard: list[logging.LogRecord] = []
    listener = logging.Handler()
    listener.emit = heard.append  # type: ignore[method-assign]
    logging.getLogger("diffusers").addHandler(listener)
    try:
        loras = _foreign_loras(tmp_path / "loras")
        outcomes = {
            kind: generate(zoo("sd"), tmp_path / kind, n=1, options={"loras": (str(path),)})
            for kind, path in loras.items()
        }
    finally:
        logging.getLogger("diffusers").removeHandler(listener)
    assert [r.getMessage() for r in heard if r.levelno >= logging.ERROR] == []
    for kind, outcome in outcomes.items():
        (error,) = outcome.errors
        assert outcome.images == []
        assert error.startswith(f"the LoRA {loras[kind]} does not fit StableDiffusionPipeline: "), error
        why = error.partition("StableDiffusionPipeline: ")[2]
        assert "\n" not in error and "\t" not in error and "{" not in error and len(why) < 200, error
    layers, shapes = (outcomes[k].errors[0].partition("StableDiffusionPipeline: ")[2] for k in ("layers", "shapes"))
    example = r"up_blocks\.\d+\.1\.transformer_blocks\.0\.attn1\.to_q"
    assert re.fullmatch(rf"none of its 40 target layers is in the model \(e\.g\. {example}\)", layers), layers
    q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    assert shapes == (
        f"2 of its weights have other shapes than the model's (e.g. {q}.lora_A.lora1.weight: 4x999 in the LoRA, "
        "4x32 in the model)"
    ), shapes


def test_lora_through_the_cli(zoo: Any, sd_lora: Path, tmp_path: Path) -> None:
    from imagegen_cli.cli.app import app

    args = ["generate", "a fox", "-m", f"local:{zoo('sd')}", "--size", "32x32", "--steps", "2", "--seed", "3"]
    result = CliRunner().invoke(app, [*args, "--lora", f"{sd_lora}:0.7", "-o", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    (image,) = json.loads(result.stdout)["images"]
    from PIL import Image

    with Image.open(image["path"]) as img:
        assert json.loads(img.text["imagegen"])["loras"] == [{"source": str(sd_lora), "scale": 0.7}]
    bad = CliRunner().invoke(app, [*args, "--lora", "x:nan", "--dry-run"])
    assert bad.exit_code == 2 and "invalid --lora" in bad.output


# ----------------------------------------------------------------------------------------------- --scheduler
def test_scheduler_swap_and_refusal(zoo: Any, tmp_path: Path) -> None:
    base = generate(zoo("sd"), tmp_path / "a", n=1, steps=3)
    karras = generate(zoo("sd"), tmp_path / "b", n=1, steps=3, options={"scheduler": "DPM++ 2M Karras"})
    assert karras.errors == [] and karras.metadata()["scheduler"] == "DPMSolverMultistepScheduler"
    assert karras.pixels() != base.pixels()
    lcm = generate(zoo("sd"), tmp_path / "c", n=1, options={"scheduler": "lcm"})
    assert lcm.errors == [] and lcm.metadata()["scheduler"] == "LCMScheduler"
    wrong = generate(zoo("flux"), tmp_path / "d", n=1, options={"scheduler": "euler"})
    assert wrong.images == [] and len(wrong.errors) == 1
    assert "does not fit FluxPipeline: it is a flow-matching model" in wrong.errors[0]
    flow = generate(zoo("flux"), tmp_path / "e", n=1, options={"scheduler": "flow-match"})
    assert flow.errors == []
    backwards = generate(zoo("sd"), tmp_path / "f", n=1, options={"scheduler": "FlowMatch"})
    assert "does not fit StableDiffusionPipeline: it is a diffusion model" in backwards.errors[0]


def test_scheduler_names() -> None:
    from imagegen_cli.errors import UsageError
    from imagegen_cli.local.planning import LocalOptions
    from imagegen_cli.local.schedulers import find_scheduler

    assert find_scheduler("EulerAncestral").name == "euler-a"
    assert find_scheduler("Euler a").name == "euler-a"
    assert find_scheduler("dpm++ 2m").overrides["use_karras_sigmas"] is False
    assert find_scheduler("UniPCMultistepScheduler").name == "unipc"
    with pytest.raises(UsageError, match="unknown --scheduler 'k_lms'"):
        LocalOptions(scheduler="k_lms")


def test_scheduler_matches_plain_diffusers(zoo: Any, tmp_path: Path) -> None:
    from diffusers import DiffusionPipeline, UniPCMultistepScheduler

    outcome = generate(zoo("sdxl"), tmp_path, n=1, steps=3, options={"scheduler": "unipc"})
    pipe = DiffusionPipeline.from_pretrained(zoo("sdxl"))
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    image = pipe(
        "a red fox in the snow",
        num_inference_steps=3,
        height=32,
        width=32,
        generator=[torch.Generator().manual_seed(7)],
    ).images[0]
    assert outcome.pixels() == [image.convert("RGB").tobytes()]


# ------------------------------------------------------------------------------------------------ --quantize
@pytest.mark.skipif(importlib.util.find_spec("optimum") is None, reason="optimum-quanto is not installed")
def test_quantize_8bit_on_cpu_uses_quanto(zoo: Any, tmp_path: Path) -> None:
    outcome = generate(zoo("flux"), tmp_path, n=1, options={"quantize": "8bit"})
    assert outcome.errors == [] and len(outcome.images) == 1
    assert outcome.metadata()["quantize"] == "8bit (optimum-quanto)"
    assert type(outcome.run.call).__name__ == "PipelineCall"
    from tests.zoo import local_engine

    pipe, *_ = local_engine().loaded_pipelines()
    assert type(pipe.transformer.transformer_blocks[0].attn.to_q).__name__ == "QLinear"


def test_quantize_without_a_backend_is_one_line(zoo: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import imagegen_cli.local.weights as weights

    real = weights.installed
    monkeypatch.setattr(weights, "installed", lambda name: False if name.startswith("optimum") else real(name))
    outcome = generate(zoo("flux"), tmp_path, n=1, options={"quantize": "4bit"})
    assert outcome.images == [] and len(outcome.errors) == 1
    error = outcome.result.errors[0]
    assert error.message == "--quantize 4bit on cpu needs optimum-quanto (not installed); bitsandbytes needs a CUDA GPU"
    assert error.hint == "pip install optimum-quanto"


def test_quantize_on_cuda_needs_bitsandbytes(monkeypatch: pytest.MonkeyPatch) -> None:
    import diffusers

    import imagegen_cli.local.weights as weights
    from imagegen_cli.errors import ConfigError

    monkeypatch.setattr(weights, "installed", lambda name: False)
    with pytest.raises(ConfigError, match="needs bitsandbytes"):
        weights.quantization_config(diffusers, "/nowhere", "8bit", "cuda", torch.bfloat16)
    monkeypatch.setattr(weights, "installed", lambda name: True)
    config, backend = weights.quantization_config(diffusers, "/nowhere", "4bit", "cuda", torch.bfloat16)
    assert backend == "bitsandbytes" and config.quant_backend == "bitsandbytes_4bit"
    assert config.quant_kwargs["bnb_4bit_quant_type"] == "nf4"


def test_quantize_and_gguf_flags_are_validated() -> None:
    from imagegen_cli.errors import UsageError
    from imagegen_cli.local.planning import LocalOptions

    with pytest.raises(UsageError, match="invalid --quantize '3bit'"):
        LocalOptions(quantize="3bit")
    with pytest.raises(UsageError, match="--gguf and --quantize both given"):
        LocalOptions(quantize="8bit", gguf="x.gguf")


# ---------------------------------------------------------------------------------------------------- --gguf
def write_gguf(transformer: Any, path: Path) -> Path:
    """The transformer's weights in a GGUF file (diffusers keys; Q8_0 where the shape allows)."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), arch="flux")
    for key, tensor in transformer.state_dict().items():
        data = tensor.float().numpy()
        if data.ndim == 2 and data.shape[-1] % 32 == 0:
            writer.add_tensor(
                key,
                gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0),
                raw_dtype=gguf.GGMLQuantizationType.Q8_0,
            )
        else:
            writer.add_tensor(key, data.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="gguf is not installed")
def test_gguf_transformer(zoo: Any, tmp_path: Path) -> None:
    from diffusers import FluxTransformer2DModel

    transformer = FluxTransformer2DModel.from_pretrained(zoo("flux"), subfolder="transformer")
    path = write_gguf(transformer, tmp_path / "flux-Q8_0.gguf")
    outcome = generate(zoo("flux"), tmp_path / "out", n=1, options={"gguf": str(path)})
    assert outcome.errors == [] and len(outcome.images) == 1
    assert outcome.metadata()["quantize"] == "gguf (flux-Q8_0.gguf)"
    wrong = generate(zoo("sd"), tmp_path / "out2", n=1, options={"gguf": str(path)})
    assert wrong.images == [] and "has none" in wrong.errors[0]


@pytest.mark.parametrize(
    ("files", "variant"),
    [
        (["unet/diffusion_pytorch_model.fp16.safetensors", "text_encoder/model.fp16.safetensors"], "fp16"),
        (["unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors", "vae/model.fp16.bin"], "fp16"),
        (["unet/diffusion_pytorch_model.fp16.safetensors", "vae/diffusion_pytorch_model.safetensors"], None),
        # Sharded plain weights are plain weights: from_pretrained loads them without a variant.
        (["unet/diffusion_pytorch_model-00001-of-00002.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors"],
         None),
        (["unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.bf16.safetensors"], None),
        (["unet/config.json", "unet/diffusion_pytorch_model.safetensors.index.fp16.json"], None),
    ],
)  # fmt: skip
def test_a_folder_holding_one_variant_only_is_detected(files: list[str], variant: str | None, tmp_path: Path) -> None:
    from imagegen_cli.local.planning import detect_variant

    for name in files:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert detect_variant(tmp_path) == variant


# --------------------------------------------------------------------------------------- sizes and CPU notes
def test_huge_sizes_are_refused_before_loading() -> None:
    from imagegen_cli.cli.app import app

    runner = CliRunner()
    huge = runner.invoke(app, ["generate", "x", "-m", "local:tiny", "--size", "99999x99999", "--dry-run"])
    assert huge.exit_code == 2 and "at most 8192 pixels a side" in huge.output
    big = runner.invoke(app, ["generate", "x", "-m", "local:sd-turbo", "--size", "2048x2048", "--dry-run"])
    assert big.exit_code == 2
    assert "too large for local:sd-turbo: more than 1,048,576 pixels (4x its native 512x512)" in big.output
    ok = runner.invoke(app, ["generate", "x", "-m", "local:sd-turbo", "--size", "1024x1024", "--dry-run"])
    assert ok.exit_code == 0


def test_a_slow_cpu_run_is_announced(monkeypatch: pytest.MonkeyPatch) -> None:
    from imagegen_cli.local import planning
    from imagegen_cli.local.planning import LocalOptions, build_local_plan, resolve_source
    from imagegen_cli.request import GenerationRequest, Size

    def plan(size: str, steps: int, device: str = "auto") -> Any:
        request = GenerationRequest(prompt="x", provider="local", model="tiny", size=Size.parse(size), steps=steps)
        return build_local_plan(request, resolve_source("tiny"), LocalOptions(device=device))

    monkeypatch.setattr(planning, "accelerator_likely", lambda: False)
    slow = plan("1280x720", 4)
    assert any("on a CPU will take minutes" in n for n in slow.notes)
    assert not any("minutes" in n for n in plan("64x64", 4).notes)
    monkeypatch.setattr(planning, "accelerator_likely", lambda: True)
    assert not any("minutes" in n for n in plan("1280x720", 4).notes)
    assert any("minutes" in n for n in plan("1280x720", 4, device="cpu").notes)


def test_variant_flag_reaches_from_pretrained(zoo: Any, tmp_path: Path) -> None:
    outcome = generate(zoo("sd"), tmp_path, n=1, options={"variant": "fp16"})  # there are no fp16 files
    assert outcome.images == [] and "--variant fp16" in outcome.errors[0]


def test_new_flags_reach_the_plan_and_are_local_only() -> None:
    from imagegen_cli.cli.app import app

    runner = CliRunner()
    flags = ["--lora", "org/style:0.5", "--lora", "./b", "--scheduler", "Euler a", "--variant", "fp16"]
    result = runner.invoke(
        app, ["generate", "x", "-m", "local:tiny", *flags, "--quantize", "8bit", "--dry-run", "--json"]
    )
    assert result.exit_code == 0, result.output
    local = json.loads(result.stdout)
    assert local["loras"] == [{"source": "org/style", "scale": 0.5}, {"source": "./b", "scale": 1.0}]
    assert (local["scheduler"], local["variant"], local["quantize"]) == ("euler-a", "fp16", "8bit")
    remote = runner.invoke(app, ["generate", "x", "-m", "openai:gpt-image-1.5", "--scheduler", "euler", "--dry-run"])
    assert "--scheduler dropped: local only" in remote.output
    bad = runner.invoke(app, ["generate", "x", "-m", "local:tiny", "--quantize", "2bit", "--dry-run"])
    assert bad.exit_code == 2 and "invalid --quantize '2bit'" in bad.output


# ------------------------------------------------------------------------------------- prompts the encoder cuts
def _adapted_notes(source: Path, prompt: str, negative: str | None = None, **extra: Any) -> list[str]:
    """The notes of mapping a plan onto the loaded pipeline (what a run says), without generating."""
    from diffusers import DiffusionPipeline

    from imagegen_cli.local.calls import adapt
    from imagegen_cli.local.planning import LocalOptions, build_local_plan, resolve_source
    from imagegen_cli.request import GenerationRequest

    request = GenerationRequest(
        prompt=prompt, negative_prompt=negative, provider="local", model=str(source), params=tuple(extra.items())
    )
    plan = build_local_plan(request, resolve_source(str(source)), LocalOptions(device="cpu"))
    call, _ = adapt(DiffusionPipeline.from_pretrained(source), plan)
    return call.notes


LONG = "a lighthouse on a cliff at dusk, waves breaking below, gulls, warm light in the windows, " * 2
# The tiny CLIP tokenizer has one token per character, and spaces only separate words: 146 tokens.
LONG_TOKENS = len(LONG.replace(" ", ""))


def test_a_prompt_longer_than_clip_reads_is_noted_on_the_tiny_pipeline(tmp_path: Path) -> None:
    from imagegen_cli.cli.app import app

    # CLIP reads 75 of the prompt's 146 tokens (77 with its start and end tokens); the rest was cut silently.
    args = ["generate", LONG, "-m", "local:tiny", "--steps", "1", "-o", str(tmp_path), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    expected = f"the prompt is {LONG_TOKENS} tokens; CLIPTextModel reads only the first 75: the rest is ignored"
    assert json.loads(result.stdout)["notes"] == [expected]
    assert f"note: {expected}" in result.stderr.splitlines()
    short = CliRunner().invoke(app, ["generate", "a lighthouse", *args[2:]])
    assert short.exit_code == 0 and json.loads(short.stdout)["notes"] == []


def test_the_longest_text_encoder_decides_whether_a_prompt_is_cut(zoo: Any) -> None:
    sd = _adapted_notes(zoo("sd"), LONG, negative="blurry, " * 20)
    assert sd == [
        f"the prompt is {LONG_TOKENS} tokens; CLIPTextModel reads only the first 75: the rest is ignored",
        "the negative prompt is 140 tokens; CLIPTextModel reads only the first 75: the rest is ignored",
    ]
    assert _adapted_notes(zoo("sd"), "a lighthouse", negative="blurry") == []
    sdxl = _adapted_notes(zoo("sdxl"), LONG)
    assert sdxl == [
        f"the prompt is {LONG_TOKENS} tokens; CLIPTextModel and CLIPTextModelWithProjection read only the first 75: "
        "the rest is ignored"
    ]
    # Flux's CLIP reads 77 tokens for the pooled vector, but its T5 reads max_sequence_length (512): nothing is
    # lost, so nothing is said, unless --param max_sequence_length makes the T5 read less than the prompt.
    assert _adapted_notes(zoo("flux"), LONG) == []
    (cut,) = _adapted_notes(zoo("flux"), LONG, max_sequence_length=64)
    assert re.fullmatch(r"the prompt is \d+ tokens; T5EncoderModel reads only the first 63: the rest is ignored", cut)


# ------------------------------------------------------------------------------------------ per-line options
def test_a_lines_own_scheduler_reaches_its_image_and_not_its_neighbours(zoo: Any, tmp_path: Path) -> None:
    from tests.conftest import run_cli

    prompts = tmp_path / "p.jsonl"
    lines = [
        {"prompt": "a fox", "scheduler": "DPM++ 2M Karras"},
        {"prompt": "a koi"},
        {"prompt": "an owl", "scheduler": "lcm", "device": "cpu"},
    ]
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    args = ["generate", "--prompt-file", str(prompts), "-m", f"local:{zoo('sd')}", "--size", "32x32", "--steps", "2",
            "--seed", "3", "--device", "cpu", "-o", str(tmp_path / "out"), "--json"]  # fmt: skip
    dry = run_cli(*args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    from PIL import Image

    schedulers = {}
    for image in result.json()["images"]:
        with Image.open(image["path"]) as img:
            schedulers[image["line"]] = json.loads(img.text["imagegen"])["scheduler"]
    default = schedulers[2]
    assert schedulers == {1: "DPMSolverMultistepScheduler", 2: default, 3: "LCMScheduler"}
    assert default not in ("DPMSolverMultistepScheduler", "LCMScheduler")


def test_a_lines_local_options_are_checked_like_the_flags(gateway: Any, tmp_path: Path) -> None:
    from tests.conftest import gateway_env, run_cli

    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        json.dumps({"prompt": "a", "scheduler": "no-such-sampler"}) + "\n"
        + json.dumps({"prompt": "b", "device": "gpu"}) + "\n"
        + json.dumps({"prompt": "c", "compile": "yes"}) + "\n"
        + json.dumps({"prompt": "d", "quantize": "3bit"}) + "\n"
    )  # fmt: skip
    result = run_cli("generate", "--prompt-file", str(prompts), "-m", "local:tiny", "-o", str(tmp_path / "o"))
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert [e.split(":")[1].strip() for e in errors] == ["line 1", "line 2", "line 3", "line 4"], result.stderr
    assert result.stderr.count("hint: ") == 1
    remote = tmp_path / "r.jsonl"
    remote.write_text(json.dumps({"prompt": "a", "scheduler": "euler"}) + "\n")
    noted = run_cli("generate", "--prompt-file", str(remote), "-m", "apimart:z-image-turbo", "--dry-run",
                    env=gateway_env(gateway))  # fmt: skip
    assert noted.returncode == 0, noted.stderr
    assert json.loads(noted.stdout.splitlines()[0])["notes"] == [
        '"scheduler" dropped: local only (not used by apimart)'
    ]


def test_the_local_dry_run_shows_the_pipeline_keywords_and_marks_those_decided_after_loading(
    tmp_path: Path,
) -> None:
    from tests.conftest import run_cli

    repo = run_cli("generate", "a fox", "-m", "local:someorg/somerepo", "--seed", "3", "--guidance", "5",
                   "--size", "100x100", "--steps", "7", "--param", "eta=0.5", "--dry-run", "--json",
                   env={"HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert repo.returncode == 0, repo.stderr
    doc = json.loads(repo.stdout)
    [call] = doc["calls"]
    assert call["guidance_scale"] == 5.0 and call["num_inference_steps"] == 7 and call["width"] == 100
    assert doc["pipeline"] is None  # a Hub repo: its class is known once loaded
    decided = doc["decided_after_loading"]
    assert set(decided) == {"width", "height", "guidance_scale", "num_inference_steps", "eta"}
    assert "true_cfg_scale" in decided["guidance_scale"] and "the loaded pipeline" in decided["width"]
    tiny = json.loads(run_cli("generate", "x", "-m", "local:tiny", "--seed", "1", "--dry-run", "--json").stdout)
    assert "StableDiffusionPipeline" in tiny["decided_after_loading"]["width"]
