"""The HTTP client every gateway goes through: deadline, retries, error shapes, auth scoping.

httpx is imported here and only here, and this module is imported only when a request is really
sent, so ``--help``, ``--dry-run`` and the settings commands never pay for it.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from imagegen_cli import __version__
from imagegen_cli.errors import (
    AuthError,
    DownloadError,
    GatewayError,
    InsufficientBalance,
    InvalidResponse,
    clean_text,
)
from imagegen_cli.providers.registry import ResolvedProvider, same_origin
from imagegen_cli.providers.throttle import ProviderThrottle

RETRY_STATUSES = {429, 502, 503, 504}
MAX_JSON_BYTES = 256 * 1024 * 1024  # a b64_json answer with 10 large PNGs stays far below this


class DeadlineExceeded(Exception):
    """The overall ``--timeout`` ran out; callers decide whether that is pending or failed."""


@dataclass
class Deadline:
    """A monotonic deadline shared by every call of one run."""

    seconds: float
    start: float = 0.0

    def __post_init__(self) -> None:
        self.start = time.monotonic()

    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def check(self) -> float:
        left = self.remaining()
        if left <= 0:
            raise DeadlineExceeded
        return left

    async def sleep(self, seconds: float) -> None:
        left = self.check()
        if seconds >= left:
            await asyncio.sleep(max(left, 0))
            raise DeadlineExceeded
        await asyncio.sleep(seconds)


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def error_message(body: bytes, content_type: str = "") -> str:
    """One line from any gateway's error body: error.message, else message, else an excerpt."""
    text = body[:65536].decode("utf-8", "replace")
    try:
        data: Any = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        parts: list[str] = []
        if isinstance(error, dict):
            kind = error.get("type") or error.get("code")
            message = error.get("message") or error.get("msg")
            if message:
                parts.append(str(message))
            if kind and str(kind) not in parts[0:1]:
                parts.insert(0, f"{kind}:")
        elif isinstance(error, str) and error:
            parts.append(error)
        if not parts:
            for key in ("message", "msg", "detail", "error_description"):
                if data.get(key):
                    parts.append(str(data[key]))
                    break
        if parts:
            return clean_text(" ".join(parts), 300)
    if "html" in content_type or text.lstrip().lower().startswith(("<!doctype", "<html")):
        title = re.search(r"(?is)<title[^>]*>(.*?)</title>", text)
        stripped = re.sub(r"(?s)<(script|style).*?</\1>|<[^>]+>", " ", text)
        text = title[1] if title else stripped
    return clean_text(text, 200) or "(empty body)"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, float(parsed.timestamp()) - time.time())


class GatewayClient:
    """Calls one provider with retries inside a shared deadline; turns failures into typed errors."""

    def __init__(
        self,
        provider: ResolvedProvider,
        deadline: Deadline,
        client: httpx.AsyncClient,
        throttle: ProviderThrottle | None = None,
    ) -> None:
        self.provider = provider
        self.deadline = deadline
        self.client = client
        self.throttle = throttle
        self.max_retries = int(_env_float("IMAGEGEN_MAX_RETRIES", 4))
        self.base_delay = _env_float("IMAGEGEN_RETRY_BASE_DELAY", 0.5)
        self.max_delay = 20.0

    def _auth_headers(self, url: str) -> dict[str, str]:
        # Keys go only to the provider's own origin: never to a CDN or any other host.
        if self.provider.key and same_origin(url, self.provider.base_url):
            return {"Authorization": f"Bearer {self.provider.key}"}
        return {}

    def _backoff(self, attempt: int) -> float:
        delay: float = min(self.max_delay, self.base_delay * 2.0**attempt)
        return delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not cryptography

    def _timeout(self) -> httpx.Timeout:
        left = self.deadline.check()
        return httpx.Timeout(
            connect=min(10.0, left), read=min(120.0, left), write=min(60.0, left), pool=min(10.0, left)
        )

    async def request_json(
        self,
        method: str,
        url: str,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send one request, retrying transient failures; return the decoded JSON body."""
        response = await self.send(method, url, body=body, headers=headers)
        if len(response.content) > MAX_JSON_BYTES:
            raise InvalidResponse(f"{self.provider.name}: response too large ({len(response.content)} bytes)")
        try:
            return response.json()
        except ValueError:
            excerpt = error_message(response.content, response.headers.get("content-type", ""))
            raise InvalidResponse(
                f"{self.provider.name}: invalid JSON in response (HTTP {response.status_code}): {excerpt}",
                hint="the gateway may be down or the base URL may be wrong",
            ) from None

    async def _attempt(
        self, method: str, url: str, body: dict[str, Any] | None, headers: dict[str, str]
    ) -> httpx.Response | httpx.TransportError:
        """One request, inside the provider's throttle; a transport error is returned, not raised."""
        if self.throttle is not None:
            await self.throttle.acquire()
        status: int | None = None
        retry_after: float | None = None
        try:
            response = await self.client.request(method, url, json=body, headers=headers, timeout=self._timeout())
            status, retry_after = response.status_code, _retry_after(response)
            return response
        except httpx.TimeoutException:
            raise DeadlineExceeded from None
        except httpx.TransportError as exc:
            return exc
        finally:
            if self.throttle is not None:
                await self.throttle.release(status, retry_after)

    async def send(
        self, method: str, url: str, *, body: dict[str, Any] | None, headers: dict[str, str] | None
    ) -> httpx.Response:
        """Send with retries (connection errors, 429, 502-504) inside the deadline; raise typed errors."""
        sent_headers = self.provider.headers_for(url, headers if body is not None else None)
        attempt = 0
        while True:
            outcome = await self._attempt(method, url, body, sent_headers)
            if isinstance(outcome, httpx.TransportError):
                if attempt >= self.max_retries:
                    host = urlsplit(url).netloc
                    reason = clean_text(str(outcome) or type(outcome).__name__, 200)
                    raise GatewayError(
                        f"{self.provider.name}: cannot reach {host}: {reason}",
                        hint="check the network and the base URL (--base-url)",
                    ) from None
                await self.deadline.sleep(self._backoff(attempt))
                attempt += 1
                continue
            response = outcome
            # A rate limit is worth a few more tries than an outage: the throttle is already slowing down.
            retries = max(self.max_retries, 8) if response.status_code == 429 and self.throttle else self.max_retries
            if response.status_code in RETRY_STATUSES and attempt < retries:
                wait = _retry_after(response)
                if wait is not None and wait > self.deadline.remaining():
                    # Sleeping past the deadline helps nobody: report the rate limit now.
                    raise self._error(response)
                await self.deadline.sleep(wait if wait is not None else self._backoff(attempt))
                attempt += 1
                continue
            if response.status_code >= 400:
                raise self._error(response)
            return response

    def _error(self, response: httpx.Response) -> GatewayError | AuthError:
        status = response.status_code
        message = error_message(response.content, response.headers.get("content-type", ""))
        name = self.provider.name
        if status in (401, 403):
            return AuthError(
                f"{name}: HTTP {status} {message}",
                hint=f"check the key in {self.provider.key_vars()[0]} or run: imagegen keys set {name}",
            )
        if status == 402:
            return InsufficientBalance(
                f"{name}: insufficient balance (HTTP 402): {message}",
                status=status,
                hint="top up the account; nothing was charged",
            )
        if status == 429:
            return GatewayError(
                f"{name}: rate limited (HTTP 429): {message}",
                status=status,
                hint="wait and retry, or raise --timeout",
            )
        if status == 502:
            return GatewayError(f"{name}: upstream provider error (HTTP 502): {message}", status=status)
        return GatewayError(f"{name}: HTTP {status}: {message}", status=status)

    async def download(self, url: str, sink: Any, max_bytes: int) -> str:
        """Stream an image into ``sink`` (a binary file); returns the Content-Type."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise DownloadError(f"{self.provider.name}: refusing to download from {parts.scheme or 'a relative'} URL")
        attempt = 0
        while True:
            sink.seek(0)
            sink.truncate()
            try:
                # Redirects are followed by httpx, which drops Authorization when the origin changes.
                async with self.client.stream(
                    "GET",
                    url,
                    headers={"User-Agent": f"imagegen/{__version__}", **self._auth_headers(url)},
                    timeout=self._timeout(),
                    follow_redirects=True,
                ) as response:
                    if response.status_code in RETRY_STATUSES and attempt < self.max_retries:
                        wait = _retry_after(response)
                        await self.deadline.sleep(wait if wait is not None else self._backoff(attempt))
                        attempt += 1
                        continue
                    if response.status_code >= 400:
                        body = await response.aread()
                        reason = (
                            "the link has expired or is not allowed" if response.status_code in (403, 404, 410) else ""
                        )
                        raise DownloadError(
                            f"{self.provider.name}: image download failed (HTTP {response.status_code} from "
                            f"{parts.hostname}): {error_message(body, response.headers.get('content-type', ''))}",
                            hint=reason or None,
                            status=response.status_code,
                        )
                    total = 0
                    async for chunk in response.aiter_bytes(1 << 16):
                        total += len(chunk)
                        if total > max_bytes:
                            raise DownloadError(f"{self.provider.name}: image larger than {max_bytes} bytes")
                        sink.write(chunk)
                    sink.flush()
                    return str(response.headers.get("content-type", ""))
            except httpx.TimeoutException:
                raise DeadlineExceeded from None
            except httpx.TransportError as exc:
                if attempt >= self.max_retries:
                    raise DownloadError(
                        f"{self.provider.name}: image download from {parts.hostname} failed: "
                        f"{clean_text(str(exc) or type(exc).__name__, 200)}"
                    ) from None
                await self.deadline.sleep(self._backoff(attempt))
                attempt += 1


def make_async_client() -> httpx.AsyncClient:
    """The shared client: no environment proxies for loopback, sane pool limits."""
    return httpx.AsyncClient(
        follow_redirects=False,
        limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        trust_env=True,
    )
