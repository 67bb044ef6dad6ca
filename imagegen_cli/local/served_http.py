"""The served client's HTTP: the standard library's ``http.client``, one connection per request.

A run on a warm ``imagegen serve`` is over in a fraction of a second, so its client is kept to what it needs:
httpx with its async stack would be ~0.1 s of imports and TLS set-up, a quarter of such a run. Each request has a
connection of its own (on this machine a connection costs well under a millisecond; a pipeline call seconds), so
no kept-alive connection can go stale between calls, and :meth:`Client.abort` ends every request in flight from
another thread: the run's stop closes them, and the server cancels what it has not made.

Connections go straight to the server (no proxy from the environment: the server is normally this machine or
one beside it; ``-m imagegen:MODEL`` is the gateway client, with proxies). https is verified against the CA
bundle httpx uses (certifi), or the system's where ``SSL_CERT_FILE``/``SSL_CERT_DIR`` name one.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import secrets
import socket
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from imagegen_cli.jsontypes import loads

CONNECT_SECONDS = 10.0  # a pipeline call then takes as long as it takes: no read timeout


class Aborted(Exception):
    """The request was ended by :meth:`Client.abort` (the run was stopped)."""


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, read whole."""

    status: int
    headers: dict[str, str]  # names in lower case
    content: bytes

    def json(self) -> Any:
        """The body as JSON; None when it is not."""
        try:
            return loads(self.content)
        except ValueError:
            return None

    def error_message(self) -> str:
        """An OpenAI-shaped error's message (``{"error": {"message": ...}}``), at most 300 characters."""
        data = self.json()
        error = data.get("error") if isinstance(data, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        return str(message)[:300] if message else "no message"

    def retry_after(self, most: float) -> float:
        """How long a 429 asks to wait: its ``Retry-After`` seconds (1 without one), within 0.05 and ``most``."""
        try:
            return min(most, max(0.05, float(self.headers.get("retry-after", "1"))))
        except ValueError:
            return 1.0


class Client:
    """Requests to one server, each on a connection of its own; :meth:`abort` ends those in flight."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, connect_timeout: float = CONNECT_SECONDS):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) address: {url}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.headers = {"User-Agent": "imagegen", **(headers or {})}
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()
        self._aborted = False

    def get(self, path: str, *, timeout: float | None = None) -> Answer:
        return self.request("GET", path, None, {}, timeout=timeout)

    def post_json(self, path: str, body: Any) -> Answer:
        data = json.dumps(body).encode()
        return self.request("POST", path, data, {"Content-Type": "application/json"})

    def post_form(self, path: str, fields: dict[str, str], files: list[tuple[str, tuple[str, bytes, str]]]) -> Answer:
        data, content_type = multipart(fields, files)
        return self.request("POST", path, data, {"Content-Type": content_type})

    def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str], *, timeout: float | None = None
    ) -> Answer:
        """Send one request and read its whole answer; ``timeout`` bounds every step (None: only the connect).

        Raises :class:`Aborted` once :meth:`abort` was called, OSError (``http.client`` errors included) when
        the server cannot be reached or stops answering.
        """
        connection = self._connection(timeout if timeout is not None else self.connect_timeout)
        try:
            connection.connect()
            with self._lock:  # an abort during the connect found no socket to shut: it is seen here
                if self._aborted:
                    raise Aborted
            if timeout is None and connection.sock is not None:
                connection.sock.settimeout(None)  # connected: the call itself takes as long as it takes
            connection.request(method, self.prefix + path, body=body, headers={**self.headers, **headers})
            response = connection.getresponse()
            content = response.read()
            answered = {k.lower(): v for k, v in response.getheaders()}
            if self._aborted and "content-length" not in answered and not response.chunked:
                raise Aborted  # an answer that ends where its connection does: the abort may have cut it
            # Read whole: kept even when a stop comes now (the server made it; the run saves what it has).
            return Answer(response.status, answered, content)
        except (OSError, http.client.HTTPException) as exc:
            if self._aborted:
                raise Aborted from None
            raise exc if isinstance(exc, OSError) else OSError(f"{type(exc).__name__}: {exc}") from None
        except ValueError:
            # A header http.client refuses (a line break in it): its message quotes the value, a key perhaps.
            raise OSError("the request has a header HTTP cannot carry") from None
        finally:
            with self._lock:
                self._open.discard(connection)
            connection.close()

    def abort(self) -> None:
        """End every request in flight, and refuse new ones (thread-safe; callable from a signal handler)."""
        with self._lock:
            self._aborted = True
            open_now = list(self._open)
        for connection in open_now:
            sock = connection.sock
            if sock is not None:
                with contextlib.suppress(OSError):  # already closed
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked read at once, in whichever thread

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._aborted:
            raise Aborted
        connection: http.client.HTTPConnection
        if self.https:
            connection = http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=_tls())
        else:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        with self._lock:
            self._open.add(connection)
        return connection


def multipart(fields: dict[str, str], files: list[tuple[str, tuple[str, bytes, str]]]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body (RFC 7578) and its content type: the fields, then the files."""
    boundary = secrets.token_hex(16)
    chunks: list[bytes] = []
    for name, value in fields.items():
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"\r\n\r\n'.encode())
        chunks.append(value.encode() + b"\r\n")
    for name, (filename, data, content_type) in files:
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"; '
            f'filename="{_quoted(filename)}"\r\nContent-Type: {content_type}\r\n\r\n'.encode()
        )
        chunks.append(data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def _quoted(text: str) -> str:
    # As browsers and httpx write names in a form: a quote or a line break cannot end the header early.
    return text.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


@functools.cache
def _tls() -> Any:
    """One TLS context per process (reading a CA bundle takes ~20 ms)."""
    import ssl

    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context()  # OpenSSL reads those itself
    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())
