"""``imagegen tasks records get``: fetch a provider-side record's image (``providers.records``) and write it."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from imagegen_cli.meta import ImageMeta

if TYPE_CHECKING:
    from imagegen_cli.providers.http import GatewayClient
    from imagegen_cli.providers.registry import ResolvedProvider
    from imagegen_cli.store.writer import SavedImage


def download_record(
    provider: ResolvedProvider,
    record_id: str,
    *,
    out: str | None,
    via: str,
    overwrite: bool,
    default_dir: str | None = None,
    timeout: float | None = None,
) -> SavedImage:
    """Save record ``record_id`` under ``out`` (never over another file unless ``overwrite``), within ``timeout``."""
    from imagegen_cli.providers.job_run import MAX_DOWNLOAD_BYTES
    from imagegen_cli.providers.records import DEFAULT_TIMEOUT, record_content, run_records
    from imagegen_cli.store.writer import ImageWriter, OutputSpec

    safe_id = re.sub(r"[^A-Za-z0-9_.-]", "-", record_id)[:80] or "record"
    spec = OutputSpec.from_args(
        out,
        default_dir=default_dir,
        template=f"{{provider}}-{safe_id}.{{ext}}",
        fmt=None,
        overwrite=overwrite,
        metadata=True,
        n=1,
    )
    writer = ImageWriter(spec, prompt=record_id, provider=provider.name, model="", n=1)
    meta = ImageMeta(prompt="", provider=provider.name, model="", index=1, extra={"record": record_id})

    async def work(client: GatewayClient) -> SavedImage:
        content = await record_content(client, provider, record_id, via)
        if isinstance(content, bytes):
            return await asyncio.to_thread(writer.save_bytes, content, index=1, seed=None, meta=meta)
        handle, tmp = writer.temp_file()
        try:
            with handle:
                await client.download(content, handle, MAX_DOWNLOAD_BYTES)
            return await asyncio.to_thread(writer.finish, tmp, index=1, seed=None, meta=meta)
        finally:
            tmp.unlink(missing_ok=True)

    saved: SavedImage = run_records(provider, work, timeout if timeout is not None else DEFAULT_TIMEOUT)
    return saved
