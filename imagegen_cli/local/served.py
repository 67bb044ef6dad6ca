"""Local models on a running ``imagegen serve``: finding it, and judging whether it can make a plan.

The local engine asks :func:`find_server` once per run. When a server answers at the configured address
(the ``server`` setting, ``IMAGEGEN_SERVER``) and :meth:`Server.refusal` finds nothing against a job (the same
model, the same local options, what the server takes), ``local/served_run.py`` sends the job there and emits what
comes back as an in-process run would. Nothing here imports torch or diffusers, nor httpx or asyncio: a run on the
server is over in a fraction of a second, and its client is the standard library's (``local/served_http.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from imagegen_cli.errors import register_secret

if TYPE_CHECKING:
    from imagegen_cli.local.planning import LocalPlan
    from imagegen_cli.plans import LinePlan

KEY_ENV = "IMAGEGEN_SERVE_API_KEY"  # the key `imagegen serve` wants off loopback; sent only to the server
PROBE_SECONDS = 1.0  # /health answers at once when a server is there; a closed port refuses at once
# The local options the server's must match (an explicit --device/--dtype too); --offload and --compile only
# place or speed up the same computation, so the server's own are used.
_FLAGS = {"vae_tiling": "--vae-tiling", "variant": "--variant", "loras": "--lora", "quantize": "--quantize",
          "gguf": "--gguf", "scheduler": "--scheduler", "device": "--device", "dtype": "--dtype"}  # fmt: skip


@dataclass
class Server:
    """A running ``imagegen serve``, as its ``/health`` describes it."""

    url: str
    models: dict[str, str]  # served id → location
    catalog: bool
    options: dict[str, Any]
    auth: bool
    max_batch: int
    limits: dict[str, int]
    edits: bool = False  # answers /v1/images/edits (--image, --mask, --strength)
    tiny: int = 1  # the build of local:tiny it makes (servers before version 2 did not say: theirs was 1)
    key: str | None = None
    gone: bool = False

    def refusal(self, plan: LocalPlan) -> str | None:
        """Why this server cannot make ``plan`` as this process would; None when it can."""
        from imagegen_cli.local.catalog import LOCAL_MODELS
        from imagegen_cli.local.tiny import TINY_VERSION

        if problem := self.key_problem():
            return problem
        if self.auth and urlsplit(self.url).scheme == "http" and not loopback(self.url):
            return "it is plain http on another host, and the API key is not sent there (use https://)"
        if (plan.request.images or plan.request.mask is not None) and not self.edits:
            return "it takes no input images (--image, --mask)"
        if plan.source.location == "tiny" and self.tiny != TINY_VERSION:
            return f"it makes local:tiny version {self.tiny}, this run version {TINY_VERSION} (restart it)"
        if self.model_id(plan) is None:
            known = plan.source.name in LOCAL_MODELS and not self.catalog
            return f"it does not serve local:{plan.source.name}" + (" (its catalog is off)" if known else "")
        if len(plan.request.prompt) > self.limits.get("prompt", 0):
            return "the prompt is longer than it takes"
        if plan.request.strict:
            return "--strict is judged where the pipeline runs, and its notes stay there"
        if len(plan.extra) > self.limits.get("params", 0):
            return "more --param values than it takes"
        if any(not _plain_param(key, value) for key, value in plan.extra.items()):
            return "it takes only plain --param values (text, numbers, true/false), not imagegen's own keywords"
        if plan.options.loras or plan.options.gguf:
            return "--lora and --gguf name files of this machine"
        for name, flag in _FLAGS.items():
            value, theirs = getattr(plan.options, name), self.options.get(name)
            if name in ("device", "dtype") and value == "auto":
                continue  # the server's own placement: the same pixels, on its device
            if (list(value) if name == "loras" else value) != theirs:
                return f"it runs with {flag} {_shown(theirs)}, this run asks {_shown(value)}"
        return None

    def key_problem(self) -> str | None:
        """Why this run cannot give the server the key it wants; None when it wants none or the key can go."""
        if not self.auth:
            return None
        if not self.key:
            return f"it wants an API key ({KEY_ENV} is not set)"
        if not all("!" <= char <= "~" for char in self.key):  # a line break would end the header early
            return f"{KEY_ENV} has a character an HTTP header cannot carry (a line break, a space, not ASCII)"
        return None

    def model_id(self, plan: LocalPlan) -> str | None:
        """The id the server knows the plan's model by (a served folder by its location), or None."""
        from imagegen_cli.local.catalog import LOCAL_MODELS

        for served, location in self.models.items():
            if location == plan.source.location:
                return served
        return plan.source.name if self.catalog and plan.source.name in LOCAL_MODELS else None


# Keywords imagegen sets itself (the server refuses them as --param: they would bypass its size and count bounds).
RESERVED_PARAMS = frozenset({
    "prompt", "prompt_2", "negative_prompt", "negative_prompt_2", "num_images_per_prompt", "width", "height",
    "num_inference_steps", "guidance_scale", "true_cfg_scale", "prior_guidance_scale", "prior_num_inference_steps",
    "generator", "latents", "output_type", "return_dict", "image", "mask_image", "strength", "prompt_embeds",
    "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds", "callback", "callback_steps",
    "callback_on_step_end", "callback_on_step_end_tensor_inputs", "prior_callback_on_step_end",
})  # fmt: skip


def _plain_param(key: object, value: object) -> bool:
    """A --param the server takes: a short keyword of its own with a plain JSON value."""
    plain = value is None or isinstance(value, str | int | float | bool)
    return isinstance(key, str) and len(key) <= 64 and key not in RESERVED_PARAMS and plain


def _shown(value: object) -> str:
    return "none" if value in (None, [], False) else ",".join(value) if isinstance(value, list) else str(value)


def loopback(url: str) -> bool:
    """True when ``url``'s host is this machine (the providers' one rule: localhost, 127.0.0.0/8, ::1)."""
    from imagegen_cli.providers.registry import is_loopback

    return is_loopback(urlsplit(url).hostname or "")


def find_server(url: str) -> Server | None:
    """The server at ``url`` when it answers ``/health`` as an imagegen server; None otherwise (quickly)."""
    from imagegen_cli.local.served_http import Client

    server = None
    register_secret(os.environ.get(KEY_ENV))  # whatever happens next, it is never printed
    try:
        answer = Client(url).get("/health", timeout=PROBE_SECONDS)
        body: Any = answer.json() if answer.status == 200 else None
    except (OSError, ValueError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("imagegen"), str) and body.get("accepting", True):
        try:
            server = Server(
                url,
                {str(m["id"]): str(m["location"]) for m in body.get("models", [])},
                bool(body.get("catalog")),
                dict(body.get("options") or {}),
                bool(body.get("auth")),
                int(body.get("max_batch") or 1),
                {str(k): int(v) for k, v in (body.get("limits") or {}).items()},
                body.get("edits") is True,
                int(body.get("tiny") or 1),
                os.environ.get(KEY_ENV) or None,
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            server = None  # something else answers there: not a server this version understands
    return server


def served_whole(plan: LinePlan) -> bool:
    """True when a server answers at the plan's address and can make it (an install without torch may run it)."""
    from imagegen_cli.local.planning import LocalPlan

    if not isinstance(plan, LocalPlan) or plan.server is None:
        return False
    server = find_server(plan.server)
    return server is not None and server.refusal(plan) is None
