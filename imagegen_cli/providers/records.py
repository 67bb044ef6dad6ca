"""Provider-side image records (Token360's ``images`` API): list with paging, fetch, delete.

Fetching a record's image gives its bytes or the link to them; writing the file is the driver's
(``backends.records_get``): this module, like every engine, writes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode, urljoin

from imagegen_cli.errors import InvalidResponse
from imagegen_cli.jsontypes import loads
from imagegen_cli.providers.dialects import decode_data_url, image_bytes
from imagegen_cli.providers.registry import ResolvedProvider

if TYPE_CHECKING:
    from imagegen_cli.providers.http import GatewayClient

T = TypeVar("T")

MAX_PAGES = 1000  # a gateway that always says has_more cannot keep us paging forever


def _path(provider: ResolvedProvider, *parts: str) -> str:
    assert provider.profile.records_path is not None
    return provider.url("/".join([provider.profile.records_path.strip("/"), *parts]))


DEFAULT_TIMEOUT = 120.0


def run_records(provider: ResolvedProvider, work: Callable[[GatewayClient], Awaitable[T]], timeout: float) -> T:
    """Run one records operation within ``timeout`` seconds overall (every request and download included)."""
    from imagegen_cli.providers.http import run_once

    return run_once(
        provider,
        timeout,
        work,
        timed_out=f"no answer within --timeout {timeout:g} s",
        hint="the gateway is slow or stalled; try again, or raise --timeout",
    )


def list_records(
    provider: ResolvedProvider,
    *,
    limit: int,
    after: str | None,
    before: str | None,
    order: str,
    all_pages: bool,
    on_page: Callable[[list[dict[str, Any]]], None],
    timeout: float = DEFAULT_TIMEOUT,
) -> int:
    """``GET images?limit=&after=&before=&order=``, following ``has_more`` when asked; returns the record count.

    Each page goes to ``on_page`` before the next one is asked for, and is not kept: ``--all`` over a thousand
    pages holds one page at a time, and the caller prints the records as they come.
    """

    async def work(client: GatewayClient) -> int:
        count = 0
        cursor = after
        for _ in range(MAX_PAGES):
            query = {"limit": limit, "order": order}
            if cursor:
                query["after"] = cursor
            if before:
                query["before"] = before
            data = await client.request_json("GET", _path(provider) + "?" + urlencode(query))
            page = data.get("data") if isinstance(data, dict) else None
            if not isinstance(data, dict) or not isinstance(page, list):
                raise InvalidResponse(f"{provider.name}: unexpected image list shape")
            records = [r for r in page if isinstance(r, dict)]
            on_page(records)
            count += len(records)
            last = data.get("last_id") or (page[-1].get("id") if page and isinstance(page[-1], dict) else None)
            has_more = data.get("has_more")
            del data, page, records  # the next page is read without this one still held
            if not (all_pages and has_more and last and last != cursor):
                break
            cursor = str(last)
        return count

    result: int = run_records(provider, work, timeout)
    return result


def delete_record(provider: ResolvedProvider, record_id: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """``DELETE images/{id}`` (only the owning key may)."""

    async def work(client: GatewayClient) -> None:
        data = await client.request_json("DELETE", _path(provider, record_id))
        if isinstance(data, dict) and data.get("deleted") is False:
            raise InvalidResponse(f"{provider.name}: record {record_id} was not deleted")

    run_records(provider, work, timeout)


async def record_content(client: GatewayClient, provider: ResolvedProvider, record_id: str, via: str) -> bytes | str:
    """``GET images/{id}/content?format=...``: the image's bytes, or the URL to download them from (a redirect, a
    JSON ``url``); a ``data:`` URL is decoded here."""
    from imagegen_cli.providers.job_run import MAX_DOWNLOAD_BYTES

    url = _path(provider, record_id, "content") + "?" + urlencode({"format": via})
    response = await client.send(provider.call("GET", url, extra={"Accept": "*/*"}), max_bytes=MAX_DOWNLOAD_BYTES)
    content_type = response.headers.get("content-type", "")
    target: str | None = None
    if response.status_code in (301, 302, 303, 307, 308):
        target = urljoin(url, response.headers.get("location", ""))
    elif "json" in content_type:
        try:
            data = loads(response.content)
        except ValueError:
            raise InvalidResponse(f"{provider.name}: invalid JSON for record {record_id}") from None
        found = data.get("url") if isinstance(data, dict) else None
        if not isinstance(found, str) or not found:
            raise InvalidResponse(f"{provider.name}: record {record_id} answer carried no url")
        target = found
    if target is not None and target.startswith("data:"):
        return image_bytes(decode_data_url(target, provider.name), f"{provider.name}: record {record_id}")
    if target is None:
        return bytes(response.content)
    return target
