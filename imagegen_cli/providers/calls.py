"""A gateway call as a typed value: ``method, URL, headers, payload``, built once and sent exactly as built.

The payload is JSON (:class:`JsonPayload`: the bytes sent are :func:`encode_json` of the value, computed once)
or multipart form data (:class:`MultipartPayload`: text fields and files), or nothing (a poll, a download).
The transport (:mod:`imagegen_cli.providers.http`) sends these and nothing else; ``--dry-run`` shows them
(:func:`describe_call`) with the same bytes. Pure Python: no httpx here, a dry run never imports it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

JSON_CONTENT_TYPE = "application/json"
MULTIPART_SHOWN = "multipart/form-data; boundary=<chosen when sent>"


def encode_json(value: Any) -> bytes:
    """The one JSON serialisation of a request body: what is sent, and what ``--dry-run`` prints.

    Compact, UTF-8 (no ``\\u`` escapes), and no NaN/Infinity (not JSON: a ``ValueError``).
    """
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


@dataclass(frozen=True)
class JsonPayload:
    """A JSON body: the value, and the exact bytes that go on the wire (encoded once, at construction)."""

    value: dict[str, Any]
    content: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "content", encode_json(self.value))

    @property
    def content_type(self) -> str | None:
        return JSON_CONTENT_TYPE


class FileSource(Protocol):
    """A file read when it is sent, not when it is planned (``inputs.SourceImage``): a batch holds no bytes."""

    @property
    def sha256(self) -> str | None: ...
    @property
    def byte_size(self) -> int | None: ...
    def read(self) -> bytes: ...


@dataclass(frozen=True)
class FilePart:
    """One file of a multipart body: its bytes as given (``content``), or read from ``source`` when sent."""

    name: str  # the form field
    filename: str
    content_type: str
    content: bytes | None = field(default=None, repr=False)
    source: FileSource | None = field(default=None, repr=False, compare=False)

    @property
    def data(self) -> bytes:
        """The bytes sent (a source is read again, and checked against its SHA-256, each time)."""
        if self.content is not None:
            return self.content
        assert self.source is not None
        return self.source.read()

    def describe(self) -> dict[str, Any]:
        if self.content is None and self.source is not None:
            size, sha256 = self.source.byte_size, self.source.sha256  # what the dry run shows is not read for it
        else:
            size, sha256 = len(self.data), hashlib.sha256(self.data).hexdigest()
        return {"name": self.name, "filename": self.filename, "content_type": self.content_type, "size": size,
                "sha256": sha256}  # fmt: skip


@dataclass(frozen=True)
class MultipartPayload:
    """A ``multipart/form-data`` body: text fields (in order, a name may repeat) and files.

    Its Content-Type, boundary included, is set by the transport when it encodes the body.
    """

    fields: tuple[tuple[str, str], ...] = ()
    files: tuple[FilePart, ...] = ()

    def __post_init__(self) -> None:
        if not self.files:
            raise ValueError("a multipart payload carries at least one file (fields alone would be sent url-encoded)")

    @property
    def content_type(self) -> str | None:
        return None  # the transport sets it, with the boundary it chose

    def describe(self) -> dict[str, Any]:
        return {"fields": [list(pair) for pair in self.fields], "files": [part.describe() for part in self.files]}


Payload = JsonPayload | MultipartPayload


@dataclass(frozen=True)
class HttpCall:
    """One request exactly as it is sent: ``headers`` are all of them but the key (added for the request's
    origin only, by the transport), ``payload`` the body or None."""

    method: str
    url: str
    headers: dict[str, str]
    payload: Payload | None = None

    @property
    def json(self) -> dict[str, Any]:
        """The JSON value sent ({} for a call that sends none)."""
        return self.payload.value if isinstance(self.payload, JsonPayload) else {}


def describe_call(call: HttpCall, shown_headers: dict[str, str]) -> dict[str, Any]:
    """The ``--dry-run`` form of a call: method, URL, headers as shown (secrets redacted) and the body.

    A JSON call has ``body`` (the value) and ``body_text``: the exact bytes sent, as UTF-8 text. A multipart call
    has ``multipart``: its text fields, and each file's name, filename, content type, size and SHA-256 (not
    the bytes); its boundary is chosen when it is sent.
    """
    described: dict[str, Any] = {"method": call.method, "url": call.url, "headers": shown_headers}
    if isinstance(call.payload, JsonPayload):
        described["body"] = call.payload.value
        described["body_text"] = call.payload.content.decode("utf-8")
    elif isinstance(call.payload, MultipartPayload):
        described["headers"] = {**shown_headers, "Content-Type": MULTIPART_SHOWN}
        described["multipart"] = call.payload.describe()
    return described
