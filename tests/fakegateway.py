"""A fake image gateway: real HTTP servers on loopback that speak every provider's dialect.

The API server (127.0.0.1) serves each provider under its own prefix, exactly as providers.md
documents it; the image host (127.0.0.2, or another port of 127.0.0.1 where that address is missing)
stands in for a CDN. Both record every request, and tests queue faults that the next matching
requests receive.
"""

from __future__ import annotations

import base64
import functools
import io
import itertools
import json
import re
import socket
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from PIL import Image

TEST_KEY = "sk-test-SECRET-4f9c2a7e81d0b3c5"
PREFIXES = {
    "openai": "/openai/v1",
    "mka1": "/mka1/api/v1/llm",
    "kkiai": "/kkiai/v1",
    "modelmax": "/modelmax/v1",
    "token360": "/token360/v1",
    "apimart": "/apimart/v1",
    "custom": "/custom/v1",
    "customtasks": "/customtasks/v1",
}
TASK_PROVIDERS = {"apimart", "customtasks"}
RATIO_1K = {
    "1:1": (1024, 1024), "4:3": (1152, 864), "3:4": (864, 1152), "16:9": (1280, 720), "9:16": (720, 1280),
    "3:2": (1248, 832), "2:3": (832, 1248), "21:9": (1344, 576), "9:21": (576, 1344),
}  # fmt: skip
RATIO_2K = {
    "1:1": (2048, 2048), "4:3": (2048, 1536), "3:4": (1536, 2048), "16:9": (2048, 1152), "9:16": (1152, 2048),
    "3:2": (2048, 1360), "2:3": (1360, 2048),
}  # fmt: skip


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    provider: str | None = None
    at: float = field(default_factory=time.monotonic)  # when it arrived (timing tests leave start-up out)
    raw: bytes = b""  # the body's bytes exactly as received


@dataclass
class Fault:
    """What the next matching request gets instead of the normal answer."""

    route: str  # generate | poll | image | models | records
    kind: str
    provider: str | None = None
    status: int = 500
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    times: int = 1
    duration: float = 30.0  # slowloris: how long to keep trickling
    count: int = 1  # many_ids: how many task ids one submit answers with
    gate: threading.Event | None = None  # slow_body: the rest of the body waits for this instead of `delay`


@dataclass
class Task:
    """An apimart-style task."""

    id: str
    width: int
    height: int
    polls_left: int
    outcome: str = "completed"  # completed | failed | cancelled | never
    url_as_list: bool = False
    error_shape: str = "object"
    polls: int = 0


@functools.lru_cache(maxsize=64)
def png_bytes(width: int, height: int, color: tuple[int, int, int] = (200, 90, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


@functools.lru_cache(maxsize=1)
def noise_png() -> bytes:
    """A noisy PNG: cut in half, it really misses half its pixels (a solid one would still decode)."""
    buffer = io.BytesIO()
    Image.effect_noise((128, 128), 80).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


@functools.lru_cache(maxsize=4)
def gzip_bomb(decoded_mib: int = 4096) -> bytes:
    """A gzip body of ``decoded_mib`` MiB of zeros in about 1/1000 of that: 4 GiB in 4 MB.

    Built in a fraction of a second: after a full flush the deflate state is reset, so every 16 MiB
    block of zeros compresses to the same bytes, and the block is repeated. There is no gzip trailer;
    decoders only check it at the end, which a bounded reader never reaches.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(16 << 20)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + block * max(1, decoded_mib // 16)


@functools.lru_cache(maxsize=1)
def bomb_png() -> bytes:
    """A 12000x12000 PNG (144 megapixels) that compresses to a few kilobytes: a decompression bomb."""
    buffer = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def _size_from_body(body: dict[str, Any], provider: str) -> tuple[int, int]:
    size = body.get("size")
    if provider in TASK_PROVIDERS:
        table = RATIO_2K if str(body.get("resolution", "1K")).upper() == "2K" else RATIO_1K
        return table.get(str(size or "1:1"), (1024, 1024))
    if isinstance(size, str) and re.fullmatch(r"\d+x\d+", size):
        w, h = size.split("x")
        return int(w), int(h)
    for key in ("aspect_ratio", "ratio"):
        if body.get(key) in RATIO_1K:
            return RATIO_1K[body[key]]
    return 1024, 1024


def loopback_server(host: str, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A server on ``host`` (a free port), or on 127.0.0.1 when ``host`` is no local address.

    Linux routes all of 127.0.0.0/8 to the loopback; macOS has only 127.0.0.1 unless
    `sudo ifconfig lo0 alias 127.0.0.2 up`. Another port of 127.0.0.1 is still another origin, which is
    what the second host stands for (the key must never reach it).
    """
    try:
        return ThreadingHTTPServer((host, 0), handler)
    except OSError:
        if host == "127.0.0.1":
            raise
        return ThreadingHTTPServer(("127.0.0.1", 0), handler)


@dataclass
class Form:
    """A multipart/form-data body as a server reads it: text fields in order, and files."""

    fields: list[tuple[str, str]]
    files: list[tuple[str, str, str, bytes]]  # (field name, filename, content type, bytes)

    def field(self, name: str) -> str | None:
        return next((value for key, value in self.fields if key == name), None)

    def as_body(self) -> dict[str, Any]:
        """The text fields as a JSON body would carry them (numbers as numbers), for the generation answer."""
        body: dict[str, Any] = {}
        for key, value in self.fields:
            body[key] = int(value) if value.isdigit() else value
        return body


def parse_multipart(content_type: str, raw: bytes) -> Form:
    """Parse ``multipart/form-data`` with the standard library's MIME parser (independent of httpx's encoder)."""
    from email.parser import BytesParser
    from email.policy import HTTP

    if not content_type.startswith("multipart/form-data"):
        raise ValueError(f"not multipart: {content_type!r}")
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    form = Form([], [])
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        if filename is None:
            form.fields.append((str(name), payload.decode("utf-8")))
        else:
            form.files.append((str(name), filename, part.get_content_type(), payload))
    return form


class FakeGateway:
    """Start with ``with FakeGateway() as gw:``; point providers at ``gw.base_url(name)``."""

    def __init__(self, host: str = "127.0.0.1", image_host: str = "127.0.0.2") -> None:
        self.requests: list[Recorded] = []
        self.uploads: list[tuple[str, str, str, bytes]] = []  # apimart's uploads/images, as received
        self.image_requests: list[Recorded] = []
        self.faults: deque[Fault] = deque()
        self.tasks: dict[str, Task] = {}
        self.records: list[dict[str, Any]] = []
        self.live_models: dict[str, list[dict[str, Any]]] = {
            "openai": [
                {"id": i, "object": "model", "owned_by": "openai"}
                for i in ("gpt-4o", "dall-e-3", "gpt-image-1", "gpt-image-9", "whisper-1")
            ],
        }
        self.images: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.counter = itertools.count(1)
        # Behaviour knobs a test may change.
        self.apimart_shape = "list"  # list | object
        self.task_polls = 1  # polls answered "processing" before completion
        self.task_outcome = "completed"
        self.url_as_list = False
        self.latency = 0.0
        self.cross_host_images = True
        self.image_format = "PNG"
        self.expires_in = 86400
        self.in_flight = 0
        self.max_in_flight = 0
        self.server = self._serve(host, self._api_handler())
        self.image_server = self._serve(image_host, self._image_handler())

    # ------------------------------------------------------------------ lifecycle
    @staticmethod
    def _serve(host: str, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
        server = loopback_server(host, handler)
        server.daemon_threads = True
        # A short poll interval: shutdown() waits for it, and every test stops two servers.
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return server

    def __enter__(self) -> FakeGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for server in (self.server, self.image_server):
            server.shutdown()
            server.server_close()

    @property
    def origin(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def image_host(self) -> str:
        """127.0.0.2, or 127.0.0.1 where that address is missing (see ``loopback_server``)."""
        return str(self.image_server.server_address[0])

    @property
    def image_origin(self) -> str:
        host, port = self.image_server.server_address[:2]
        return f"http://{host}:{port}"

    def base_url(self, provider: str) -> str:
        return self.origin + PREFIXES[provider]

    def fault(self, route: str, kind: str, **kwargs: Any) -> None:
        self.faults.append(Fault(route, kind, **kwargs))

    def calls(self, provider: str | None = None, route: str = "images/generations") -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(route) and (provider is None or r.provider == provider)]

    # ------------------------------------------------------------------ helpers
    def _take_fault(self, route: str, provider: str | None) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.route == route and fault.provider in (None, provider):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def _store_image(self, width: int, height: int) -> str:
        token = f"img{next(self.counter)}"
        buffer = io.BytesIO()
        Image.new("RGB", (width, height), (40, 120, 200)).save(buffer, self.image_format)
        self.images[token] = buffer.getvalue()
        origin = self.image_origin if self.cross_host_images else self.origin
        return f"{origin}/files/{token}.{self.image_format.lower()}"

    # ------------------------------------------------------------------ API server
    def _api_handler(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(_BaseHandler):
            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

            def _handle(self, method: str) -> None:
                with gateway.lock:
                    gateway.in_flight += 1
                    gateway.max_in_flight = max(gateway.max_in_flight, gateway.in_flight)
                try:
                    self._route(method)
                finally:
                    with gateway.lock:
                        gateway.in_flight -= 1

            def _route(self, method: str) -> None:
                body = self._read_json()
                provider = next((p for p, prefix in PREFIXES.items() if self.path.startswith(prefix + "/")), None)
                record = Recorded(method, self.path, dict(self.headers), body, provider, raw=self.raw_body)
                with gateway.lock:
                    gateway.requests.append(record)
                if self.path.startswith("/files/"):
                    gateway._serve_file(self, self.path)
                    return
                if provider is None:
                    self._send_json(404, {"error": {"message": "no such route", "type": "not_found"}})
                    return
                if gateway.latency:
                    time.sleep(gateway.latency)
                rest = self.path[len(PREFIXES[provider]) :]
                if self.headers.get("Authorization") != f"Bearer {TEST_KEY}":
                    self._send_json(
                        401,
                        {
                            "error": {
                                "message": "Incorrect API key provided",
                                "type": "invalid_api_key",
                                "param": None,
                                "code": "invalid_api_key",
                            }
                        },
                    )
                    return
                if method == "POST" and rest == "/uploads/images" and provider == "apimart":
                    form = parse_multipart(self.headers.get("Content-Type", ""), self.raw_body)
                    record.body = form
                    fault = gateway._take_fault("upload", provider)
                    if fault and self._apply_fault(fault):
                        return
                    with gateway.lock:
                        gateway.uploads.append(form.files[0])
                        number = len(gateway.uploads)
                    url = f"{gateway.image_origin}/uploads/{number}-{form.files[0][1]}"
                    self._send_json(200, {"url": url, "filename": form.files[0][1], "expires_in": 259200})
                    return
                if method == "POST" and rest == "/images/edits" and provider in ("openai", "kkiai"):
                    # An edit answers as a generation does; the record keeps the parsed form for the tests.
                    form = parse_multipart(self.headers.get("Content-Type", ""), self.raw_body)
                    record.body = form
                    gateway._generate(self, provider, form.as_body(), None)
                    return
                if method == "POST" and rest == "/images/generations":
                    fault = gateway._take_fault("generate", provider)
                    if fault and self._apply_fault(fault):
                        return
                    gateway._generate(self, provider, body if isinstance(body, dict) else {}, fault)
                    return
                if method == "GET" and rest == "/models" and provider in gateway.live_models:
                    fault = gateway._take_fault("models", provider)
                    if fault and self._apply_fault(fault):
                        return
                    self._send_json(200, {"object": "list", "data": gateway.live_models[provider]})
                    return
                if provider == "token360" and rest.startswith("/images"):
                    fault = gateway._take_fault("records", provider)
                    if fault and self._apply_fault(fault):
                        return
                    gateway._records(self, method, rest)
                    return
                cancel = re.fullmatch(r"/tasks/([^/?]+)/cancel", rest)
                if method == "POST" and cancel and provider == "customtasks":
                    task = gateway.tasks.get(unquote(cancel[1]))
                    if task is None:
                        self._send_json(404, {"error": {"message": "no such task"}})
                        return
                    task.outcome = "cancelled"
                    task.polls_left = 0
                    self._send_json(200, {"code": 200, "data": {"id": task.id, "status": "cancelled"}})
                    return
                match = re.fullmatch(r"/tasks/([^/?]+)(\?.*)?", rest)
                if method == "GET" and match and provider in TASK_PROVIDERS:
                    fault = gateway._take_fault("poll", provider)
                    if fault and self._apply_fault(fault):
                        return
                    gateway._poll(self, unquote(match[1]))  # a task id travels as one encoded segment
                    return
                self._send_json(404, {"error": {"message": f"unknown route {rest}", "type": "not_found"}})

        return Handler

    def _generate(self, handler: _BaseHandler, provider: str, body: dict[str, Any], fault: Fault | None) -> None:
        width, height = _size_from_body(body, provider)
        if provider in TASK_PROVIDERS and fault and fault.kind == "many_ids":
            ids = [f"task_{next(self.counter):04d}" for _ in range(fault.count)]
            for task_id in ids:
                self.tasks[task_id] = Task(task_id, width, height, self.task_polls, self.task_outcome, self.url_as_list)
            handler._send_json(200, {"code": 200, "data": [{"status": "submitted", "task_id": i} for i in ids]})
            return
        if provider in TASK_PROVIDERS:
            task_id = f"task_{next(self.counter):04d}"
            if fault and fault.kind == "task_id" and fault.body is not None:
                task_id = fault.body.decode()  # whatever id the gateway makes up, escapes included
            outcome = fault.kind if fault and fault.kind in ("failed", "cancelled", "never") else self.task_outcome
            self.tasks[task_id] = Task(task_id, width, height, self.task_polls, outcome, self.url_as_list)
            if self.apimart_shape == "list":
                handler._send_json(200, {"code": 200, "data": [{"status": "submitted", "task_id": task_id}]})
            else:
                handler._send_json(
                    200,
                    {
                        "code": 200,
                        "data": {
                            "id": task_id,
                            "status": "pending",
                            "progress": 0,
                            "object": "image.generation.task",
                        },
                    },
                )
            return
        count = int(body.get("n") or 1)
        model = str(body.get("model", ""))
        b64 = body.get("response_format") == "b64_json" or (provider == "openai" and model.startswith("gpt-image"))
        if fault and fault.kind == "fewer":
            count = max(0, count - 1)
        data: list[dict[str, Any]] = []
        for _ in range(count):
            if b64:
                item: dict[str, Any] = {"b64_json": base64.b64encode(png_bytes(width, height)).decode()}
                if fault and fault.kind == "bad_b64":
                    item["b64_json"] = "%%%not-base64%%%"
                elif fault and fault.kind == "truncated_b64":
                    item["b64_json"] = base64.b64encode(noise_png()[: len(noise_png()) // 2]).decode()
                elif fault and fault.kind == "bomb_b64":
                    item["b64_json"] = base64.b64encode(bomb_png()).decode()
                elif fault and fault.kind == "not_image_b64":
                    item["b64_json"] = base64.b64encode(b"hello, not an image").decode()
            elif fault and fault.kind == "data_url":
                item = {"url": "data:image/png;base64," + base64.b64encode(png_bytes(width, height)).decode()}
            else:
                item = {"url": self._store_image(width, height)}
            if provider == "token360":
                self.records.append(
                    {
                        "id": f"img_{next(self.counter):04d}",
                        "object": "image",
                        "status": "completed",
                        "model": model,
                        "prompt": body.get("prompt"),
                        "created_at": int(time.time()),
                        "url": item.get("url"),
                        "error": None,
                        "_bytes": png_bytes(width, height),
                    }
                )
            if provider in ("openai", "mka1", "modelmax"):
                item["revised_prompt"] = "revised: " + str(body.get("prompt", ""))[:50]
                if fault and fault.kind == "evil_text":
                    item["revised_prompt"] = "\x1b[2J\x1b[31mred\x1b[0m\x07\u202eevil\x1b]0;title\x07 " + "x" * 5000
            data.append(item)
        answer: dict[str, Any] = {"created": int(time.time()), "data": data}
        if provider == "modelmax":
            answer["usage"] = {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}
        if provider in ("token360", "kkiai"):
            answer["usage"] = {
                "generated_images": count,
                "output_tokens": 10 * count,
                "total_tokens": 10 * count,
            }
            if provider == "token360":
                answer["model"] = model
        handler._send_json(200, answer)

    def _records(self, handler: _BaseHandler, method: str, rest: str) -> None:
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(rest)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        segments = parts.path.strip("/").split("/")
        public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in self.records]
        if method == "GET" and segments == ["images"]:
            ordered = sorted(public, key=lambda r: r["id"], reverse=query.get("order", "desc") == "desc")
            if "after" in query:
                ids = [r["id"] for r in ordered]
                ordered = ordered[ids.index(query["after"]) + 1 :] if query["after"] in ids else []
            limit = min(100, int(query.get("limit", 20)))
            page = ordered[:limit]
            handler._send_json(
                200,
                {
                    "object": "list",
                    "data": page,
                    "has_more": len(ordered) > limit,
                    "first_id": page[0]["id"] if page else None,
                    "last_id": page[-1]["id"] if page else None,
                },
            )
            return
        record = next((r for r in self.records if len(segments) > 1 and r["id"] == segments[1]), None)
        if record is None:
            handler._send_json(404, {"error": {"message": "Image not found", "type": "not_found_error"}})
            return
        if method == "DELETE" and len(segments) == 2:
            self.records.remove(record)
            handler._send_json(200, {"id": record["id"], "object": "image", "deleted": True})
            return
        if method == "GET" and segments[2:] == ["content"]:
            if record["status"] != "completed":
                handler._send_json(
                    400,
                    {
                        "error": {
                            "message": "Image is not ready yet. Current status: failed",
                            "type": "invalid_request_error",
                        }
                    },
                )
                return
            token = f"rec{next(self.counter)}"
            self.images[token] = record["_bytes"]
            cdn = f"{self.image_origin}/files/{token}.png"
            form = query.get("format", "redirect")
            if form == "url":
                handler._send_json(200, {"url": cdn, "image_id": record["id"], "expires_in": 3600})
            elif form == "binary":
                handler._send(
                    200,
                    record["_bytes"],
                    "image/png",
                    {"Content-Disposition": f'attachment; filename="{record["id"]}.png"'},
                )
            else:
                handler._send(302, b"", "text/plain", {"Location": cdn})
            return
        handler._send_json(404, {"error": {"message": "unknown route", "type": "not_found_error"}})

    def _poll(self, handler: _BaseHandler, task_id: str) -> None:
        task = self.tasks.get(task_id)
        if task is None:
            handler._send_json(404, {"code": 404, "error": {"message": f"task {task_id} not found"}})
            return
        task.polls += 1
        data: dict[str, Any] = {"id": task_id, "created": 1700000000}
        if task.outcome == "never" or task.polls <= task.polls_left:
            data.update(status="processing", progress=min(90, 30 * task.polls))
        elif task.outcome == "failed":
            data.update(status="failed", progress=0, error={"message": "content policy violation", "code": "policy"})
        elif task.outcome == "cancelled":
            data.update(status="cancelled", progress=0, error="cancelled by operator")
        else:
            url = self._store_image(task.width, task.height)
            data.update(
                status="completed",
                progress=100,
                completed=1700000010,
                result={
                    "images": [
                        {"url": [url] if task.url_as_list else url, "expires_at": int(time.time()) + self.expires_in}
                    ]
                },
            )
        handler._send_json(200, {"code": 200, "data": data})

    # ------------------------------------------------------------------ image host
    def _image_handler(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(_BaseHandler):
            def do_GET(self) -> None:
                with gateway.lock:
                    gateway.image_requests.append(Recorded("GET", self.path, dict(self.headers), None))
                gateway._serve_file(self, self.path)

        return Handler

    def _serve_file(self, handler: _BaseHandler, path: str) -> None:
        fault = self._take_fault("image", None)
        if fault and handler._apply_fault(fault):
            return
        token = path.rsplit("/", 1)[-1].split(".", maxsplit=1)[0]
        data = self.images.get(token)
        if data is None:
            handler._send(404, b"<html><body>Not Found</body></html>", "text/html")
            return
        if fault and fault.kind == "truncated":
            data = noise_png()[: len(noise_png()) // 2]
        if fault and fault.kind == "not_image":
            data = b"<html>this is not an image</html>"
        if fault and fault.kind == "bomb":
            data = bomb_png()
        if fault and fault.kind == "slow_body":
            # Half the image now, the rest much later: the client is mid-download for a while.
            data = noise_png()
            handler.send_response(200)
            handler.send_header("Content-Type", "image/png")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data[: len(data) // 2])
            handler.wfile.flush()
            if fault.gate is not None:
                fault.gate.wait(30)
            else:
                time.sleep(fault.delay or 10)
            handler.wfile.write(data[len(data) // 2 :])
            return
        handler._send(200, data, f"image/{self.image_format.lower()}")


class _BaseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    raw_body = b""
    # Headers and body go out in two writes; with Nagle on, a kept-alive client's delayed ACK would stall
    # every answer by 40 ms (real servers set TCP_NODELAY too).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing to answer

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.raw_body = raw
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), "application/json", headers)

    def _apply_fault(self, fault: Fault) -> bool:
        """Answer with the fault; False when the fault only alters the normal answer."""
        if fault.delay:
            time.sleep(fault.delay)
        kind = fault.kind
        if kind == "status":
            body = (
                fault.body
                if fault.body is not None
                else json.dumps({"error": {"message": f"injected {fault.status}", "type": "api_error"}}).encode()
            )
            self._send(fault.status, body, "application/json" if body[:1] in b"{[" else "text/html", fault.headers)
            return True
        if kind == "reset":
            # Promise a body, send a few bytes of it, hang up.
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "4096")
            self.end_headers()
            self.wfile.write(b'{"created": 1, "da')
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return True
        if kind == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return True
        if kind == "invalid_json":
            self._send(200, b'{"created": 1, "data": [', "application/json")
            return True
        if kind == "html":
            self._send(
                fault.status,
                b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
                b"<body><h1>Bad Gateway</h1></body></html>",
                "text/html",
            )
            return True
        if kind == "wrong_shape":
            self._send_json(200, {"result": "ok"})
            return True
        if kind == "empty_data":
            self._send_json(200, {"created": 1, "data": []})
            return True
        if kind == "redirect":
            self._send(302, b"", "text/plain", {"Location": fault.headers["Location"]})
            return True
        if kind == "gzip_bomb":
            # A small gzip body that decodes to gigabytes of zeros.
            bomb = fault.body if fault.body is not None else gzip_bomb()
            self._send(fault.status, bomb, "application/json", {"Content-Encoding": "gzip"})
            return True
        if kind == "slowloris":
            # Headers at once, then one byte of (valid JSON) whitespace every half second: no single read
            # ever times out, yet the answer never ends.
            self.send_response(fault.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            end = time.monotonic() + fault.duration
            while time.monotonic() < end:
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.5)
            self.close_connection = True
            return True
        return False


class FakeProxy:
    """An HTTP proxy on loopback that records what reaches it and answers 502 (it forwards nothing).

    It stands in for a proxy on another machine: whatever it records (an Authorization header above all)
    would have left the machine.
    """

    def __init__(self, host: str = "127.0.0.3") -> None:
        self.requests: list[Recorded] = []
        self.uploads: list[tuple[str, str, str, bytes]] = []  # apimart's uploads/images, as received
        proxy = self

        class Handler(_BaseHandler):
            def _record(self) -> None:
                proxy.requests.append(Recorded(self.command, self.path, dict(self.headers), None))
                self._read_json()
                self._send(502, b"the fake proxy forwards nothing", "text/plain")

            do_GET = do_POST = do_DELETE = do_CONNECT = _record

        self.server = loopback_server(host, Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
