"""Typed calls (issue 19 item 4): a call is ``method, URL, headers, payload``, built once at planning, sent
exactly as built (JSON bytes or multipart parts) and shown by ``--dry-run`` with the same bytes."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
import pytest

from imagegen_cli.providers.calls import FilePart, HttpCall, JsonPayload, MultipartPayload, encode_json
from tests.fakegateway import TEST_KEY, FakeGateway


def _provider(monkeypatch: pytest.MonkeyPatch) -> Any:
    from imagegen_cli.providers.registry import load_profiles, resolve_provider

    monkeypatch.setenv("IMAGEGEN_OPENAI_API_KEY", TEST_KEY)
    return resolve_provider(load_profiles({}), "openai", "gpt-image-2", "https://gw.example/v1")


def _send(provider: Any, call: HttpCall) -> tuple[Any, list[httpx.Request]]:
    from imagegen_cli.providers.http import Deadline, GatewayClient

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(200, json={"data": []})

    async def main() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            return await GatewayClient(provider, Deadline(10), http).call(call)

    return asyncio.run(main()), seen


def test_a_json_call_sends_exactly_its_bytes_with_a_json_content_type(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = _provider(monkeypatch)
    value = {"model": "gpt-image-2", "prompt": "ein Fuchs — 狐", "n": 2, "x": 0.5}
    call = provider.call("POST", provider.url("images/generations"), JsonPayload(value), {"X-On-Behalf-Of": "u7"})
    answer, (request,) = _send(provider, call)
    assert answer == {"data": []}
    assert request.method == "POST" and str(request.url) == "https://gw.example/v1/images/generations"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == f"Bearer {TEST_KEY}"
    assert request.headers["x-on-behalf-of"] == "u7"
    assert request.content == call.payload.content == encode_json(value)  # type: ignore[union-attr]
    assert "狐".encode() in request.content  # UTF-8, not \\u escapes


def test_a_multipart_call_sends_its_fields_and_files_with_the_boundary_httpx_chose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = _provider(monkeypatch)
    image = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    payload = MultipartPayload(
        fields=(("model", "gpt-image-2"), ("prompt", "a fox"), ("image[]", "x"), ("image[]", "y")),
        files=(FilePart("image", "fox.png", "image/png", image),),
    )
    call = provider.call("POST", provider.url("images/edits"), payload)
    assert "Content-Type" not in call.headers
    _, (request,) = _send(provider, call)
    content_type = request.headers["content-type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    boundary = content_type.split("boundary=", 1)[1].encode()
    parts = [p for p in request.content.split(b"--" + boundary) if p.strip(b"\r\n-")]
    named = {}
    for part in parts:
        head, _, body = part.strip(b"\r\n").partition(b"\r\n\r\n")
        named.setdefault(head.split(b'name="', 1)[1].split(b'"', 1)[0].decode(), []).append((head, body))
    assert [b for _, b in named["model"]] == [b"gpt-image-2"] and [b for _, b in named["prompt"]] == [b"a fox"]
    assert [b for _, b in named["image[]"]] == [b"x", b"y"]
    ((head, body),) = named["image"]
    assert b'filename="fox.png"' in head and b"Content-Type: image/png" in head and body == image


def test_a_multipart_payload_without_files_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one file"):
        MultipartPayload(fields=(("a", "b"),))


def test_a_multipart_call_is_described_by_names_sizes_and_digests(monkeypatch: pytest.MonkeyPatch) -> None:
    from imagegen_cli.providers.calls import describe_call

    provider = _provider(monkeypatch)
    data = b"abc" * 100
    call = provider.call(
        "POST",
        provider.url("images/edits"),
        MultipartPayload((("prompt", "p"),), (FilePart("image", "a.png", "image/png", data),)),
    )
    shown = describe_call(call, provider.shown_headers(call))
    assert shown["headers"]["Content-Type"].startswith("multipart/form-data; boundary=<")
    assert shown["headers"]["Authorization"] == "Bearer ***"
    assert shown["multipart"] == {
        "fields": [["prompt", "p"]],
        "files": [
            {"name": "image", "filename": "a.png", "content_type": "image/png", "size": 300,
             "sha256": hashlib.sha256(data).hexdigest()},
        ],
    }  # fmt: skip


def test_a_get_call_carries_no_body_and_no_content_type(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = _provider(monkeypatch)
    _, (request,) = _send(provider, provider.call("GET", provider.url("tasks/t1")))
    assert request.method == "GET" and request.content == b"" and "content-type" not in request.headers


def test_the_dry_run_prints_the_json_body_byte_for_byte_as_the_gateway_receives_it(cli, gateway: FakeGateway) -> None:
    args = ("generate", 'ein Fuchs — 狐 "quoted"', "-m", "openai:gpt-image-1.5", "--param", "x=0.10", "--seed", "3")
    dry = cli(*args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    sent = cli(*args)
    assert sent.returncode == 0, sent.stderr
    (received,) = gateway.calls("openai")
    body_line = dry.stdout.splitlines()[-1]
    assert body_line.encode("utf-8") == received.raw
    document = cli(*args, "--dry-run", "--json").json()
    assert document["calls"][0]["body_text"].encode("utf-8") == received.raw


def test_a_param_that_json_cannot_carry_is_a_usage_error_before_anything_is_sent(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "x", "-m", "openai:gpt-image-1.5", "--param", "x=NaN")
    assert result.returncode == 2 and "cannot be sent as JSON" in result.stderr
    assert gateway.calls("openai") == []
