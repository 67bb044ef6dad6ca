"""``imagegen generate``: flags → typed options → the core (``api``) → output. No logic of its own."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from imagegen_cli.cli.argv_text import refuse_undecodable
from imagegen_cli.cli.options import (
    JsonOpt,
    ModelOpt,
    ProviderOpt,
    QuietOpt,
    complete_device,
    complete_dtype,
    complete_engine,
    complete_format,
    complete_offload,
    complete_quality,
    complete_quantize,
    complete_ratio,
    complete_resolution,
    complete_response_format,
    complete_scheduler,
    complete_style,
)
from imagegen_cli.cli.render import Output, report_errors
from imagegen_cli.cli.run_generate import run_generate
from imagegen_cli.errors import UsageError
from imagegen_cli.inputs import check_stdin_readers

if TYPE_CHECKING:
    from imagegen_cli.inputs import SourceImage
    from imagegen_cli.replay import Replay

# "\b" tells Click not to rewrap the paragraph that follows: examples stay copy-pasteable.
EXAMPLES = """Examples:

\b
  imagegen generate "a red fox in the snow" -m openai:gpt-image-1.5 --size 1536x1024
  imagegen generate "a red fox" -m apimart:z-image-turbo --ratio 16:9 --resolution 2K -n 2 -o out/
  echo "a lighthouse" | imagegen generate - -m kkiai:flux-kontext-pro --ratio 21:9 --json
  imagegen generate "a cat" -m token360:seedream-4.5 --seed 42 --param watermark=false --dry-run
  imagegen generate "a lighthouse" -m local:tiny -n 2 --seed 7 -o out/
  imagegen generate "a fox" -m local:sdxl-turbo --lora ./pixel-art.safetensors:0.8 --scheduler euler-a
  imagegen generate "a fox" -m local:flux-schnell --quantize 4bit --offload model
  imagegen generate --prompt-file prompts.txt -m openai:gpt-image-1.5 --concurrency 8 --resume -o out/
  imagegen generate "make it winter" -m openai:gpt-image-1.5 --image photo.jpg --mask sky.png
  imagegen generate "oil painting" -m local:tiny --image photo.png --strength 0.6
  imagegen generate --from out/20261204-fox-1.png --steps 30
  imagegen generate --prompt-file prompts.txt -m local:sdxl-turbo --engine ray --ray-address auto -o out/
"""


def generate(
    prompt: Annotated[str | None, typer.Argument(help="The prompt; - reads it from stdin.", show_default=False)] = None,
    model: ModelOpt = None,
    provider: ProviderOpt = None,
    n: Annotated[
        int | None, typer.Option("-n", "--n", metavar="N", help="Number of images, 1-100 [default: 1].")
    ] = None,
    size: Annotated[str | None, typer.Option("-s", "--size", metavar="WxH", help="Pixel size.")] = None,
    ratio: Annotated[
        str | None,
        typer.Option("-r", "--ratio", metavar="W:H", help="Aspect ratio.", autocompletion=complete_ratio),
    ] = None,
    resolution: Annotated[
        str | None,
        typer.Option(
            "--resolution", metavar="1K|2K|4K", help="Size tier, with --ratio.", autocompletion=complete_resolution
        ),
    ] = None,
    quality: Annotated[
        str | None,
        typer.Option(
            "--quality",
            metavar="LEVEL",
            help="standard hd low medium high auto xhigh max.",
            autocompletion=complete_quality,
        ),
    ] = None,
    style: Annotated[
        str | None,
        typer.Option("--style", metavar="vivid|natural", help="Where supported.", autocompletion=complete_style),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            metavar="INT",
            help="Image i gets seed+i where the backend takes seeds; 0 to 2⁶³−1 for every seed+i.",
        ),
    ] = None,
    negative_prompt: Annotated[
        str | None, typer.Option("--negative-prompt", metavar="TEXT", help="What to avoid.")
    ] = None,
    steps: Annotated[int | None, typer.Option("--steps", metavar="N", help="Denoising steps, where supported.")] = None,
    guidance: Annotated[float | None, typer.Option("--guidance", metavar="X", help="Guidance scale.")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", metavar="KEY=VALUE", help="Provider-specific extra sent as-is; repeatable."),
    ] = None,
    response_format: Annotated[
        str | None,
        typer.Option(
            "--response-format",
            metavar="url|b64_json",
            help="Transport choice.",
            autocompletion=complete_response_format,
        ),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--out",
            metavar="PATH",
            help="Directory (made if missing), a file in an existing folder, or - for stdout.",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", metavar="TEMPLATE", help="File-name template, e.g. {date}-{slug}-{index}.{ext}"),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            metavar="png|jpeg|webp|gif|svg",
            help="File format written.",
            autocompletion=complete_format,
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Allow replacing the file named by -o FILE.")] = False,
    no_metadata: Annotated[bool, typer.Option("--no-metadata", help="Do not embed generation parameters.")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the request(s) and send nothing.")] = False,
    preview: Annotated[
        bool, typer.Option("--preview", help="Draw each saved image in the terminal (kitty, iTerm2, sixel, text).")
    ] = False,
    gallery: Annotated[
        bool, typer.Option("--gallery", help="Also write an HTML contact sheet of the saved images; print its path.")
    ] = False,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Asynchronous providers: submit, print the task ids, return.")
    ] = False,
    no_server: Annotated[
        bool, typer.Option("--no-server", help="Local models: run in this process, not on a running imagegen serve.")
    ] = False,
    engine: Annotated[
        str | None,
        typer.Option(
            "--engine",
            metavar="local|ray",
            help="Local models: in this process, or on a Ray cluster's workers.",
            autocompletion=complete_engine,
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address", metavar="auto|ray://HOST:PORT", help="--engine ray: the cluster [default: a local one]."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", metavar="N", help="--engine ray: actors, each with a pipeline [default: 1 per GPU]."),
    ] = None,
    gpus_per_worker: Annotated[
        float | None, typer.Option("--gpus-per-worker", metavar="G", help="--engine ray: GPUs per actor (0 on CPUs).")
    ] = None,
    worker_writes: Annotated[
        bool, typer.Option("--worker-writes", help="--engine ray: workers write the files (a folder all nodes share).")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", metavar="SECONDS", help="Overall bound for remote work [default: 300]."),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Treat dropped or approximated parameters as errors.")
    ] = False,
    base_url: Annotated[str | None, typer.Option("--base-url", metavar="URL", help="Override the base URL.")] = None,
    user: Annotated[
        str | None,
        typer.Option(
            "--user", metavar="ID", help="End-user id (safety_identifier on current OpenAI models, user elsewhere)."
        ),
    ] = None,
    on_behalf_of: Annotated[
        str | None,
        typer.Option("--on-behalf-of", metavar="ID", help="End-user id header (MKA1's X-On-Behalf-Of)."),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device", metavar="auto|cuda|mps|cpu", help="Local only: where to run.", autocompletion=complete_device
        ),
    ] = None,
    dtype: Annotated[
        str | None,
        typer.Option(
            "--dtype", metavar="auto|bf16|fp16|fp32", help="Local only: precision.", autocompletion=complete_dtype
        ),
    ] = None,
    offload: Annotated[
        str | None,
        typer.Option(
            "--offload",
            metavar="none|model|sequential",
            help="Local only: CPU offloading to save memory.",
            autocompletion=complete_offload,
        ),
    ] = None,
    vae_tiling: Annotated[
        bool, typer.Option("--vae-tiling", help="Local only: decode in tiles (large images).")
    ] = False,
    compile_model: Annotated[
        bool, typer.Option("--compile", help="Local only: regional torch.compile of the repeated blocks.")
    ] = False,
    lora: Annotated[
        list[str] | None,
        typer.Option(
            "--lora",
            metavar="PATH|ORG/NAME[:SCALE]",
            help="Local only: apply a LoRA (scale 1 by default); repeatable. e.g. --lora ./style.safetensors:0.8",
        ),
    ] = None,
    quantize: Annotated[
        str | None,
        typer.Option(
            "--quantize",
            metavar="8bit|4bit|fp8",
            help="Local only: quantized weights (bitsandbytes on CUDA, else quanto; fp8: torchao, CUDA 8.9+).",
            autocompletion=complete_quantize,
        ),
    ] = None,
    gguf: Annotated[
        str | None,
        typer.Option("--gguf", metavar="FILE", help="Local only: load the transformer from a single GGUF file."),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            metavar="NAME",
            help="Local only: euler, euler-a, dpm++2m, dpm++2m-karras, unipc, ddim, lcm, flow-match...",
            autocompletion=complete_scheduler,
        ),
    ] = None,
    variant: Annotated[
        str | None,
        typer.Option("--variant", metavar="NAME", help="Local only: weight files *.NAME.safetensors, e.g. fp16."),
    ] = None,
    image: Annotated[
        list[str] | None,
        typer.Option(
            "--image",
            metavar="PATH|URL|-",
            help="Start from this image (edit, img2img); repeatable; - reads it from stdin.",
        ),
    ] = None,
    mask: Annotated[
        str | None,
        typer.Option(
            "--mask", metavar="PATH", help="Inpainting: where to change (transparent pixels, or white on black)."
        ),
    ] = None,
    strength: Annotated[
        float | None,
        typer.Option("--strength", metavar="0..1", help="img2img: how far from the input image (local models)."),
    ] = None,
    input_fidelity: Annotated[
        str | None,
        typer.Option("--input-fidelity", metavar="low|high", help="How closely to keep the input's features."),
    ] = None,
    replay: Annotated[
        str | None,
        typer.Option("--from", metavar="IMAGE", help="Replay the parameters stored in IMAGE; flags override them."),
    ] = None,
    prompt_file: Annotated[
        str | None,
        typer.Option(
            "--prompt-file",
            metavar="FILE",
            help="Batch: one prompt per line, or JSON Lines with per-line options; - reads stdin.",
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", metavar="K", help="Calls in flight, 1-64 (default per provider).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Batch: skip lines whose images are already saved (via the journal).")
    ] = False,
) -> None:
    """Generate images from a prompt and save them."""
    output = Output(json_mode=json_out, quiet=quiet)
    with report_errors(output):
        from imagegen_cli.local_options import LocalOptions
        from imagegen_cli.options import (
            ClusterOptions,
            GenerateOptions,
            OutputOptions,
            PromptLine,
            RequestOptions,
            RunOptions,
            read_prompt,
            read_prompt_file,
        )
        from imagegen_cli.request import Ratio, Size, parse_param, parse_tier
        from imagegen_cli.settings import load_settings

        check_stdin_readers(image or [], mask, prompt_reads=prompt_file == "-" or prompt == "-")
        stored = None
        if replay is not None:
            from imagegen_cli.replay import read_replay

            if prompt_file is not None:
                raise UsageError("--from replays one image, not a --prompt-file batch", hint="drop one of them")
            stored = read_replay(replay)
            prompt = prompt if prompt is not None else stored.prompt
            model = model if model is not None or provider is not None else stored.model_ref
        if prompt_file is not None and prompt is not None:
            raise UsageError("give a PROMPT or --prompt-file, not both")
        if prompt_file is None and prompt is None:
            raise UsageError("no prompt given", hint='imagegen generate "a red fox", or --prompt-file FILE')
        if resume and prompt_file is None:
            raise UsageError("--resume goes with --prompt-file")
        if out == "-" and json_out:
            raise UsageError("-o - writes the image to stdout, where --json would go", hint="drop one of them")
        if out == "-" and sys.stdout.isatty() and not dry_run:
            raise UsageError(
                "-o - would write binary image data to the terminal", hint="redirect it: ... -o - > image.png"
            )
        refuse_undecodable(
            {"the prompt": prompt if prompt != "-" else None, "--negative-prompt": negative_prompt,
             "--param": param, "--user": user, "--on-behalf-of": on_behalf_of}
        )  # fmt: skip
        settings = load_settings()
        if stored is not None:
            given_values = {"n": n, "size": size, "ratio": ratio, "resolution": resolution, "quality": quality,
                            "style": style, "seed": seed, "negative_prompt": negative_prompt, "steps": steps,
                            "guidance": guidance, "param": param, "strength": strength,
                            "input_fidelity": input_fidelity, "lora": lora, "quantize": quantize,
                            "scheduler": scheduler, "variant": variant}  # fmt: skip
            # the same keys, in order: each given, or else stored
            filled = stored.fill(given_values, bool(image), other_model=stored.other_than(model))
            (n, size, ratio, resolution, quality, style, seed, negative_prompt, steps, guidance, param, strength,
             input_fidelity, lora, quantize, scheduler, variant) = filled.values()  # fmt: skip
        inputs, mask_input = _load_inputs(image, mask, stored)
        given = {"--device": device, "--dtype": dtype, "--offload": offload, "--vae-tiling": vae_tiling,
                 "--compile": compile_model, "--lora": lora, "--quantize": quantize, "--gguf": gguf,
                 "--scheduler": scheduler, "--variant": variant, "--no-server": no_server, "--engine": engine,
                 "--ray-address": ray_address, "--workers": workers, "--gpus-per-worker": gpus_per_worker,
                 "--worker-writes": worker_writes}  # fmt: skip
        options = GenerateOptions(
            model=model,
            provider=provider,
            request=RequestOptions(
                n=1 if n is None else n,
                size=Size.parse(size) if size else None,
                ratio=Ratio.parse(ratio) if ratio else None,
                resolution=parse_tier(resolution) if resolution else None,
                quality=quality,
                style=style,
                seed=seed,
                negative_prompt=negative_prompt,
                steps=steps,
                guidance=guidance,
                params=tuple(parse_param(p) for p in param or []),
                response_format=response_format,
                user=user,
                on_behalf_of=on_behalf_of,
                strict=strict,
                images=inputs,
                mask=mask_input,
                strength=strength,
                input_fidelity=input_fidelity,
            ),
            output=OutputOptions(out=out, name=name, format=fmt, overwrite=overwrite, metadata=not no_metadata),
            local=LocalOptions(
                device=device or "auto",
                dtype=dtype or "auto",
                offload=offload or "none",
                vae_tiling=vae_tiling,
                compile=compile_model,
                loras=tuple(lora or ()),
                quantize=quantize,
                gguf=gguf,
                scheduler=scheduler,
                variant=variant,
            ),
            run=RunOptions(
                timeout=timeout,
                concurrency=concurrency,
                no_wait=no_wait,
                no_server=no_server,
                engine=engine,
                cluster=ClusterOptions(ray_address, workers, gpus_per_worker, worker_writes),
                base_url=base_url,
                resume=resume,
            ),
            local_flags_given=tuple(flag for flag, value in given.items() if value),
        )
        batch = prompt_file is not None
        lines = (
            read_prompt_file(prompt_file) if prompt_file is not None else [PromptLine(None, read_prompt(prompt or ""))]
        )
        run_generate(output, lines, options, settings, dry_run=dry_run, batch=batch, preview=preview, gallery=gallery)


def _load_inputs(
    image: list[str] | None, mask: str | None, stored: Replay | None
) -> tuple[tuple[SourceImage, ...], SourceImage | None]:
    """``--image`` and ``--mask`` read and checked; with ``--from`` and none given, the replayed image's own."""
    from imagegen_cli.inputs import load_input

    images = tuple(load_input(item) for item in image or ())
    mask_input = load_input(mask, "mask") if mask is not None else None
    if stored is not None:
        images, mask_input = stored.inputs(images, mask_input)
    return images, mask_input
