"""``imagegen generate``: flags → GenerationRequest → plan → run → output."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from imagegen_cli.cli.options import JsonOpt, ModelOpt, ProviderOpt, QuietOpt
from imagegen_cli.cli.output import Output, reported
from imagegen_cli.errors import ExitCode, UsageError

# "\b" tells Click not to rewrap the paragraph that follows: examples stay copy-pasteable.
EXAMPLES = """Examples:

\b
  imagegen generate "a red fox in the snow" -m openai:gpt-image-1 --size 1536x1024
  imagegen generate "a red fox" -m apimart:z-image-turbo --ratio 16:9 --resolution 2K -n 2 -o out/
  echo "a lighthouse" | imagegen generate - -m kkiai:flux-kontext-pro --ratio 21:9 --json
  imagegen generate "a cat" -m token360:seedream-4.5 --seed 42 --param watermark=false --dry-run
  imagegen generate "a lighthouse" -m local:tiny -n 2 --seed 7 -o out/
  imagegen generate "a fox" -m local:sdxl-turbo --lora ./pixel-art.safetensors:0.8 --scheduler euler-a
  imagegen generate "a fox" -m local:flux-schnell --quantize 4bit --offload model
  imagegen generate --prompt-file prompts.txt -m openai:dall-e-3 --concurrency 8 --resume -o out/
"""


def generate(
    prompt: Annotated[str | None, typer.Argument(help="The prompt; - reads it from stdin.", show_default=False)] = None,
    model: ModelOpt = None,
    provider: ProviderOpt = None,
    n: Annotated[int, typer.Option("-n", "--n", min=1, help="Number of images.")] = 1,
    size: Annotated[str | None, typer.Option("-s", "--size", metavar="WxH", help="Pixel size.")] = None,
    ratio: Annotated[str | None, typer.Option("-r", "--ratio", metavar="W:H", help="Aspect ratio.")] = None,
    resolution: Annotated[
        str | None, typer.Option("--resolution", metavar="1K|2K|4K", help="Size tier, with --ratio.")
    ] = None,
    quality: Annotated[
        str | None, typer.Option("--quality", metavar="LEVEL", help="standard hd low medium high auto.")
    ] = None,
    style: Annotated[str | None, typer.Option("--style", metavar="vivid|natural", help="Where supported.")] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Image i gets seed+i where the backend takes seeds.")
    ] = None,
    negative_prompt: Annotated[str | None, typer.Option("--negative-prompt", help="Where supported.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Denoising steps, where supported.")] = None,
    guidance: Annotated[float | None, typer.Option("--guidance", help="Guidance scale, where supported.")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", metavar="KEY=VALUE", help="Provider-specific extra sent as-is; repeatable."),
    ] = None,
    response_format: Annotated[
        str | None, typer.Option("--response-format", metavar="url|b64_json", help="Transport choice.")
    ] = None,
    out: Annotated[
        str | None, typer.Option("-o", "--out", metavar="PATH", help="Directory, file name, or - for stdout.")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", metavar="TEMPLATE", help="File-name template, e.g. {date}-{slug}-{index}.{ext}"),
    ] = None,
    fmt: Annotated[str | None, typer.Option("--format", metavar="png|jpeg|webp", help="File format written.")] = None,
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
        str | None, typer.Option("--user", metavar="ID", help="End-user id (the body's user field).")
    ] = None,
    on_behalf_of: Annotated[
        str | None,
        typer.Option("--on-behalf-of", metavar="ID", help="End-user id header (MKA1's X-On-Behalf-Of)."),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", metavar="auto|cuda|mps|cpu", help="Local only: where to run.")
    ] = None,
    dtype: Annotated[
        str | None, typer.Option("--dtype", metavar="auto|bf16|fp16|fp32", help="Local only: precision.")
    ] = None,
    offload: Annotated[
        str | None,
        typer.Option("--offload", metavar="none|model|sequential", help="Local only: CPU offloading to save memory."),
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
            "--quantize", metavar="8bit|4bit", help="Local only: quantized weights (bitsandbytes on CUDA, else quanto)."
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
        int | None, typer.Option("--concurrency", min=1, metavar="K", help="Calls in flight (default per provider).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Batch: skip lines whose images are already saved (via the journal).")
    ] = False,
) -> None:
    """Generate images from a prompt and save them."""
    output = Output(json_mode=json_out, quiet=quiet)
    with reported(output):
        from imagegen_cli.config import load_config
        from imagegen_cli.request import GenerationRequest, Ratio, Size, parse_param, parse_tier
        from imagegen_cli.store.writer import OutputSpec

        config = load_config()
        if prompt_file is not None and prompt is not None:
            raise UsageError("give a PROMPT or --prompt-file, not both")
        if prompt_file is None and prompt is None:
            raise UsageError("no prompt given", hint='imagegen generate "a red fox", or --prompt-file FILE')
        if resume and prompt_file is None:
            raise UsageError("--resume goes with --prompt-file")
        text = _read_prompt(prompt) if prompt is not None else ""
        profiles: Any = None
        provider_name, model_id = "", None
        if prompt_file is None:
            provider_name, model_id, profiles = _resolve_names(model, provider, config)
        local_flags = {
            "--device": device,
            "--dtype": dtype,
            "--offload": offload,
            "--vae-tiling": vae_tiling,
            "--compile": compile_model,
            "--lora": tuple(lora or ()),
            "--quantize": quantize,
            "--gguf": gguf,
            "--scheduler": scheduler,
            "--variant": variant,
        }
        fields: dict[str, Any] = {
            "prompt": text,
            "n": n,
            "size": Size.parse(size) if size else None,
            "ratio": Ratio.parse(ratio) if ratio else None,
            "resolution": parse_tier(resolution) if resolution else None,
            "quality": quality,
            "style": style,
            "seed": seed,
            "negative_prompt": negative_prompt,
            "steps": steps,
            "guidance": guidance,
            "params": tuple(parse_param(p) for p in param or []),
            "response_format": response_format,
            "user": user,
            "on_behalf_of": on_behalf_of,
            "strict": strict,
        }
        fmt = fmt or config.get("format")
        run_timeout = timeout if timeout is not None else float(config.get("timeout", 300))
        if run_timeout <= 0:
            raise UsageError("--timeout must be positive")

        def output_spec() -> OutputSpec:
            return OutputSpec.from_args(
                out,
                default_dir=config.get("output_dir"),
                template=name or config.get("name_template"),
                fmt=fmt,
                overwrite=overwrite,
                metadata=not no_metadata and config.get("metadata", True) is not False,
                n=n,
            )

        if prompt_file is not None:
            batch_args = {
                "model": model,
                "provider": provider,
                "out": out,
                "name": name,
                "fmt": fmt,
                "overwrite": overwrite,
                "metadata": not no_metadata and config.get("metadata", True) is not False,
                "base_url": base_url,
                "local_flags": local_flags,
                "strict": strict,
            }
            _generate_batch(
                output,
                config,
                prompt_file,
                fields,
                batch_args,
                dry_run=dry_run,
                timeout=run_timeout,
                concurrency=concurrency,
                no_wait=no_wait,
                resume=resume,
            )
            return
        if provider_name == "local":
            _generate_local(
                output,
                model_id,
                fields,
                local_flags,
                output_spec,
                dry_run,
                {"--no-wait": no_wait, "--base-url": base_url, "--timeout": timeout},
            )
            return

        from imagegen_cli.jobs import run_remote_job
        from imagegen_cli.providers.planning import build_plan
        from imagegen_cli.providers.registry import resolve_provider

        resolved = resolve_provider(profiles, provider_name, model_id, base_url)
        request = GenerationRequest(provider=provider_name, model=resolved.model, **fields)
        plan = build_plan(request, resolved, output_format=fmt)
        notes = list(plan.notes)
        for flag, value in local_flags.items():
            if value:
                if strict:
                    raise UsageError(f"{flag} dropped: local only", hint=f"remove {flag}, or drop --strict")
                notes.append(f"{flag} dropped: local only (not used by {provider_name})")
        if no_wait and not resolved.profile.is_async:
            notes.append(f"--no-wait dropped: {resolved.name} answers synchronously")
        resolved.check_transport()
        if dry_run:
            _print_dry_run(output, plan, notes)
            return
        resolved.require_key()
        spec = output_spec()
        for note in notes:
            output.note(note)
        result = run_remote_job(
            plan,
            spec,
            output.reporter(),
            notes=notes,
            timeout=run_timeout,
            no_wait=no_wait and resolved.profile.is_async,
            concurrency=concurrency or int(config.get("concurrency", 4)),
        )
        _print_and_exit(output, result)


def _print_and_exit(output: Output, result: Any) -> None:
    """Print a generation's result and exit with its code (0 returns normally)."""
    output.generation(result)
    code = result.exit_code()
    if code != ExitCode.OK:
        raise typer.Exit(int(code))


def _local_options(local_flags: dict[str, Any]) -> Any:
    from imagegen_cli.local.planning import LocalOptions

    return LocalOptions(
        device=local_flags["--device"] or "auto",
        dtype=local_flags["--dtype"] or "auto",
        offload=local_flags["--offload"] or "none",
        vae_tiling=local_flags["--vae-tiling"],
        compile=local_flags["--compile"],
        loras=local_flags.get("--lora", ()),
        quantize=local_flags.get("--quantize"),
        gguf=local_flags.get("--gguf"),
        scheduler=local_flags.get("--scheduler"),
        variant=local_flags.get("--variant"),
    )


def _choose_auto() -> tuple[str, str]:
    """local:auto → (model, the note that says what was chosen and why); imports torch."""
    from imagegen_cli.local.runner import choose_auto, import_stack

    name, why = choose_auto(import_stack()[0])
    return name, f"local:auto → local:{name} ({why})"


def _generate_local(
    output: Output,
    model_id: str | None,
    fields: dict[str, Any],
    local_flags: dict[str, Any],
    output_spec: Any,
    dry_run: bool,
    ignored: dict[str, object],
) -> None:
    from imagegen_cli.jobs import run_local_job
    from imagegen_cli.local.planning import build_local_plan, resolve_source
    from imagegen_cli.request import GenerationRequest

    options = _local_options(local_flags)
    name = model_id or "auto"
    notes: list[str] = []
    if name == "auto":
        name, note = _choose_auto()
        notes.append(note)
    source = resolve_source(name)
    request = GenerationRequest(provider="local", model=name, **fields)
    plan = build_local_plan(request, source, options, ignored=ignored)
    notes.extend(plan.notes)
    if dry_run:
        if output.json_mode:
            output.json({"dry_run": True, "provider": "local", "model": name, "local": plan.describe(), "notes": notes})
        else:
            for note in notes:
                output.note(note)
            output.line(json.dumps(plan.describe(), indent=2, ensure_ascii=False))
        return
    spec = output_spec()
    for note in notes:
        output.note(note)
    result = run_local_job(plan, spec, output.reporter(), notes=notes)
    for note in result.notes[len(notes) :]:
        output.note(note)
    _print_and_exit(output, result)


def _generate_batch(
    output: Output,
    config: dict[str, Any],
    prompt_file: str,
    base: dict[str, Any],
    args: dict[str, Any],
    *,
    dry_run: bool,
    timeout: float,
    concurrency: int | None,
    no_wait: bool,
    resume: bool,
) -> None:
    import sys

    from imagegen_cli.batch import BatchProgress, LineJob, assign_keys, line_fields, read_prompt_file, run_batch
    from imagegen_cli.errors import ImagegenError
    from imagegen_cli.local.planning import build_local_plan, resolve_source
    from imagegen_cli.providers.planning import build_plan
    from imagegen_cli.providers.profiles import LOCAL_PROVIDER
    from imagegen_cli.providers.registry import load_profiles, resolve_provider, split_model
    from imagegen_cli.request import GenerationRequest
    from imagegen_cli.store.writer import OutputSpec

    if args["out"] == "-":
        raise UsageError("-o - writes one image to stdout; a batch writes many", hint="use -o DIR")
    profiles = load_profiles(config)
    names = {*profiles, LOCAL_PROVIDER}
    local_flags = args["local_flags"]
    options = _local_options(local_flags)
    auto_choice: str | None = None
    jobs: list[LineJob] = []
    for line in read_prompt_file(prompt_file):
        values = line.values
        try:
            fields = line_fields(base, values)
            model_arg = values.get("model", args["model"])
            provider_arg = values.get("provider", None if "model" in values else args["provider"])
            provider_name, model_id = split_model(model_arg, provider_arg, config, names)
            spec = OutputSpec.from_args(
                values.get("out", args["out"]),
                default_dir=config.get("output_dir"),
                template=values.get("name", args["name"]) or config.get("name_template"),
                fmt=values.get("format", args["fmt"]),
                overwrite=args["overwrite"],
                metadata=args["metadata"],
                n=fields["n"],
            )
            if spec.file_name is not None:
                raise UsageError("-o names one file; a batch writes many", hint="use -o DIR (and --name)")
            if provider_name == LOCAL_PROVIDER:
                name = model_id or "auto"
                if name == "auto":
                    if auto_choice is None:
                        auto_choice, note = _choose_auto()
                        output.note(note)
                    name = auto_choice
                request = GenerationRequest(provider="local", model=name, **fields)
                plan: Any = build_local_plan(
                    request,
                    resolve_source(name),
                    options,
                    ignored={"--no-wait": no_wait, "--base-url": args["base_url"]},
                )
                jobs.append(LineJob(line, plan, spec, "", local=True))
                continue
            resolved = resolve_provider(profiles, provider_name, model_id, args["base_url"])
            request = GenerationRequest(provider=provider_name, model=resolved.model, **fields)
            plan = build_plan(request, resolved, output_format=spec.fmt)
            for flag, value in local_flags.items():
                if value and args["strict"]:
                    raise UsageError(f"{flag} dropped: local only", hint=f"remove {flag}, or drop --strict")
            resolved.check_transport()
            if not dry_run:
                resolved.require_key()
            jobs.append(LineJob(line, plan, spec, "", local=False))
        except ImagegenError as exc:
            exc.message = f"line {line.number}: {exc.message}"
            raise
    assign_keys(jobs)
    if dry_run:
        described = []
        for job in jobs:
            if job.local:
                described.append({"line": job.line.number, "provider": "local", "local": job.plan.describe()})
                continue
            method, url = job.plan.method_url
            described.append(
                {
                    "line": job.line.number,
                    "provider": job.plan.provider.name,
                    "model": job.plan.provider.model,
                    "notes": list(job.plan.notes),
                    "calls": [
                        {"method": method, "url": url, "headers": job.plan.headers(c, redact_key=True), "body": c.body}
                        for c in job.plan.calls
                    ],
                }
            )
        if output.json_mode:
            output.json({"dry_run": True, "lines": described})
        else:
            for item in described:
                output.line(json.dumps(item, ensure_ascii=False))
        return
    live = sys.stderr.isatty() and not __import__("os").environ.get("CI")
    progress = BatchProgress(
        len(jobs), live=live, quiet=output.quiet, emit_path=None if output.json_mode else output.line
    )
    outcome = run_batch(
        jobs,
        progress,
        timeout=timeout,
        concurrency=concurrency,
        config_concurrency=config.get("concurrency"),
        no_wait=no_wait,
        resume=resume,
    )
    if output.json_mode:
        output.json(outcome.document())
    elif no_wait:
        for job in jobs:
            if job.result is not None and job.result.job_id:
                output.line(job.result.job_id)
    output.note(outcome.summary)
    code = outcome.exit_code()
    if code != ExitCode.OK:
        raise typer.Exit(int(code))


def _read_prompt(prompt: str) -> str:
    if prompt != "-":
        return prompt
    if sys.stdin.isatty():
        raise UsageError(
            "PROMPT is - but stdin is a terminal",
            hint='pipe the prompt in: echo "a fox" | imagegen generate -',
        )
    text = sys.stdin.read()
    return text.strip("\r\n")


def _resolve_names(model: str | None, provider: str | None, config: dict[str, Any]) -> tuple[str, str | None, Any]:
    from imagegen_cli.providers.profiles import LOCAL_PROVIDER
    from imagegen_cli.providers.registry import load_profiles, split_model

    profiles = load_profiles(config)
    names = {*profiles, LOCAL_PROVIDER}
    provider_name, model_id = split_model(model, provider, config, names)
    return provider_name, model_id, profiles


def _print_dry_run(output: Output, plan: Any, notes: list[str]) -> None:
    method, url = plan.method_url
    calls = [
        {"method": method, "url": url, "headers": plan.headers(call, redact_key=True), "body": call.body}
        for call in plan.calls
    ]
    if output.json_mode:
        output.json(
            {
                "dry_run": True,
                "provider": plan.provider.name,
                "model": plan.provider.model,
                "calls": calls,
                "notes": notes,
            }
        )
        return
    for note in notes:
        output.note(note)
    for number, call in enumerate(calls, 1):
        if len(calls) > 1:
            output.line(f"# call {number} of {len(calls)}")
        output.line(f"{call['method']} {call['url']}")
        for key, value in call["headers"].items():
            output.line(f"{key}: {value}")
        output.line("")
        output.line(json.dumps(call["body"], ensure_ascii=False, indent=2))
        if number < len(calls):
            output.line("")
