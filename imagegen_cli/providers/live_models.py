"""``models list --live``: ask a provider's own models endpoint and sort its models by what they make.

Gateways say what a model is in different fields: LiteLLM's ``mode`` (``image_generation``), MKA1's
``model_type`` (``images``), ``type``, or OpenRouter-style ``architecture.output_modalities``. Where the
server says, its word is final; only items that carry no such field are judged by their id. Nothing
the server lists is silently lost: items judged not to be image models are returned as ``hidden``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imagegen_cli.errors import InvalidResponse
from imagegen_cli.providers.registry import ResolvedProvider

if TYPE_CHECKING:
    from imagegen_cli.jsontypes import JSON
    from imagegen_cli.providers.http import GatewayClient

DEFAULT_TIMEOUT = 30.0
_IMAGE_NAME = re.compile(r"image|dall-e|flux|imagen|seedream|diffusion|sdxl|kolors|kling|midjourney", re.IGNORECASE)
_IMAGE_KINDS = {"image", "images", "image_generation", "image_edit", "image-generation", "text-to-image"}


@dataclass
class LiveModels:
    """The server's list split in two: the image models, and every other listed id."""

    images: list[dict[str, Any]] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)

    @property
    def listed(self) -> set[str]:
        return {str(i["id"]) for i in self.images} | set(self.hidden)


def server_kind(item: dict[str, Any]) -> bool | None:
    """True/False when the item's own type fields say whether it makes images; None when they are silent."""
    for key in ("mode", "model_type", "type"):
        value = item.get(key)
        if isinstance(value, str) and value and value.lower() != "model":
            return value.lower() in _IMAGE_KINDS
    architecture = item.get("architecture")
    if isinstance(architecture, dict):
        modalities = architecture.get("output_modalities")
        if isinstance(modalities, list) and modalities:
            return "image" in [str(m).lower() for m in modalities]
    return None


def is_image_model(item: dict[str, Any]) -> bool:
    """The server's type fields first; only an item without any is judged by its id."""
    kind = server_kind(item)
    return kind if kind is not None else bool(_IMAGE_NAME.search(str(item.get("id", ""))))


def fetch_live_models(provider: ResolvedProvider, timeout: float = DEFAULT_TIMEOUT) -> LiveModels:
    """``GET models`` within ``timeout`` seconds overall; raises ImagegenError when there is no usable list."""
    from imagegen_cli.providers.http import run_once

    assert provider.profile.models_path is not None
    url = provider.url(provider.profile.models_path)

    async def work(client: GatewayClient) -> JSON:
        return await client.request_json("GET", url)

    data = run_once(provider, timeout, work, timed_out=f"no answer from its model list within {timeout:g} s")
    items = data.get("data") if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(i, dict) and "id" in i for i in items):
        raise InvalidResponse(f"{provider.name}: its model list has an unusable shape")
    live = LiveModels()
    for item in items:
        if is_image_model(item):
            live.images.append(item)
        else:
            live.hidden.append(str(item["id"]))
    return live
