"""The HTTP client every gateway goes through: retries inside one deadline, typed errors, auth scoping.

httpx is imported here (and in :mod:`~imagegen_cli.providers.transport`), and this module is imported only
when a request is really sent, so ``--help``, ``--dry-run`` and the settings commands never pay for it.
The deadline, bounded reads and proxies live in ``transport``; what a failed answer means (its message,
its error, whether to retry) in ``gateway_errors``. What callers need of both is re-exported here (``__all__``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import IO, TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import httpx

from imagegen_cli import __version__
from imagegen_cli.errors import DownloadError, GatewayError, ImagegenError, InvalidResponse, clean_text
from imagegen_cli.jsontypes import TooDeep
from imagegen_cli.providers.calls import HttpCall, JsonPayload, MultipartPayload, Payload
from imagegen_cli.providers.gateway_errors import (
    ERROR_BODY_BYTES,
    error_message,
    is_retryable,
    retry_after_seconds,
    status_error,
)
from imagegen_cli.providers.registry import ResolvedProvider
from imagegen_cli.providers.throttle import ProviderThrottle
from imagegen_cli.providers.transport import (
    MAX_JSON_BYTES,
    Answer,
    Deadline,
    DeadlineExceeded,
    ProxyRouter,
    decoded_chunks,
    make_async_client,
    no_proxy_matches,
    read_bounded,
    transport_reason,
    unresolvable,
)
from imagegen_cli.settings import env_number

if TYPE_CHECKING:
    from imagegen_cli.jsontypes import JSON

__all__ = [
    "Deadline",
    "DeadlineExceeded",
    "GatewayClient",
    "ProxyRouter",
    "RetryHook",
    "error_message",
    "make_async_client",
    "no_proxy_matches",
    "run_once",
]


RetryHook = Callable[[int, float, str], None]
T = TypeVar("T")


class GatewayClient:
    """Calls one provider with retries inside a shared deadline; turns failures into typed errors.

    Every request, its body included, is bounded by what is left of the deadline (a gateway that answers
    one byte per second cannot hold a run past ``--timeout``). ``on_retry(attempt, delay, reason)`` is
    called before each retry's wait: attempt 2 is the first retry.
    """

    def __init__(
        self,
        provider: ResolvedProvider,
        deadline: Deadline,
        client: httpx.AsyncClient,
        throttle: ProviderThrottle | None = None,
        on_retry: RetryHook | None = None,
    ) -> None:
        self.provider = provider
        self.deadline = deadline
        self.client = client
        self.throttle = throttle
        self.on_retry = on_retry
        # Checked when the settings were loaded (exit 4 for a bad value); read here for each client.
        self.max_retries = int(env_number("IMAGEGEN_MAX_RETRIES", 4))
        self.base_delay = env_number("IMAGEGEN_RETRY_BASE_DELAY", 0.5)
        self.max_delay = 20.0

    def _backoff(self, attempt: int) -> float:
        delay: float = min(self.max_delay, self.base_delay * 2.0**attempt)
        return delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not cryptography

    def _timeout(self) -> httpx.Timeout:
        left = self.deadline.check()
        return httpx.Timeout(
            connect=min(10.0, left), read=min(120.0, left), write=min(60.0, left), pool=min(10.0, left)
        )

    async def _pause(self, attempt: int, delay: float, reason: str, cause: ImagegenError) -> None:
        """Wait before retry number ``attempt + 1``; when the deadline ends first, report the real cause now."""
        if delay >= self.deadline.remaining():
            tries = f"{attempt + 1} {'try' if attempt == 0 else 'tries'}"
            cause.message += f" (gave up after {tries}: --timeout ends before the next)"
            raise cause
        if self.on_retry is not None:
            self.on_retry(attempt + 2, delay, reason)
        await asyncio.sleep(delay)

    async def _retry(
        self, attempt: int, limit: int, reason: str, failure: ImagegenError, answer: Answer | None = None
    ) -> None:
        """Wait before retry number ``attempt + 1``, or raise ``failure`` once ``limit`` retries are spent.

        The wait is what the answer's Retry-After asks, else an exponential backoff with jitter.
        """
        if attempt >= limit:
            raise failure
        wait = retry_after_seconds(answer.headers) if answer is not None else None
        await self._pause(attempt, wait if wait is not None else self._backoff(attempt), reason, failure)

    async def request_json(
        self,
        method: str,
        url: str,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> JSON:
        """Send ``method url`` (with ``body`` as JSON if given) through :meth:`call`."""
        return await self.call(
            self.provider.call(method, url, JsonPayload(body) if body is not None else None, headers)
        )

    async def call(self, call: HttpCall, *, retry: bool = True) -> JSON:
        """Send one typed call, retrying transient failures (``retry=False``: only what surely was not processed);
        return the decoded JSON body."""
        answer = await self.send(call, retry=retry)
        try:
            return answer.json()
        except TooDeep:
            raise InvalidResponse(f"{self.provider.name}: the JSON answer is nested too deeply") from None
        except ValueError:
            excerpt = error_message(answer.content, answer.headers.get("content-type", ""))
            raise InvalidResponse(
                f"{self.provider.name}: invalid JSON in response (HTTP {answer.status_code}): {excerpt}",
                hint="the gateway may be down or the base URL may be wrong",
            ) from None

    async def _exchange(self, call: HttpCall, max_bytes: int) -> Answer:
        headers = {**call.headers, **self.provider.auth_header(call.url)}
        request = self.client.build_request(
            call.method, call.url, headers=headers, timeout=self._timeout(), **_body_arguments(call.payload)
        )
        response = await self.client.send(request, stream=True)
        try:
            failed = response.status_code >= 400
            content = await read_bounded(
                response, ERROR_BODY_BYTES if failed else max_bytes, truncate=failed, what=self.provider.name
            )
        finally:
            await response.aclose()
        return Answer(response.status_code, response.headers, content)

    async def _within_deadline(
        self, work: Callable[[], Awaitable[T]], what: str, last_error: str | None = None
    ) -> T | httpx.TransportError:
        """``work()`` within what is left of the deadline; a transport error worth another try is returned.

        Only the deadline's end is :class:`DeadlineExceeded`: a connect or read timeout with time left is one
        more transport error. Other failures (a body that does not decode, a bad URL) are the caller's to name.
        """
        try:
            left = self.deadline.check(what)  # before work() starts: no coroutine is left unawaited
            return await asyncio.wait_for(work(), left)
        except TimeoutError:
            raise DeadlineExceeded(what, last_error) from None
        except httpx.TimeoutException as exc:
            if self.deadline.remaining() <= 0.05:
                raise DeadlineExceeded(what, last_error) from None
            return exc
        except httpx.TransportError as exc:
            return exc

    async def _attempt(self, call: HttpCall, max_bytes: int) -> Answer | httpx.TransportError:
        """One request, inside the provider's throttle; a transport error is returned, not raised."""
        method, url = call.method, call.url
        parts = urlsplit(url)
        what = f"the answer to {method} {parts.path or '/'} from {parts.netloc}"
        if self.throttle is not None:
            await self.throttle.acquire(self.deadline)
        status: int | None = None
        retry_after: float | None = None
        try:
            outcome = await self._within_deadline(lambda: self._exchange(call, max_bytes), what)
            if isinstance(outcome, Answer):
                status, retry_after = outcome.status_code, retry_after_seconds(outcome.headers)
            return outcome
        except httpx.DecodingError:
            raise InvalidResponse(f"{self.provider.name}: the answer's compressed body does not decode") from None
        except (httpx.InvalidURL, ValueError) as exc:
            # A port of 99999, a malformed IPv6 host, a body value JSON cannot carry (NaN): nothing was sent.
            raise GatewayError(
                f"{self.provider.name}: cannot send {method} {clean_text(url, 200)}: {clean_text(str(exc), 200)}"
            ) from None
        finally:
            if self.throttle is not None:
                await self.throttle.release(status, retry_after)

    async def send(self, call: HttpCall, max_bytes: int = MAX_JSON_BYTES, *, retry: bool = True) -> Answer:
        """Send with retries (transport errors and the statuses above) inside the deadline; raise typed errors.

        ``retry=False`` is for a call that is not idempotent (an upload): only a refused connection (nothing was
        sent) and a 429 (the gateway says it did nothing) are tried again.
        """
        method, url = call.method, call.url
        attempt = 0
        last_error: str | None = None
        rate_limited: ImagegenError | None = None  # the last 429: what the deadline cut short
        while True:
            try:
                outcome = await self._attempt(call, max_bytes)
            except DeadlineExceeded as exc:
                if rate_limited is not None:
                    # The gateway kept answering 429 until the deadline: that is the cause, not the timeout. Said
                    # as a wait that did not fit is said (_pause): the deadline ran out during this try instead.
                    tries = f"{attempt + 1} {'try' if attempt == 0 else 'tries'}"
                    rate_limited.message += f" (gave up after {tries}: --timeout ends before the next)"
                    raise rate_limited from None
                exc.last_error = exc.last_error or last_error
                raise
            if isinstance(outcome, httpx.TransportError):
                last_error = transport_reason(outcome)
                failure = GatewayError(
                    f"{self.provider.name}: cannot reach {urlsplit(url).netloc}: {last_error}",
                    hint="check the network and the base URL: " + self.provider.base_url_hint(),
                )
                if unresolvable(outcome) or (not retry and not isinstance(outcome, httpx.ConnectError)):
                    raise failure
                await self._retry(attempt, self.max_retries, last_error, failure)
            else:
                status = outcome.status_code
                if status < 400:
                    return outcome
                cause = status_error(self.provider, outcome, method, url)
                if not is_retryable(method, outcome) or (not retry and status != 429):
                    raise cause
                rate_limited = cause if status == 429 else None
                # A rate limit is worth a few more tries than an outage: the throttle is already slowing down.
                retries = max(self.max_retries, 8) if status == 429 and self.throttle else self.max_retries
                await self._retry(attempt, retries, f"HTTP {status}", cause, outcome)
            attempt += 1

    async def _fetch(self, url: str, sink: IO[bytes], max_bytes: int) -> str | Answer:
        """One download try: the Content-Type once the body is in ``sink``, or the error answer."""
        # Redirects are followed by httpx, which drops Authorization when the origin changes.
        async with self.client.stream(
            "GET",
            url,
            headers={"User-Agent": f"imagegen/{__version__}", **self.provider.auth_header(url)},
            timeout=self._timeout(),
            follow_redirects=True,
        ) as response:
            if response.status_code >= 400:
                body = await read_bounded(response, ERROR_BODY_BYTES, truncate=True, what=self.provider.name)
                return Answer(response.status_code, response.headers, body)
            total = 0
            async for chunk in decoded_chunks(response):
                total += len(chunk)
                if total > max_bytes:
                    raise DownloadError(f"{self.provider.name}: image larger than {max_bytes} bytes")
                sink.write(chunk)
            sink.flush()
            return str(response.headers.get("content-type", ""))

    async def download(self, url: str, sink: IO[bytes], max_bytes: int) -> str:
        """Stream an image into ``sink`` (a binary file) within the deadline; returns the Content-Type."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise DownloadError(f"{self.provider.name}: refusing to download from {parts.scheme or 'a relative'} URL")
        what = f"the image download from {parts.hostname}"
        attempt = 0
        last_error: str | None = None
        while True:
            sink.seek(0)
            sink.truncate()
            outcome: str | Answer | httpx.TransportError
            try:
                outcome = await self._within_deadline(lambda: self._fetch(url, sink, max_bytes), what, last_error)
            except httpx.TooManyRedirects:
                raise DownloadError(f"{self.provider.name}: {what} failed: too many redirects") from None
            except httpx.DecodingError:
                raise DownloadError(f"{self.provider.name}: {what} failed: the body does not decode") from None
            except (httpx.InvalidURL, ValueError) as exc:
                raise DownloadError(
                    f"{self.provider.name}: invalid image URL {clean_text(url, 200)}: {clean_text(str(exc), 200)}"
                ) from None
            if isinstance(outcome, str):
                return outcome
            if isinstance(outcome, httpx.UnsupportedProtocol):
                # A redirect to file://, ftp://...: the same answer every time, so not worth a retry.
                raise DownloadError(
                    f"{self.provider.name}: {what} was redirected to a URL that is not http(s)",
                    hint="the gateway's image link leads elsewhere; nothing was read from it",
                )
            if isinstance(outcome, httpx.TransportError):
                last_error = transport_reason(outcome)
                failure = DownloadError(f"{self.provider.name}: {what} failed: {last_error}")
                if unresolvable(outcome):
                    raise failure
                await self._retry(attempt, self.max_retries, last_error, failure)
            else:
                status = outcome.status_code
                reason = "the link has expired or is not allowed" if status in (403, 404, 410) else ""
                failure = DownloadError(
                    f"{self.provider.name}: image download failed (HTTP {status} from {parts.hostname}): "
                    f"{error_message(outcome.content, outcome.headers.get('content-type', ''))}",
                    hint=reason or None,
                    status=status,
                )
                if not is_retryable("GET", outcome):
                    raise failure
                await self._retry(attempt, self.max_retries, f"HTTP {status}", failure, outcome)
            attempt += 1


def _body_arguments(payload: Payload | None) -> dict[str, Any]:
    """httpx's arguments for a payload: the exact JSON bytes, or multipart fields and files."""
    if isinstance(payload, JsonPayload):
        return {"content": payload.content}
    if isinstance(payload, MultipartPayload):
        data: dict[str, Any] = {}
        for name, value in payload.fields:
            before = data.get(name)
            data[name] = value if before is None else [*before, value] if isinstance(before, list) else [before, value]
        files = [(f.name, (f.filename, f.data, f.content_type)) for f in payload.files]
        return {"data": data, "files": files}
    return {}


def run_once(
    provider: ResolvedProvider,
    timeout: float,
    work: Callable[[GatewayClient], Awaitable[T]],
    *,
    timed_out: str,
    hint: str | None = None,
) -> T:
    """Run ``work`` with a client of its own, every request within ``timeout`` seconds overall.

    A deadline that runs out is a :class:`GatewayError` saying ``timed_out`` and what was being waited for.
    """

    async def main() -> T:
        async with make_async_client() as http:
            return await work(GatewayClient(provider, Deadline(timeout), http))

    try:
        return asyncio.run(main())
    except DeadlineExceeded as exc:
        waited = f" ({exc.describe()})" if exc.describe() else ""
        raise GatewayError(f"{provider.name}: {timed_out}{waited}", hint=hint) from None
