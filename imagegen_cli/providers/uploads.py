"""Input files sent ahead of a generation call (apimart's ``uploads/images``), each once per job.

The planned body names an upload by a placeholder (``providers.inputs.upload_placeholder``); before the first call
of a job goes out, every upload the plan lists is made (or an earlier run's URL reused while it is valid, as the
journal kept it), the placeholders are replaced by the URLs, and each new upload is said as an ``InputUploaded``
event, which the driver journals. An upload is not idempotent: it is never retried blindly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from imagegen_cli.errors import InvalidResponse
from imagegen_cli.events import Event, InputUploaded, Note
from imagegen_cli.providers.calls import HttpCall, JsonPayload
from imagegen_cli.providers.inputs import data_uri, inline_placeholder, upload_placeholder

if TYPE_CHECKING:
    from imagegen_cli.inputs import SourceImage
    from imagegen_cli.providers.http import GatewayClient
    from imagegen_cli.providers.inputs import Upload

UPLOAD_LIFETIME = 72 * 3600.0  # apimart: an uploaded image's URL is valid for 72 hours
REUSE_MARGIN = 3600.0  # an earlier URL is reused only with an hour of validity left (a task may take a while)


class Uploader:
    """Makes a job's uploads once, shared by all of its calls."""

    def __init__(
        self,
        uploads: tuple[Upload, ...],
        inlines: tuple[SourceImage, ...],
        earlier: dict[str, tuple[str, float]],
        client: GatewayClient,
        emit: Callable[[Event], None],
        work: int,
    ) -> None:
        self.uploads = uploads
        self.inlines = inlines
        self.client = client
        self.emit = emit
        self.work = work
        now = time.time()
        # A URL the journal had to redact (a secret in its query) cannot be sent again: it is uploaded anew.
        self.urls = {
            sha: url for sha, (url, expires) in earlier.items() if expires - now > REUSE_MARGIN and "***" not in url
        }
        self.reused = {sha: earlier[sha][1] for sha in self.urls}
        self.lock = asyncio.Lock()

    async def resolve(self, http: HttpCall) -> HttpCall:
        """``http`` with every upload's placeholder replaced by its URL (uploading what is not yet uploaded)."""
        if not self.uploads and not self.inlines:
            return http
        async with self.lock:
            for upload in self.uploads:
                if upload.sha256 not in self.urls:
                    self.urls[upload.sha256] = await self._upload(upload)
                elif upload.sha256 in self.reused:  # said once, when the job's first call goes out
                    until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.reused.pop(upload.sha256)))
                    self.emit(
                        Note(self.work, f"{upload.name}: the earlier run's upload is reused (valid until {until})")
                    )
        names = {upload_placeholder(sha): url for sha, url in self.urls.items()}
        # A data: URI is made for this call only and let go once it is sent: a batch never holds its inputs.
        names.update({inline_placeholder(image.sha256 or ""): data_uri(image) for image in self.inlines})
        return replace(http, payload=JsonPayload(_substitute(http.json, names)))

    async def _upload(self, upload: Upload) -> str:
        answer = await self.client.call(upload.http, retry=False)
        url = _url_of(answer)
        if url is None:
            raise InvalidResponse(f"{self.client.provider.name}: the upload of {upload.name} answered no url")
        self.emit(InputUploaded(self.work, upload.sha256, url, time.time() + UPLOAD_LIFETIME))
        return url


def _url_of(answer: object) -> str | None:
    """``url`` at the top of the answer, or in its ``data`` (an object, or a list of one)."""
    for found in (answer, answer.get("data") if isinstance(answer, dict) else None):
        holder = found[0] if isinstance(found, list) and found else found
        url = holder.get("url") if isinstance(holder, dict) else None
        if isinstance(url, str) and url.startswith(("https://", "http://")):
            return url
    return None


def _substitute(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, list):
        return [_substitute(item, names) for item in value]
    if isinstance(value, dict):
        return {key: _substitute(item, names) for key, item in value.items()}
    return value
