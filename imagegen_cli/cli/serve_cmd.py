"""``imagegen serve``: the warm local engine behind OpenAI's images API (``imagegen-cli[serve]``)."""

from __future__ import annotations

import os
import re
import signal
from typing import Annotated

import typer

from imagegen_cli.cli.render import Output, report_errors
from imagegen_cli.errors import UsageError

SERVE_EXAMPLES = """Examples:

\b
  imagegen serve -m local:tiny
  imagegen serve -m local:sdxl-turbo --port 8188 --keep-alive 30m --max-batch 4
  IMAGEGEN_SERVE_API_KEY=secret imagegen serve --host 0.0.0.0 -m local:flux-schnell
  curl -s localhost:8188/v1/images/generations -d '{"model": "tiny", "prompt": "a fox", "seed": 7}'
"""
SERVE_HINT = "install it with: pip install 'imagegen-cli[serve]'"


def parse_duration(text: str) -> float:
    """``10m``, ``30s``, ``1h``, ``0`` (unload at once) or ``-1``/``forever`` (never): seconds (< 0: never)."""
    if text.strip().lower() in ("-1", "forever", "never"):
        return -1.0
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match:
        raise UsageError(f"invalid --keep-alive {text!r}", hint="e.g. 30s, 10m, 1h, 0 (unload at once) or forever")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600}[match[2]]


def serve(
    model: Annotated[
        list[str] | None, typer.Option("-m", "--model", metavar="local:MODEL", help="Load at start; repeatable.")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind; not loopback needs an API key.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8188,
    keep_alive: Annotated[
        str, typer.Option("--keep-alive", metavar="DURATION", help="Unload a model idle this long (30s, 10m, forever).")
    ] = "10m",
    max_batch: Annotated[int, typer.Option("--max-batch", metavar="N", help="Images per pipeline call, 1-32.")] = 4,
    queue: Annotated[int, typer.Option("--queue", metavar="N", help="Requests waiting before 429s.")] = 64,
    api_key_env: Annotated[
        str, typer.Option("--api-key-env", metavar="NAME", help="Environment variable holding the API key.")
    ] = "IMAGEGEN_SERVE_API_KEY",
    device: Annotated[str, typer.Option("--device", metavar="auto|cuda|mps|cpu", help="Where to run.")] = "auto",
    dtype: Annotated[str, typer.Option("--dtype", metavar="auto|bf16|fp16|fp32", help="Precision.")] = "auto",
    compile_model: Annotated[bool, typer.Option("--compile", help="Regional torch.compile, paid at load.")] = False,
) -> None:
    """Serve local models over OpenAI's images API, warm between requests."""
    output = Output(json_mode=False)
    with report_errors(output):
        try:
            import uvicorn

            import imagegen_cli.serve.app as serve_app
        except ImportError:
            raise UsageError("imagegen serve needs the serve extra (Starlette, uvicorn)", hint=SERVE_HINT) from None
        from imagegen_cli.local.hub import require_local_extra
        from imagegen_cli.local.planning import build_local_plan, resolve_source
        from imagegen_cli.local.runner import LocalEngine
        from imagegen_cli.local_options import LocalOptions
        from imagegen_cli.providers.registry import is_loopback
        from imagegen_cli.request import GenerationRequest
        from imagegen_cli.serve.metrics import Metrics
        from imagegen_cli.serve.worker import Worker, preload

        keep = parse_duration(keep_alive)
        if not 1 <= max_batch <= 32:
            raise UsageError(f"--max-batch {max_batch} is out of range", hint="use 1 to 32")
        if not 1 <= queue <= 10_000:
            raise UsageError(f"--queue {queue} is out of range", hint="use 1 to 10000")
        if not 0 <= port <= 65535:
            raise UsageError(f"--port {port} is out of range", hint="use 1 to 65535 (0: any free port)")
        key = os.environ.get(api_key_env) or None
        if not is_loopback(host) and key is None:
            raise UsageError(
                f"--host {host} is not a loopback address: an API key is required",
                hint=f"set {api_key_env} (or --api-key-env NAME), or bind 127.0.0.1",
            )
        names = [ref.removeprefix("local:") for ref in model or ["local:tiny"]]
        require_local_extra(f"local:{names[0]}")
        options = LocalOptions(device=device, dtype=dtype, compile=compile_model)
        engine = LocalEngine()
        metrics = Metrics()
        for name in names:  # checked (and loaded) now: a typo fails at start, not at the first request
            plan = build_local_plan(
                GenerationRequest(prompt="warm-up", provider="local", model=name), resolve_source(name), options
            )
            output.note(f"loading {name}" + (" and compiling it (one warm-up image)" if compile_model else ""))
            seconds = preload(engine, plan, metrics)
            if seconds is not None:
                output.note(f"{name} compiled and warm in {seconds:.1f} s")
        worker = Worker(engine, metrics, keep_alive=keep, queue=queue, max_batch=max_batch)
        state = serve_app.ServeState(worker, metrics, options, names[0], tuple(names), key)
        app = serve_app.create_app(state)
        output.note(f"serving {', '.join(names)} on http://{host}:{port}/v1 (keep-alive {keep_alive})")
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=600)
        server = uvicorn.Server(config)
        # uvicorn's SIGTERM: stop accepting, finish the requests in flight (their jobs), then return: exit 0. It
        # re-raises the signal to the handler it found once it is done: that one must then do nothing (imagegen's
        # own would stop runs that are not there and exit 143).
        signal.signal(signal.SIGTERM, lambda signum, frame: None)
        server.run()
        worker.drain(timeout=60)
