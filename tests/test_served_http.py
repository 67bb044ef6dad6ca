"""The served client's HTTP (``local/served_http.py``): an abort ends requests in flight at once, from another
thread; a form's names cannot break out of their header; the connect has a bound and the call none."""

from __future__ import annotations

import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from imagegen_cli.local.served_http import Aborted, Client, multipart


class _Slow(BaseHTTPRequestHandler):
    """Answers after ``delay`` seconds (a pipeline call); keeps what it was sent."""

    delay = 0.0
    seen: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, dict(self.headers), body))
        time.sleep(self.delay)
        try:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
        except OSError:
            pass  # the client went away

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow() -> Any:
    _Slow.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def test_an_abort_ends_the_requests_in_flight_at_once_and_refuses_new_ones(slow: Any) -> None:
    _Slow.delay = 30.0  # longer than the test: only the abort can end these
    client = Client(f"http://127.0.0.1:{slow.server_address[1]}/prefix")
    ended: list[BaseException] = []

    def ask() -> None:
        try:
            client.post_json("/v1/images/generations", {"n": 1})
        except BaseException as exc:
            ended.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(_Slow.seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [path for path, _, _ in _Slow.seen] == ["/prefix/v1/images/generations"] * 3
    started = time.monotonic()
    client.abort()
    for thread in threads:
        thread.join(5)
    assert time.monotonic() - started < 2
    assert len(ended) == 3 and all(isinstance(exc, Aborted) for exc in ended)
    with pytest.raises(Aborted):
        client.post_json("/v1/images/generations", {"n": 1})


def test_a_call_has_no_read_timeout_but_the_probe_has_one(slow: Any) -> None:
    _Slow.delay = 0.6
    client = Client(f"http://127.0.0.1:{slow.server_address[1]}", connect_timeout=0.2)
    assert client.post_json("/v1/images/generations", {}).status == 200  # longer than the connect bound
    with pytest.raises(OSError):
        client.request("POST", "/health", b"", {}, timeout=0.2)


def test_a_form_and_its_files_parse_back_and_names_cannot_break_the_header() -> None:
    body, content_type = multipart(
        {"prompt": 'a "quoted"\r\nX-Injected: 1', "n": "2"},
        [("image", ('evil".png\r\nX-Injected: 1', b"\x89PNG\r\n\x1a\nrest", "image/png"))],
    )
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    parts = list(message.iter_parts())
    assert [part.get_param("name", header="content-disposition") for part in parts] == ["prompt", "n", "image"]
    assert parts[0].get_payload(decode=True) == b'a "quoted"\r\nX-Injected: 1'  # a value is data, not a header
    assert parts[2].get_filename() == "evil%22.png%0D%0AX-Injected: 1"
    assert parts[2].get_payload(decode=True) == b"\x89PNG\r\n\x1a\nrest"
    assert all("X-Injected" not in part for part in parts)
