"""``imagegen generate``: flags → typed options → the core (``api``) → output. No logic of its own."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from imagegen_cli.cli.options import (
    JsonOpt,
    ModelOpt,
    ProviderOpt,
    QuietOpt,
    complete_device,
    complete_dtype,
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
from imagegen_cli.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from imagegen_cli.backends import PlannedJob
    from imagegen_cli.options import GenerateOptions, PromptLine
    from imagegen_cli.settings import Settings

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
"""


def generate(
    prompt: Annotated[str | None, typer.Argument(help="The prompt; - reads it from stdin.", show_default=False)] = None,
    model: ModelOpt = None,
    provider: ProviderOpt = None,
    n: Annotated[int, typer.Option("-n", "--n", metavar="N", help="Number of images, 1-100.")] = 1,
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
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Asynchronous providers: submit, print the task ids, return.")
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
            metavar="8bit|4bit",
            help="Local only: quantized weights (bitsandbytes on CUDA, else quanto).",
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
        _refuse_undecodable(
            {"the prompt": prompt if prompt != "-" else None, "--negative-prompt": negative_prompt,
             "--param": param, "--user": user, "--on-behalf-of": on_behalf_of}
        )  # fmt: skip
        settings = load_settings()
        given = {"--device": device, "--dtype": dtype, "--offload": offload, "--vae-tiling": vae_tiling,
                 "--compile": compile_model, "--lora": lora, "--quantize": quantize, "--gguf": gguf,
                 "--scheduler": scheduler, "--variant": variant}  # fmt: skip
        options = GenerateOptions(
            model=model,
            provider=provider,
            request=RequestOptions(
                n=n,
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
                base_url=base_url,
                resume=resume,
            ),
            local_flags_given=tuple(flag for flag, value in given.items() if value),
        )
        batch = prompt_file is not None
        lines = (
            read_prompt_file(prompt_file) if prompt_file is not None else [PromptLine(None, read_prompt(prompt or ""))]
        )
        run_generate(output, lines, options, settings, dry_run=dry_run, batch=batch)


def _refuse_undecodable(texts: dict[str, str | list[str] | None]) -> None:
    """Text from argv that is not UTF-8 (a Latin-1 terminal: Python keeps the bytes as lone surrogates) is a
    usage error here, before it is planned, journalled or sent (where it would fail as "cannot send")."""
    for where, value in texts.items():
        for text in [value] if isinstance(value, str) else value or []:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise UsageError(
                    f"{where} is not valid UTF-8 ({_first_bad_byte(text)})",
                    hint="the terminal sent it in another encoding: use a UTF-8 locale (e.g. LANG=C.UTF-8), "
                    "or save the prompt as UTF-8 and pass --prompt-file FILE",
                ) from None


def _first_bad_byte(text: str) -> str:
    """``byte 0xe9 at position 0``: the first byte of the argument as it arrived that is not UTF-8."""
    try:
        raw = text.encode("utf-8", "surrogateescape")  # the bytes Python decoded argv from
        raw.decode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate"  # not from argv's decoding: no bytes to show
    except UnicodeDecodeError as exc:
        return f"byte 0x{raw[exc.start]:02x} at position {exc.start}"
    return "a lone surrogate"


def run_generate(
    output: Output, lines: list[PromptLine], options: GenerateOptions, settings: Settings, *, dry_run: bool, batch: bool
) -> None:
    """Plan every line, then print the dry run, or run and print the result; exits with the run's code."""
    from imagegen_cli import api
    from imagegen_cli.batch import describe_jobs

    jobs = api.plan(lines, options, settings=settings)
    if dry_run:
        print_dry_run(output, describe_jobs(jobs), batch=batch)
        return
    _require_local_extra(jobs, settings)
    notes: dict[str, list[str]] = {}
    for job in jobs:
        for note in job.plan.notes:
            notes.setdefault(note, []).append(str(job.line.number))
    for note, where in notes.items():
        # A note shared by every line of a batch is said once, not once per line.
        output.note(note if not batch else f"line{'s' if len(where) > 1 else ''} {_span(where)}: {note}")
    run = api.run_batch(lines, options, settings=settings, sink=output.sink(batch=batch), jobs=jobs)
    output.run_result(run, batch=batch)
    code = run.exit_code()
    if code != ExitCode.OK:
        raise typer.Exit(int(code))


def _require_local_extra(jobs: list[PlannedJob], settings: Settings) -> None:
    """A local line on an install without the local extra stops here, before anything is journalled; when no
    model was given or configured (the built-in default), the hint points to a remote model first."""
    from imagegen_cli.local.hub import require_local_extra
    from imagegen_cli.settings import BUILT_IN

    for job in jobs:
        if job.plan.provider_name != "local":
            continue
        unchosen = job.options.model is None and job.options.provider is None
        default = settings.default_model if unchosen and settings.default_model_source == BUILT_IN else None
        require_local_extra(f"local:{job.plan.model_name}", default=default)


def _span(numbers: list[str]) -> str:
    return numbers[0] if len(numbers) == 1 else f"{numbers[0]}-{numbers[-1]}" if len(numbers) > 4 else ",".join(numbers)


# A local plan without --seed describes its seeds as null (local.planning.LocalPlan.describe): say why.
SEED_AT_RUN_TIME = (
    "no --seed: the run draws a random seed when it starts (each image records its own); --seed N fixes it"
)


def print_dry_run(output: Output, described: list[dict[str, Any]], *, batch: bool) -> None:
    """The requests exactly as they would be sent (key redacted), or the pipeline calls of a local model."""
    for each in described:
        if each.get("provider") == "local" and "seed" in each and each["seed"] is None:
            each["notes"] = [*each["notes"], SEED_AT_RUN_TIME]
    if output.json_mode:
        output.json({"dry_run": True, "lines": described} if batch else {"dry_run": True, **described[0]})
        return
    if batch:
        for document in described:
            output.line(json.dumps(document, ensure_ascii=False))
        return
    document = described[0]
    for note in document["notes"]:
        output.note(note)
    calls = document["calls"]
    if not all("method" in call and "url" in call for call in calls):
        # Not HTTP requests (a local pipeline's calls): the plan as JSON.
        output.line(json.dumps({k: v for k, v in document.items() if k != "notes"}, indent=2, ensure_ascii=False))
        return
    for number, call in enumerate(calls, 1):
        if len(calls) > 1:
            output.line(f"# call {number} of {len(calls)}")
        output.line(f"{call['method']} {call['url']}")
        for key, value in call["headers"].items():
            output.line(f"{key}: {value}")
        output.line("")
        if "body_text" in call:
            output.line(call["body_text"])  # the exact bytes sent (UTF-8)
        elif "multipart" in call:
            output.line(json.dumps(call["multipart"], ensure_ascii=False, indent=2))
        if number < len(calls):
            output.line("")
