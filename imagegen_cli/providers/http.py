"""The HTTP client every gateway goes through: deadline, retries, error shapes, auth scoping.

httpx is imported here and only here, and this module is imported only when a request is really
sent, so ``--help``, ``--dry-run`` and the settings commands never pay for it.
"""

from __future__ import annotations

import asyncio
import email.utils
import html
import ipaddress
import json
import os
import random
import re
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from imagegen_cli import __version__
from imagegen_cli.errors import (
    AuthError,
    ConfigError,
    DownloadError,
    GatewayError,
    ImagegenError,
    InsufficientBalance,
    InvalidResponse,
    clean_text,
)
from imagegen_cli.providers.registry import ResolvedProvider, is_loopback, same_origin
from imagegen_cli.providers.throttle import ProviderThrottle

# Retries per status (README, "Networking"). Retried on every method: 408 (the server gave up waiting for
# the request), 409 (OpenAI's lock timeout), 429 (rate limit; never `insufficient_quota`), 502, 503, 504
# and 529 (overloaded): each says the request was not carried out. 500 is retried only for requests
# that change nothing (GET: polls, model lists, records, downloads): a POST that failed with 500 may
# already have generated, and paid for, its images. 402, 429 insufficient_quota and other 4xx/5xx: never.
RETRY_STATUSES = frozenset({408, 409, 429, 502, 503, 504, 529})
RETRY_IDEMPOTENT_STATUSES = frozenset({500})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
MAX_JSON_BYTES = 256 * 1024 * 1024  # a b64_json answer with 10 large PNGs stays far below this
ERROR_BODY_BYTES = 64 * 1024  # an error answer is read this far: enough for its message
# A gzip answer may expand at most this much once past BOMB_FLOOR bytes: base64 images compress about
# 1.3:1 and JSON lists 10:1, while a gzip bomb expands 1000:1 (4 MB of zeros → 4 GB).
MAX_EXPANSION = 100
BOMB_FLOOR = 8 * 1024 * 1024
QUOTA_CODES = frozenset({"insufficient_quota", "insufficient_balance", "billing_hard_limit_reached"})


class DeadlineExceeded(Exception):
    """The overall ``--timeout`` ran out; callers decide whether that is pending or failed.

    ``waited_on`` says what was being waited for, ``last_error`` the transport error of an earlier try,
    so that the message keeps the real cause ("connection refused") instead of a bare "timeout".
    """

    def __init__(self, waited_on: str = "", last_error: str | None = None) -> None:
        super().__init__(waited_on)
        self.waited_on = waited_on
        self.last_error = last_error

    def describe(self) -> str:
        parts = [f"waiting for {self.waited_on}"] if self.waited_on else []
        if self.last_error:
            parts.append(f"last error: {self.last_error}")
        return "; ".join(parts)

    def __str__(self) -> str:
        return self.describe()


@dataclass
class Deadline:
    """A monotonic deadline shared by every call of one run."""

    seconds: float
    start: float = 0.0

    def __post_init__(self) -> None:
        self.start = time.monotonic()

    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def check(self, what: str = "") -> float:
        left = self.remaining()
        if left <= 0:
            raise DeadlineExceeded(what)
        return left

    async def sleep(self, seconds: float, what: str = "") -> None:
        left = self.check(what)
        if seconds >= left:
            await asyncio.sleep(max(left, 0))
            raise DeadlineExceeded(what)
        await asyncio.sleep(seconds)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer whose body was read within its size bound (see :func:`read_bounded`)."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    url: str

    def json(self) -> Any:
        return json.loads(self.content)


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
        return _html_text(text) or "(empty page)"
    return clean_text(text, 200) or "(empty body)"


def _html_text(text: str) -> str:
    """An HTML error page as one line: its title, then the text of its body (a proxy's reason is there)."""
    match = re.search(r"(?is)<title[^>]*>(.*?)</title>", text)
    title = clean_text(html.unescape(match[1]), 120) if match else ""
    body = re.sub(r"(?is)<head\b.*?</head>|<(script|style)\b.*?</\1>|<title[^>]*>.*?</title>", " ", text)
    body = clean_text(html.unescape(re.sub(r"<[^>]+>", " ", body)), 400)
    if title and body.startswith(title):
        body = body[len(title) :].strip(" :-")
    if body and body in title:
        body = ""
    return clean_text(": ".join(p for p in (title, body) if p), 300)


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (OpenAI) or ``Retry-After`` (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("Retry-After")
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


def _error_code(content: bytes) -> str | None:
    """``error.code`` (else ``error.type``, else a top-level ``code``) of a JSON error body."""
    try:
        data: Any = json.loads(content[:ERROR_BODY_BYTES])
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    for source in (error if isinstance(error, dict) else {}, data):
        for key in ("code", "type"):
            if isinstance(source.get(key), str) and source[key]:
                return str(source[key]).lower()
    return None


async def read_bounded(response: httpx.Response, limit: int, *, truncate: bool, what: str) -> bytes:
    """The decoded body, counted as it streams in: never more than ``limit`` bytes, and no gzip bomb.

    Reading the whole body first (``response.aread()``) would let a 4 MB gzip answer cost 4 GB of memory
    before any check; here the decoded bytes are counted chunk by chunk and reading stops at the bound.
    With ``truncate`` (error pages) the body is cut short instead of refused.
    """
    buffer = bytearray()
    async for chunk in response.aiter_bytes():
        buffer += chunk
        raw = max(response.num_bytes_downloaded, 1)
        if len(buffer) > BOMB_FLOOR and len(buffer) > MAX_EXPANSION * raw:
            if truncate:
                break
            raise InvalidResponse(
                f"{what}: the compressed answer expands more than {MAX_EXPANSION} times "
                f"({raw} bytes became over {len(buffer)}): refusing a decompression bomb"
            )
        if len(buffer) > limit:
            if truncate:
                del buffer[limit:]
                break
            raise InvalidResponse(f"{what}: response too large (over {limit} bytes)")
    return bytes(buffer)


def _transport_reason(exc: BaseException) -> str:
    """The real cause of a transport error: httpx's "All connection attempts failed" hides the errno."""
    cause: BaseException | None = exc
    for _ in range(8):
        if cause is None:
            break
        if isinstance(cause, OSError) and cause.errno:
            return clean_text(os.strerror(cause.errno).lower(), 200)  # "connection refused"
        cause = cause.__cause__ or cause.__context__
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException) and not str(exc):
        text = "timed out"
    return clean_text(text, 200)


RetryHook = Callable[[int, float, str], None]


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

    async def _pause(self, attempt: int, delay: float, reason: str, cause: ImagegenError) -> None:
        """Wait before retry number ``attempt + 1``; when the deadline ends first, report the real cause now."""
        if delay >= self.deadline.remaining():
            tries = f"{attempt + 1} {'try' if attempt == 0 else 'tries'}"
            cause.message += f" (gave up after {tries}: --timeout ends before the next)"
            raise cause
        if self.on_retry is not None:
            self.on_retry(attempt + 2, delay, reason)
        await asyncio.sleep(delay)

    def _check_throttle_wait(self) -> None:
        """A Retry-After that outlasts the deadline is a rate limit now, not a sleep until the timeout."""
        if self.throttle is None:
            return
        wait = self.throttle.not_before - time.monotonic()
        if wait > 0 and wait >= self.deadline.remaining():
            raise GatewayError(
                f"{self.provider.name}: rate limited: the gateway asked to wait {wait:.0f} s (Retry-After), "
                "more than --timeout leaves",
                status=429,
                hint="wait and retry, or raise --timeout",
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
        answer = await self.send(method, url, body=body, headers=headers)
        try:
            return answer.json()
        except RecursionError:
            raise InvalidResponse(f"{self.provider.name}: the JSON answer is nested too deeply") from None
        except ValueError:
            excerpt = error_message(answer.content, answer.headers.get("content-type", ""))
            raise InvalidResponse(
                f"{self.provider.name}: invalid JSON in response (HTTP {answer.status_code}): {excerpt}",
                hint="the gateway may be down or the base URL may be wrong",
            ) from None

    async def _exchange(
        self, method: str, url: str, body: dict[str, Any] | None, headers: dict[str, str], max_bytes: int
    ) -> Answer:
        request = self.client.build_request(method, url, json=body, headers=headers, timeout=self._timeout())
        response = await self.client.send(request, stream=True)
        try:
            failed = response.status_code >= 400
            content = await read_bounded(
                response, ERROR_BODY_BYTES if failed else max_bytes, truncate=failed, what=self.provider.name
            )
        finally:
            await response.aclose()
        return Answer(response.status_code, response.headers, content, str(response.url))

    async def _attempt(
        self, method: str, url: str, body: dict[str, Any] | None, headers: dict[str, str], max_bytes: int
    ) -> Answer | httpx.TransportError:
        """One request, inside the provider's throttle; a transport error is returned, not raised."""
        parts = urlsplit(url)
        what = f"the answer to {method} {parts.path or '/'} from {parts.netloc}"
        if self.throttle is not None:
            await self.throttle.acquire(self.deadline)
        status: int | None = None
        retry_after: float | None = None
        try:
            left = self.deadline.check(what)
            answer = await asyncio.wait_for(self._exchange(method, url, body, headers, max_bytes), left)
            status, retry_after = answer.status_code, _retry_after(answer.headers)
            return answer
        except TimeoutError:
            raise DeadlineExceeded(what) from None
        except httpx.TimeoutException as exc:
            if self.deadline.remaining() <= 0.05:
                raise DeadlineExceeded(what) from None
            return exc  # a connect or read timeout with time left: worth another try
        except httpx.TransportError as exc:
            return exc
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

    def _retryable(self, method: str, answer: Answer) -> bool:
        status = answer.status_code
        if status == 429 and _error_code(answer.content) in QUOTA_CODES:
            return False  # out of quota: waiting will not bring it back
        return status in RETRY_STATUSES or (
            status in RETRY_IDEMPOTENT_STATUSES and method.upper() in IDEMPOTENT_METHODS
        )

    async def send(
        self,
        method: str,
        url: str,
        *,
        body: dict[str, Any] | None,
        headers: dict[str, str] | None,
        max_bytes: int = MAX_JSON_BYTES,
    ) -> Answer:
        """Send with retries (transport errors and the statuses above) inside the deadline; raise typed errors."""
        sent_headers = self.provider.headers_for(url, headers if body is not None else None)
        attempt = 0
        last_error: str | None = None
        while True:
            self._check_throttle_wait()
            try:
                outcome = await self._attempt(method, url, body, sent_headers, max_bytes)
            except DeadlineExceeded as exc:
                exc.last_error = exc.last_error or last_error
                raise
            if isinstance(outcome, httpx.TransportError):
                last_error = _transport_reason(outcome)
                failure = GatewayError(
                    f"{self.provider.name}: cannot reach {urlsplit(url).netloc}: {last_error}",
                    hint="check the network and the base URL: " + self.provider.base_url_hint(),
                )
                if attempt >= self.max_retries:
                    raise failure
                await self._pause(attempt, self._backoff(attempt), last_error, failure)
                attempt += 1
                continue
            answer = outcome
            status = answer.status_code
            # A rate limit is worth a few more tries than an outage: the throttle is already slowing down.
            retries = max(self.max_retries, 8) if status == 429 and self.throttle else self.max_retries
            if status >= 400 and self._retryable(method, answer) and attempt < retries:
                wait = _retry_after(answer.headers)
                delay = wait if wait is not None else self._backoff(attempt)
                await self._pause(attempt, delay, f"HTTP {status}", self._error(answer, method, url))
                attempt += 1
                continue
            if status >= 400:
                raise self._error(answer, method, url)
            return answer

    def _error(self, answer: Answer, method: str, url: str) -> GatewayError | AuthError:
        status = answer.status_code
        message = error_message(answer.content, answer.headers.get("content-type", ""))
        name = self.provider.name
        if status in (401, 403):
            return AuthError(
                f"{name}: HTTP {status} {message}",
                hint=f"check the key in {self.provider.key_vars()[0]} or run: imagegen keys set {name}",
            )
        if status == 402 or (status == 429 and _error_code(answer.content) in QUOTA_CODES):
            what = "insufficient balance" if status == 402 else "insufficient quota"
            return InsufficientBalance(
                f"{name}: {what} (HTTP {status}): {message}",
                status=status,
                hint="top up the account or raise its spending limit; retrying will not help",
            )
        if status == 429:
            return GatewayError(
                f"{name}: rate limited (HTTP 429): {message}",
                status=status,
                hint="wait and retry, or raise --timeout",
            )
        if status == 404 and self._is_base_route(method, url):
            return GatewayError(
                f"{name}: HTTP 404 for {method} {url}: {message}",
                status=status,
                hint=f"is the base URL right? {self.provider.base_url_hint()}; "
                "OpenAI-compatible gateways usually end in /v1",
            )
        if status == 502:
            return GatewayError(f"{name}: upstream provider error (HTTP 502): {message}", status=status)
        return GatewayError(f"{name}: HTTP {status}: {message}", status=status)

    def _is_base_route(self, method: str, url: str) -> bool:
        """The generation and model-list routes exist on every gateway: a 404 there means a wrong base URL."""
        profile = self.provider.profile
        routes = [profile.generate_path, *([profile.models_path] if profile.models_path else [])]
        return any(url.split("?", maxsplit=1)[0] == self.provider.url(route) for route in routes)

    async def _fetch(self, url: str, sink: Any, max_bytes: int) -> str | Answer:
        """One download try: the Content-Type once the body is in ``sink``, or the error answer."""
        # Redirects are followed by httpx, which drops Authorization when the origin changes.
        async with self.client.stream(
            "GET",
            url,
            headers={"User-Agent": f"imagegen/{__version__}", **self._auth_headers(url)},
            timeout=self._timeout(),
            follow_redirects=True,
        ) as response:
            if response.status_code >= 400:
                body = await read_bounded(response, ERROR_BODY_BYTES, truncate=True, what=self.provider.name)
                return Answer(response.status_code, response.headers, body, str(response.url))
            total = 0
            async for chunk in response.aiter_bytes(1 << 16):
                total += len(chunk)
                if total > max_bytes:
                    raise DownloadError(f"{self.provider.name}: image larger than {max_bytes} bytes")
                sink.write(chunk)
            sink.flush()
            return str(response.headers.get("content-type", ""))

    async def download(self, url: str, sink: Any, max_bytes: int) -> str:
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
                left = self.deadline.check(what)
                outcome = await asyncio.wait_for(self._fetch(url, sink, max_bytes), left)
            except TimeoutError:
                raise DeadlineExceeded(what, last_error) from None
            except httpx.TimeoutException as exc:
                if self.deadline.remaining() <= 0.05:
                    raise DeadlineExceeded(what, last_error) from None
                outcome = exc
            except httpx.TransportError as exc:
                outcome = exc
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
            if isinstance(outcome, httpx.TransportError):
                last_error = _transport_reason(outcome)
                failure = DownloadError(f"{self.provider.name}: {what} failed: {last_error}")
                if attempt >= self.max_retries:
                    raise failure
                await self._pause(attempt, self._backoff(attempt), last_error, failure)
                attempt += 1
                continue
            status = outcome.status_code
            reason = "the link has expired or is not allowed" if status in (403, 404, 410) else ""
            failure = DownloadError(
                f"{self.provider.name}: image download failed (HTTP {status} from {parts.hostname}): "
                f"{error_message(outcome.content, outcome.headers.get('content-type', ''))}",
                hint=reason or None,
                status=status,
            )
            if self._retryable("GET", outcome) and attempt < self.max_retries:
                wait = _retry_after(outcome.headers)
                delay = wait if wait is not None else self._backoff(attempt)
                await self._pause(attempt, delay, f"HTTP {status}", failure)
                attempt += 1
                continue
            raise failure


def no_proxy_matches(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` (curl's rules: ``*``, domain suffixes, IPs, CIDR ranges, ``:port``) covers a host."""
    host = host.strip("[]").lower().rstrip(".")
    for raw in no_proxy.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and (not entry_port.isdigit() or int(entry_port) != port):
            continue
        name = name.strip("[]").rstrip(".")
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(name, strict=False):
                return True
            continue
        except ValueError:
            pass
        domain = name.lstrip("*").lstrip(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False


class ProxyRouter(httpx.AsyncBaseTransport):
    """Routes each request directly or through the environment's proxy, with NO_PROXY semantics.

    Loopback hosts (127.0.0.0/8, ::1, localhost) never go through a proxy: a proxy on another machine
    would otherwise receive the Authorization header of a plain-http local gateway. A key is never sent
    in clear (an ``http://`` request) through a proxy that is not itself on this machine.
    """

    def __init__(self, limits: httpx.Limits) -> None:
        proxies = urllib.request.getproxies_environment()
        self.no_proxy = proxies.pop("no", "")
        self.proxies = proxies
        self.limits = limits
        self.direct = httpx.AsyncHTTPTransport(limits=limits)
        self.via: dict[str, httpx.AsyncHTTPTransport] = {}

    def proxy_for(self, url: httpx.URL) -> str | None:
        host = url.host
        if not host or is_loopback(host):
            return None
        proxy = self.proxies.get(url.scheme) or self.proxies.get("all")
        if not proxy:
            return None
        if self.no_proxy and no_proxy_matches(host, url.port, self.no_proxy):
            return None
        return proxy

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        proxy = self.proxy_for(request.url)
        if proxy is None:
            return await self.direct.handle_async_request(request)
        proxy_host = urlsplit(proxy if "://" in proxy else f"http://{proxy}").hostname or ""
        if request.url.scheme == "http" and "authorization" in request.headers and not is_loopback(proxy_host):
            raise ConfigError(
                f"refusing to send an API key in clear through the proxy {proxy_host} (plain http to "
                f"{request.url.host})",
                hint=f"use https, or add {request.url.host} to NO_PROXY",
            )
        transport = self.via.get(proxy)
        if transport is None:
            try:
                transport = httpx.AsyncHTTPTransport(proxy=proxy, limits=self.limits)
            except (ImportError, ValueError, httpx.InvalidURL) as exc:
                raise ConfigError(
                    f"cannot use the proxy {clean_text(proxy, 100)}: {clean_text(str(exc), 200)}",
                    hint="check HTTP_PROXY / HTTPS_PROXY / ALL_PROXY",
                ) from None
            self.via[proxy] = transport
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        for transport in (self.direct, *self.via.values()):
            await transport.aclose()


def make_async_client() -> httpx.AsyncClient:
    """The shared client: environment proxies through :class:`ProxyRouter`, sane pool limits."""
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
    # trust_env=False: proxies come from ProxyRouter, and no ~/.netrc credentials are ever added.
    return httpx.AsyncClient(follow_redirects=False, transport=ProxyRouter(limits), trust_env=False)
