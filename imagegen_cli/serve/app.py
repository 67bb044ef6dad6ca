"""The ASGI application of ``imagegen serve`` (Starlette): OpenAI's images dialect over the warm worker.

``POST /v1/images/generations`` (OpenAI's fields; ``seed``, ``steps``, ``guidance`` and ``negative_prompt`` as
extensions), ``GET /v1/models``, ``GET /health``, ``GET /metrics``, and ``GET /v1/files/NAME`` for answers given as
``url`` (kept in memory for ``URL_LIFETIME``). Errors are OpenAI-shaped: ``{"error": {"message", "type", "param",
"code"}}`` with the matching status. With an API key, every route but ``/health`` wants ``Authorization: Bearer
KEY``, compared in constant time.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from imagegen_cli.errors import ImagegenError, UsageError
from imagegen_cli.jsontypes import loads
from imagegen_cli.local.served import RESERVED_PARAMS
from imagegen_cli.serve.worker import Draining, Job, QueueFull, Worker

if TYPE_CHECKING:
    from imagegen_cli.inputs import SourceImage
    from imagegen_cli.local_options import LocalOptions
    from imagegen_cli.serve.metrics import Metrics

MAX_BODY_BYTES = 1 << 20  # a generation request is a prompt and a few fields
MAX_PROMPT_CHARS = 32000
MAX_N = 10
URL_LIFETIME = 600.0  # an answer given as url stays fetchable this long
MAX_PARAMS = 32
MAX_EDIT_BYTES = 2 * (50 << 20) + (1 << 20)  # an image and a mask at the CLI's bound, and the fields
_KNOWN = {"model", "prompt", "n", "size", "response_format", "seed", "steps", "guidance", "negative_prompt",
          "params", "strength", "input_fidelity", "user", "quality", "output_format"}  # fmt: skip
log = logging.getLogger("imagegen.serve")


class BadRequest(UsageError):
    """A request the server answers 400: its message is the answer's, no hint needed (it is not a command line)."""


@dataclass
class ServeState:
    """What the routes share: the worker, the options every request loads with, the key and the URL store."""

    worker: Worker
    metrics: Metrics
    options: LocalOptions
    default_model: str
    served: tuple[str, ...] = ()  # the -m models: with the catalog's ids, all a client may ask for
    api_key: str | None = None
    files: dict[str, tuple[float, bytes]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """What a client needs to know to send its work here (``imagegen generate`` reads it from /health)."""
        from dataclasses import asdict

        from imagegen_cli import __version__
        from imagegen_cli.local.planning import resolve_source
        from imagegen_cli.local.tiny import TINY_VERSION

        return {
            "imagegen": __version__,
            "models": [{"id": name, "location": resolve_source(name).location} for name in self.served],
            "catalog": True,  # the catalog's models load on first use
            "options": asdict(self.options),
            "auth": self.api_key is not None,
            "max_batch": self.worker.max_batch,
            "edits": True,  # POST /v1/images/edits: --image, --mask, --strength
            "limits": {"prompt": MAX_PROMPT_CHARS, "n": MAX_N, "params": MAX_PARAMS},
            "tiny": TINY_VERSION,  # local:tiny's build: another gives other pixels for the same seed
        }


def error(
    status: int, message: str, kind: str = "invalid_request_error", code: str | None = None, **kw: Any
) -> Response:
    headers = kw.pop("headers", None)
    body = {"error": {"message": message, "type": kind, "param": kw.get("param"), "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(state: ServeState) -> Starlette:
    """The application; ``state`` is also reachable as ``app.state.serve`` (tests hold the worker through it)."""

    def authorized(request: Request) -> bool:
        if state.api_key is None:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {state.api_key}".encode())

    async def generations(request: Request) -> Response:
        return await answer(request, edits=False)

    async def edits(request: Request) -> Response:
        return await answer(request, edits=True)

    async def answer(request: Request, *, edits: bool) -> Response:
        started = time.monotonic()
        if not authorized(request):
            state.metrics.count("unauthorized")
            return error(401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key")
        with tempfile.TemporaryDirectory(prefix="imagegen-serve-") as folder:  # the request's input images
            try:
                job, response_format = await (
                    _parse_form(request, state, Path(folder)) if edits else _parse(request, state)
                )
            except (BadRequest, UsageError) as exc:
                state.metrics.count("invalid")
                return error(400, exc.message + (f" ({exc.hint})" if exc.hint else ""))
            return await respond(request, job, response_format, started, "edits" if edits else "generations")

    async def respond(request: Request, job: Job, response_format: str, started: float, route: str) -> Response:
        try:
            state.worker.submit(job)
        except QueueFull:
            state.metrics.count("queue_full")
            return error(
                429, "the queue is full; retry later", "rate_limit_error", "queue_full", headers={"Retry-After": "1"}
            )
        except Draining:
            return error(503, "the server is stopping", "server_error", "shutting_down", headers={"Retry-After": "5"})
        answer = await _wait(request, state, job)
        if answer is None:
            state.metrics.count("cancelled")
            return Response(status_code=499)
        if isinstance(answer, ImagegenError):
            state.metrics.count("error")
            return error(500, answer.message, "server_error")
        data = []
        for seed, png in answer:
            if response_format == "url":
                name = f"{secrets.token_urlsafe(16)}.png"
                state.files[name] = (time.monotonic() + URL_LIFETIME, png)
                data.append({"url": str(request.url_for("file", name=name)), "seed": seed})
            else:
                data.append({"b64_json": base64.b64encode(png).decode("ascii"), "seed": seed})
        elapsed = time.monotonic() - started
        with state.metrics.lock:
            state.metrics.latency.observe(elapsed)
        state.metrics.count("ok")
        log.info(json.dumps({"route": route, "model": job.plan.source.name, "n": job.n, "seconds": round(elapsed, 3)}))
        return JSONResponse({"created": int(time.time()), "data": data})

    async def models(request: Request) -> Response:
        if not authorized(request):
            return error(401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key")
        from imagegen_cli.local.catalog import LOCAL_MODELS

        ids = dict.fromkeys([state.default_model, *LOCAL_MODELS])
        return JSONResponse(
            {"object": "list", "data": [{"id": i, "object": "model", "owned_by": "imagegen"} for i in ids]}
        )

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", **state.worker.state(), **state.describe()})

    async def metrics(request: Request) -> Response:
        if not authorized(request):
            return error(401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key")
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")

    async def file(request: Request) -> Response:
        now = time.monotonic()
        for name in [n for n, (ends, _) in state.files.items() if ends < now]:
            state.files.pop(name, None)
        kept = state.files.get(request.path_params["name"])
        if kept is None:
            return error(404, "no such file (answers given as url are kept for 10 minutes)", code="not_found")
        return Response(kept[1], media_type="image/png")

    app = Starlette(
        routes=[
            Route("/v1/images/generations", generations, methods=["POST"]),
            Route("/v1/images/edits", edits, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/files/{name}", file, methods=["GET"], name="file"),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]
    )
    app.state.serve = state
    return app


async def _wait(request: Request, state: ServeState, job: Job) -> list[tuple[int, bytes]] | ImagegenError | None:
    """The job's images; None when the client went away first (its work is cancelled)."""
    waiting = asyncio.wrap_future(job.future)
    while True:
        done, _ = await asyncio.wait({waiting}, timeout=0.1)
        if done:
            try:
                return waiting.result()
            except ImagegenError as exc:
                return exc
        if await request.is_disconnected():
            state.worker.cancel(job)
            return None


async def _parse(request: Request, state: ServeState) -> tuple[Job, str]:
    """The request as a planned job (refused here, before it is queued, as the CLI refuses a bad flag)."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"the request body is over {MAX_BODY_BYTES >> 20} MiB")
    try:
        body = loads(raw)  # depth-bounded, as every JSON imagegen reads from outside
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return _plan(body, state)


async def _parse_form(request: Request, state: ServeState, folder: Path) -> tuple[Job, str]:
    """A multipart edit (OpenAI's ``/images/edits``: ``image`` or ``image[]``, ``mask``, and the fields as text)."""
    from starlette.datastructures import UploadFile

    from imagegen_cli.inputs import image_from_bytes

    length = request.headers.get("content-length")
    if length is None or not length.isdigit() or int(length) > MAX_EDIT_BYTES:
        raise BadRequest(f"an edit is a multipart body with a Content-Length of at most {MAX_EDIT_BYTES >> 20} MiB")
    try:
        form = await request.form(max_files=2, max_fields=len(_KNOWN) + 4, max_part_size=MAX_PROMPT_CHARS * 4)
    except Exception as exc:  # noqa: BLE001 - whatever the multipart parser refuses is a bad request
        raise BadRequest(f"the body is not a multipart form ({type(exc).__name__})") from None
    body: dict[str, Any] = {}
    images, mask = [], None
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key not in ("image", "image[]", "mask"):
                raise BadRequest(f"unknown file {key!r} (image, or mask)")
            data = await value.read(MAX_EDIT_BYTES + 1)
            try:
                source = image_from_bytes(data, value.filename or key, "mask" if key == "mask" else "image", folder)
            except UsageError as exc:
                raise BadRequest(exc.message) from None
            if key == "mask":
                mask = source
            else:
                images.append(source)
        else:
            body[key] = _form_value(key, value)
    if not images:
        raise BadRequest("an edit needs an image file (image)")
    return _plan(body, state, tuple(images), mask)


def _form_value(key: str, text: str) -> Any:
    """A form field as the JSON body would have it: counts and seeds as integers, scales as numbers."""
    try:
        if key == "params":
            return loads(text)
        if key in ("n", "seed", "steps"):
            return int(text)
        if key in ("guidance", "strength"):
            return float(text)
    except ValueError:
        raise BadRequest(f"{key} must be {'a JSON object' if key == 'params' else 'a number'}") from None
    return text


def _plan(
    body: dict[str, Any], state: ServeState, images: tuple[SourceImage, ...] = (), mask: SourceImage | None = None
) -> tuple[Job, str]:
    """A request's fields, checked as the CLI checks its flags, and planned by the same code."""
    from imagegen_cli.local.planning import build_local_plan, resolve_source
    from imagegen_cli.request import MAX_SEED, GenerationRequest, Size

    unknown = sorted(set(body) - _KNOWN)
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r}")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest("prompt is required")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise BadRequest(f"prompt is over {MAX_PROMPT_CHARS} characters")
    n = body.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_N:
        raise BadRequest(f"n must be an integer from 1 to {MAX_N}")
    response_format = body.get("response_format") or "b64_json"
    if response_format not in ("b64_json", "url"):
        raise BadRequest("response_format must be b64_json or url")
    size_text = body.get("size")
    size = Size.parse(size_text) if isinstance(size_text, str) and size_text != "auto" else None
    seed = body.get("seed")
    if seed is None:
        seed = secrets.randbelow(2**31)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED - (n - 1):
        # Image i gets seed+i: the last one, seed+n-1, must fit (the CLI's --seed bound, for the same n).
        raise BadRequest("seed must be an integer from 0 to 2^63-n")
    model = str(body.get("model") or state.default_model).removeprefix("local:")
    from imagegen_cli.local.catalog import LOCAL_MODELS

    if model not in state.served and model not in LOCAL_MODELS:
        # A client names a model, never a path or a Hub repo: what loads is the operator's choice (-m).
        raise BadRequest(f"model {model!r} is not served here", hint="GET /v1/models lists them")
    params = body.get("params") or {}
    scalar = (str, int, float, bool)
    if (
        not isinstance(params, dict)
        or len(params) > MAX_PARAMS
        or not all(
            isinstance(k, str) and len(k) <= 64 and k not in RESERVED_PARAMS and (v is None or isinstance(v, scalar))
            for k, v in params.items()
        )
    ):
        raise BadRequest(
            f"params must be an object of at most {MAX_PARAMS} plain values (a pipeline's keywords, not the ones "
            "imagegen sets itself: prompt, width, height, num_inference_steps...)"
        )
    values: dict[str, Any] = {"params": tuple(params.items())}
    for key, kind in (("steps", int), ("guidance", float), ("negative_prompt", str)):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, kind if kind is not float else (int, float)) or isinstance(value, bool):
                raise BadRequest(f"{key} must be a {kind.__name__}")
            values[key] = value
    strength = body.get("strength")
    if strength is not None and (isinstance(strength, bool) or not isinstance(strength, int | float)):
        raise BadRequest("strength must be a number from 0 to 1")
    generation = GenerationRequest(
        prompt=prompt, provider="local", model=model, n=n, size=size, seed=seed, images=images, mask=mask,
        strength=None if strength is None else float(strength), **values,
    )  # fmt: skip
    plan = build_local_plan(generation, resolve_source(model), state.options)
    return Job(plan, seed), response_format
