"""``models list --live``: ask a provider's own models endpoint, keep the image models."""

from __future__ import annotations

import asyncio
from typing import Any

from imagegen_cli.errors import ImagegenError, InvalidResponse
from imagegen_cli.providers.registry import ResolvedProvider


def fetch_live_models(provider: ResolvedProvider, timeout: float = 30) -> list[dict[str, Any]]:
    """``GET models`` → the items that are image models; raises ImagegenError when there is no usable list."""
    from imagegen_cli.model_catalog import live_filter
    from imagegen_cli.providers.http import Deadline, DeadlineExceeded, GatewayClient, make_async_client

    assert provider.profile.models_path is not None
    url = provider.url(provider.profile.models_path)

    async def run() -> Any:
        async with make_async_client() as http:
            return await GatewayClient(provider, Deadline(timeout), http).request_json("GET", url)

    try:
        data = asyncio.run(run())
    except DeadlineExceeded:
        raise ImagegenError(f"{provider.name}: no answer from its model list within {timeout:.0f}s") from None
    items = data.get("data") if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(isinstance(i, dict) and "id" in i for i in items):
        raise InvalidResponse(f"{provider.name}: its model list has an unusable shape")
    return [i for i in items if live_filter(i)]
