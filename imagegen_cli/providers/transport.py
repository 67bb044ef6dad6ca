"""The transport under the gateway client: one deadline, bounded reads, proxies, and the httpx client.

Everything here that touches the network is httpx; this module is imported only when a request is really
sent (through :mod:`imagegen_cli.providers.http`), so ``--help``, ``--dry-run`` and the settings commands
never pay for it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import time
import urllib.request
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from imagegen_cli.errors import ConfigError, DeadlineReached, InvalidResponse, clean_text
from imagegen_cli.jsontypes import loads
from imagegen_cli.providers.registry import is_loopback

if TYPE_CHECKING:
    from imagegen_cli.jsontypes import JSON

MAX_JSON_BYTES = 256 * 1024 * 1024  # a b64_json answer with 10 large PNGs stays far below this
# A gzip answer may expand at most this much once past BOMB_FLOOR bytes: base64 images compress about
# 1.3:1 and JSON lists 10:1, while a gzip bomb expands 1000:1 (4 MB of zeros → 4 GB).
MAX_EXPANSION = 100
BOMB_FLOOR = 8 * 1024 * 1024


class DeadlineExceeded(DeadlineReached):
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

    def restart(self) -> None:
        """Count from now (a batch line's clock starts when it gets its first call slot, not while it queues)."""
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

    def json(self) -> JSON:
        return loads(self.content)


_PIECE = 1 << 20  # no decoding step yields more than this: a bound checked per piece is a bound on memory


def _pump(layers: list[Any], data: bytes) -> Iterator[bytes]:
    """``data`` through the decoders ``layers`` (outermost first), in pieces of at most ``_PIECE`` bytes."""
    if not layers:
        yield data
        return
    head, rest = layers[0], layers[1:]
    while True:
        try:
            out = head.decompress(data, _PIECE)
        except zlib.error as exc:
            raise httpx.DecodingError(str(exc)) from None
        data = head.unconsumed_tail
        if out:
            yield from _pump(rest, out)
        if head.eof or (not data and len(out) < _PIECE):
            return


async def decoded_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body decoded layer by layer with a bound on every step (``Content-Encoding: gzip, gzip``).

    httpx decodes a whole network chunk at once: with two gzip layers one 64 KB chunk becomes gigabytes
    before any count. gzip and deflate are decoded here instead, at most ``_PIECE`` bytes at a time; any
    other encoding is left to httpx.
    """
    codings = [c.strip().lower() for c in response.headers.get("content-encoding", "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    # A body already read into memory (an in-process transport) has nothing left to bound: its decoded bytes.
    already_read = response.is_stream_consumed
    if already_read or not all(c in ("gzip", "x-gzip", "deflate") for c in codings):
        async for chunk in response.aiter_bytes():
            yield chunk
        return
    layers: list[Any] | None = None
    async for raw in response.aiter_raw():
        if layers is None:  # deflate is zlib-wrapped or raw: the first byte says which
            raw_deflate = -zlib.MAX_WBITS if raw[:1] and raw[0] & 0x0F != 8 else zlib.MAX_WBITS
            wbits = [zlib.MAX_WBITS | 16 if c != "deflate" else zlib.MAX_WBITS for c in reversed(codings)]
            if codings and codings[-1] == "deflate":
                wbits[0] = raw_deflate
            layers = [zlib.decompressobj(w) for w in wbits]
        for piece in _pump(layers, raw):
            yield piece


async def read_bounded(response: httpx.Response, limit: int, *, truncate: bool, what: str) -> bytes:
    """The decoded body, counted as it streams in: never more than ``limit`` bytes, and no gzip bomb.

    Reading the whole body first (``response.aread()``) would let a 4 MB gzip answer cost 4 GB of memory
    before any check; here the decoded bytes are counted chunk by chunk and reading stops at the bound.
    With ``truncate`` (error pages) the body is cut short instead of refused.
    """
    buffer = bytearray()
    async for chunk in decoded_chunks(response):
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


# getaddrinfo's answers for a name that does not exist (as opposed to a DNS server that did not answer now).
_NO_SUCH_NAME = {getattr(socket, n) for n in ("EAI_NONAME", "EAI_NODATA", "EAI_FAIL") if hasattr(socket, n)}


def _name_error(exc: BaseException) -> socket.gaierror | None:
    cause: BaseException | None = exc
    for _ in range(8):
        if cause is None:
            return None
        if isinstance(cause, socket.gaierror):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def unresolvable(exc: BaseException) -> bool:
    """Whether the host name does not exist: the same answer on every try, so not worth the retry budget."""
    error = _name_error(exc)
    return error is not None and error.errno in _NO_SUCH_NAME


def transport_reason(exc: BaseException) -> str:
    """The real cause of a transport error: httpx's "All connection attempts failed" hides the errno."""
    name_error = _name_error(exc)
    if name_error is not None:  # its errno is getaddrinfo's, which os.strerror reads as "unknown error -2"
        if name_error.errno in _NO_SUCH_NAME:
            return "the host name does not resolve (no such host)"
        return "the host name could not be looked up (DNS did not answer)"
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
