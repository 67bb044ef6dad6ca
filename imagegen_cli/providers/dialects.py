"""Response parsing for the two dialects: OpenAI-style synchronous and submit-and-poll tasks.

The parsers are pure functions over decoded JSON so that they can be fuzzed: whatever a gateway
answers, they return typed results or raise :class:`InvalidResponse` / :class:`TaskFailed`.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

from imagegen_cli.errors import DownloadError, InvalidResponse, TaskFailed, clean_text


@dataclass(frozen=True)
class RemoteImage:
    """One image as a gateway returned it: a URL or base64 data."""

    url: str | None = None
    b64: str | None = None
    revised_prompt: str | None = None
    expires_at: float | None = None
    error: str | None = None  # this one image was unusable (a malformed data URL); its siblings still count


@dataclass(frozen=True)
class SyncResult:
    """A synchronous call's images and usage."""

    images: list[RemoteImage]
    usage: dict[str, Any] | None = None


PENDING, SUCCEEDED, FAILED, CANCELLED, EXPIRED = "pending", "succeeded", "failed", "cancelled", "expired"
_STATES = {
    "submitted": PENDING, "pending": PENDING, "queued": PENDING, "processing": PENDING, "running": PENDING,
    "in_progress": PENDING, "completed": SUCCEEDED, "succeeded": SUCCEEDED, "success": SUCCEEDED,
    "failed": FAILED, "failure": FAILED, "error": FAILED, "cancelled": CANCELLED, "canceled": CANCELLED,
    "expired": EXPIRED,
}  # fmt: skip


@dataclass(frozen=True)
class TaskStatus:
    """One poll of a remote task."""

    state: str
    raw_status: str
    progress: int | None = None
    images: list[RemoteImage] = field(default_factory=list)
    error: str | None = None


def _finite(value: object) -> float | None:
    """A JSON number as a float; booleans, strings, Infinity and NaN (json.loads accepts them) are None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)  # a 400-digit integer overflows: ignore the field, not the answer
        except OverflowError:
            return None
        return number if math.isfinite(number) else None
    return None


def _urls(value: object) -> list[str]:
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v]
    return []


_DATA_URL = re.compile(r"data:(?P<type>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<data>.*)", re.DOTALL | re.IGNORECASE)


def decode_data_url(
    url: str, provider: str, *, revised_prompt: str | None = None, expires_at: float | None = None
) -> RemoteImage:
    """A ``data:image/...;base64,`` URL (LiteLLM mock answers, some gateways) as a base64 image.

    The rest of the run then treats it exactly like ``b64_json``; a data URL that is not an image, or not
    well formed, is an invalid response.
    """
    match = _DATA_URL.fullmatch(url.strip())
    if match is None:
        raise InvalidResponse(f"{provider}: malformed data URL in the answer")
    media = match["type"].strip().lower()
    if media and not media.startswith("image/"):
        raise InvalidResponse(f"{provider}: the answer's data URL holds {clean_text(media, 60)}, not an image")
    if ";base64" in match["params"].lower():
        payload = re.sub(r"\s+", "", unquote(match["data"]))
    else:
        payload = base64.b64encode(unquote_to_bytes(match["data"])).decode("ascii")
    return RemoteImage(b64=payload, revised_prompt=revised_prompt, expires_at=expires_at)


def image_bytes(image: RemoteImage, what: str) -> bytes:
    """A base64 image's bytes; data that is not strict base64 is a :class:`DownloadError` naming ``what``."""
    assert image.b64 is not None
    try:
        return base64.b64decode(image.b64, validate=True)
    except (binascii.Error, ValueError):
        raise DownloadError(f"{what} has invalid base64 data") from None


def _image_items(items: object, provider: str) -> list[RemoteImage]:
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        raise InvalidResponse(f"{provider}: response has no image list")
    images: list[RemoteImage] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        revised = item.get("revised_prompt")
        revised_text = revised if isinstance(revised, str) else None
        expires_at = _finite(item.get("expires_at"))
        b64 = item.get("b64_json")
        if isinstance(b64, str) and b64:
            images.append(RemoteImage(b64=b64, revised_prompt=revised_text, expires_at=expires_at))
            continue
        for url in _urls(item.get("url")):
            if url[:5].lower() == "data:":
                try:
                    images.append(decode_data_url(url, provider, revised_prompt=revised_text, expires_at=expires_at))
                except InvalidResponse as exc:  # this image is lost, not the three good ones beside it
                    images.append(RemoteImage(error=exc.message))
            else:
                images.append(RemoteImage(url=url, revised_prompt=revised_text, expires_at=expires_at))
    return images


def parse_images_response(data: object, provider: str) -> SyncResult:
    """Parse ``{"created", "data": [{"url"|"b64_json", "revised_prompt"?}], "usage"?}``."""
    if not isinstance(data, dict) or "data" not in data:
        raise InvalidResponse(f"{provider}: unexpected response shape (no 'data')", hint="is the base URL right?")
    images = _image_items(data["data"], provider)
    if not images:
        raise InvalidResponse(f"{provider}: the response contained no images")
    usage = data.get("usage")
    return SyncResult(images, usage if isinstance(usage, dict) else None)


def _envelope(data: object, provider: str) -> object:
    """apimart wraps answers as ``{"code": 200, "data": ...}``; a non-200 code is an error."""
    if not isinstance(data, dict):
        raise InvalidResponse(f"{provider}: unexpected response shape")
    code = data.get("code")
    if isinstance(code, int) and not isinstance(code, bool) and code not in (0, 200):
        raise InvalidResponse(f"{provider}: error {code}: {_error_text(data) or 'no message'}")
    return data.get("data")


def _error_text(data: dict[str, Any]) -> str | None:
    error = data.get("error")
    if isinstance(error, dict):
        message = error.get("message") or error.get("msg")
        if message:
            return clean_text(str(message), 300)
    if isinstance(error, str) and error:
        return clean_text(error, 300)
    message = data.get("message") or data.get("msg")
    return clean_text(str(message), 300) if message else None


def parse_submit_response(data: object, provider: str) -> list[str]:
    """Task ids from either documented submit shape (a list of ``task_id`` or one object ``id``)."""
    inner = _envelope(data, provider)
    items = inner if isinstance(inner, list) else [inner]
    ids: list[str] = []
    for item in items:
        if isinstance(item, dict):
            task_id = item.get("task_id") or item.get("id")
            if isinstance(task_id, str | int) and not isinstance(task_id, bool) and str(task_id):
                ids.append(str(task_id))
    if not ids and isinstance(data, dict) and isinstance(data.get("task_id"), str):
        ids.append(data["task_id"])
    if not ids:
        raise InvalidResponse(f"{provider}: the submission answer carried no task id")
    return ids


def parse_task_status(data: object, provider: str, task_id: str) -> TaskStatus:
    """Parse ``GET tasks/{id}``: status, progress, result images or the error."""
    inner = _envelope(data, provider)
    if not isinstance(inner, dict):
        raise InvalidResponse(f"{provider}: task {task_id}: unexpected status shape")
    raw = str(inner.get("status", "")).lower()
    state = _STATES.get(raw, PENDING)
    progress = inner.get("progress")
    finite = _finite(progress)
    progress_value = int(finite) if finite is not None else None
    if state == SUCCEEDED:
        result = inner.get("result")
        images = _image_items(result.get("images", []), provider) if isinstance(result, dict) else []
        if not images:
            raise InvalidResponse(f"{provider}: task {task_id} completed without images")
        return TaskStatus(state, raw, 100, images)
    if state in (FAILED, CANCELLED, EXPIRED):
        message = _error_text(inner) or "no reason given"
        return TaskStatus(state, raw, progress_value, error=message)
    return TaskStatus(state, raw, progress_value)


def task_error(provider: str, task_id: str, status: TaskStatus) -> TaskFailed:
    """The error for a failed or cancelled task, carrying the gateway's own message."""
    verb = {CANCELLED: "was cancelled", EXPIRED: "expired"}.get(status.state, "failed")
    return TaskFailed(f"{provider}: task {task_id} {verb}: {status.error}")
