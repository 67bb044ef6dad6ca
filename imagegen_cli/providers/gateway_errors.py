"""What a failed gateway answer means: its one-line message, its typed error, and whether to retry it.

Pure functions of the answer's status, headers and body, without httpx: the message of any gateway's
error body (JSON, an HTML proxy page, plain text), the retry tables and ``Retry-After``, and the mapping
of a status to the :class:`~imagegen_cli.errors.ImagegenError` the user sees.
"""

from __future__ import annotations

import email.utils
import html
import re
import time
from typing import TYPE_CHECKING

from imagegen_cli.errors import AuthError, GatewayError, InsufficientBalance, clean_text
from imagegen_cli.jsontypes import loads

if TYPE_CHECKING:
    import httpx

    from imagegen_cli.providers.registry import ResolvedProvider
    from imagegen_cli.providers.transport import Answer

# Retries per status (README, "Networking"). Retried on every method: 408 (the server gave up waiting for
# the request), 409 (OpenAI's lock timeout), 429 (rate limit; never `insufficient_quota`), 502, 503, 504
# and 529 (overloaded): each says the request was not carried out. 500 is retried only for requests
# that change nothing (GET: polls, model lists, records, downloads): a POST that failed with 500 may
# already have generated, and paid for, its images. 402, 429 insufficient_quota and other 4xx/5xx: never.
RETRY_STATUSES = frozenset({408, 409, 429, 502, 503, 504, 529})
RETRY_IDEMPOTENT_STATUSES = frozenset({500})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
ERROR_BODY_BYTES = 64 * 1024  # an error answer is read this far: enough for its message
QUOTA_CODES = frozenset({"insufficient_quota", "insufficient_balance", "billing_hard_limit_reached"})


def error_message(body: bytes, content_type: str = "") -> str:
    """One line from any gateway's error body: error.message, else message, else an excerpt."""
    text = body[:ERROR_BODY_BYTES].decode("utf-8", "replace")
    try:
        data: object = loads(text)
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


def retry_after_seconds(headers: httpx.Headers) -> float | None:
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


def error_code(content: bytes) -> str | None:
    """``error.code`` (else ``error.type``, else a top-level ``code``) of a JSON error body."""
    try:
        data: object = loads(content[:ERROR_BODY_BYTES])
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    for source in (error if isinstance(error, dict) else {}, data):
        for key in ("code", "type"):
            if isinstance(source.get(key), str) and source[key]:
                return str(source[key]).lower()
    return None


def _out_of_quota(answer: Answer) -> bool:
    """A 429 that says the account is out of quota: not a rate limit, and waiting will not bring it back."""
    return answer.status_code == 429 and error_code(answer.content) in QUOTA_CODES


def is_retryable(method: str, answer: Answer) -> bool:
    """Whether a failed answer is worth another try (the tables above; never when out of quota)."""
    status = answer.status_code
    if _out_of_quota(answer):
        return False
    return status in RETRY_STATUSES or (status in RETRY_IDEMPOTENT_STATUSES and method.upper() in IDEMPOTENT_METHODS)


def status_error(provider: ResolvedProvider, answer: Answer, method: str, url: str) -> GatewayError | AuthError:
    """The typed error for a failed answer from ``provider``, with the hint that fits its status."""
    status = answer.status_code
    message = error_message(answer.content, answer.headers.get("content-type", ""))
    name = provider.name
    if status in (401, 403):
        return AuthError(
            f"{name}: HTTP {status} {message}",
            hint=f"check the key in {provider.key_vars()[0]} or run: imagegen keys set {name}",
        )
    if status == 402 or _out_of_quota(answer):
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
    if status == 404 and _is_base_route(provider, url):
        return GatewayError(
            f"{name}: HTTP 404 for {method} {url}: {message}",
            status=status,
            hint=f"is the base URL right? {provider.base_url_hint()}; OpenAI-compatible gateways usually end in /v1",
        )
    if status == 502:
        return GatewayError(f"{name}: upstream provider error (HTTP 502): {message}", status=status)
    return GatewayError(f"{name}: HTTP {status}: {message}", status=status)


def _is_base_route(provider: ResolvedProvider, url: str) -> bool:
    """The generation and model-list routes exist on every gateway: a 404 there means a wrong base URL."""
    profile = provider.profile
    routes = [profile.generate_path, *([profile.models_path] if profile.models_path else [])]
    return any(url.split("?", maxsplit=1)[0] == provider.url(route) for route in routes)
