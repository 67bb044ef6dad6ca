"""Gateway faults: retries, error shapes, broken payloads, failing and never-finishing tasks."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.fakegateway import FakeGateway

SYNC_MODELS = {
    "openai": "openai:dall-e-2",
    "mka1": "mka1:meetkai:z-image-turbo",
    "kkiai": "kkiai:flux-kontext-pro",
    "modelmax": "modelmax:imagen-3",
    "token360": "token360:seedream-4.5",
}
ALL_MODELS = {**SYNC_MODELS, "apimart": "apimart:z-image-turbo"}


def leftovers(out: Path) -> list[Path]:
    """Anything in the output dir that is not a finished image (temp files, partial writes)."""
    return [p for p in out.rglob("*") if p.is_file() and (p.name.startswith(".") or p.suffix == ".part")]


@pytest.mark.parametrize("provider", list(ALL_MODELS))
@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_transient_statuses_are_retried(cli, gateway: FakeGateway, provider: str, status: int) -> None:
    gateway.fault(
        "generate",
        "status",
        provider=provider,
        status=status,
        times=2,
        headers={"Retry-After": "0"} if status == 429 else {},
    )
    result = cli("generate", "retry me", "-m", ALL_MODELS[provider])
    assert result.returncode == 0, result.stderr
    assert len(gateway.calls(provider)) == 3
    assert len(result.lines) == 1 and Path(result.lines[0]).exists()


def test_retry_after_is_honoured(cli, gateway: FakeGateway) -> None:
    gateway.fault("generate", "status", status=429, headers={"Retry-After": "1"})
    start = time.monotonic()
    result = cli("generate", "slow down", "-m", "openai:dall-e-2")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start >= 1.0


def test_retry_after_beyond_timeout_fails_fast(cli, gateway: FakeGateway) -> None:
    gateway.fault(
        "generate",
        "status",
        status=429,
        headers={"Retry-After": "120"},
        body=json.dumps(
            {"error": {"message": "Rate limit reached", "type": "rate_limit_error", "code": "429"}}
        ).encode(),
    )
    result = cli("generate", "slow down", "-m", "token360:seedream-4.5", "--timeout", "5")
    assert result.returncode == 1
    assert "rate limited (HTTP 429)" in result.stderr and "Rate limit reached" in result.stderr


@pytest.mark.parametrize("provider", list(ALL_MODELS))
def test_persistent_503_gives_up_with_one_line(cli, gateway: FakeGateway, provider: str) -> None:
    gateway.fault("generate", "status", provider=provider, status=503, times=99)
    result = cli("generate", "nope", "-m", ALL_MODELS[provider])
    assert result.returncode == 1
    assert len(gateway.calls(provider)) == 5  # one try and four retries
    assert f"error: {provider}: HTTP 503: api_error: injected 503" in result.stderr
    assert result.stdout == "" and not leftovers(cli.out)


@pytest.mark.parametrize("provider", list(SYNC_MODELS))
def test_500_is_not_retried(cli, gateway: FakeGateway, provider: str) -> None:
    gateway.fault("generate", "status", provider=provider, status=500)
    result = cli("generate", "boom", "-m", SYNC_MODELS[provider])
    assert result.returncode == 1
    assert len(gateway.calls(provider)) == 1


def test_connection_refused(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "x", "-m", "openai:dall-e-2", "--base-url", "http://127.0.0.1:9/v1")
    assert result.returncode == 1
    assert "cannot reach 127.0.0.1:9" in result.stderr


PAYLOAD_FAULTS = {
    "invalid_json": ("invalid JSON in response", "invalid JSON in response"),
    "html": ("502 Bad Gateway", "502 Bad Gateway"),
    "wrong_shape": ("unexpected response shape", "carried no task id"),
    "empty_data": ("contained no images", "carried no task id"),
}


@pytest.mark.parametrize("provider", list(ALL_MODELS))
@pytest.mark.parametrize("kind", list(PAYLOAD_FAULTS))
def test_broken_payloads_every_provider(cli, gateway: FakeGateway, provider: str, kind: str) -> None:
    gateway.fault("generate", kind, status=200 if kind != "html" else 500)
    result = cli("generate", "x", "-m", ALL_MODELS[provider], "--json")
    assert result.returncode == 1, result.stderr
    sync_message, task_message = PAYLOAD_FAULTS[kind]
    assert (task_message if provider == "apimart" else sync_message) in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1
    assert result.json()["status"] == "failed"
    assert not list(cli.out.glob("*"))


@pytest.mark.parametrize("provider", ["openai", "mka1", "modelmax"])
@pytest.mark.parametrize(("kind", "message"), [("bad_b64", "invalid base64"), ("not_image_b64", "not a valid image")])
def test_broken_base64(cli, gateway: FakeGateway, provider: str, kind: str, message: str) -> None:
    gateway.fault("generate", kind, status=200)
    result = cli("generate", "x", "-m", SYNC_MODELS[provider], "--response-format", "b64_json")
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert not list(cli.out.glob("*"))


@pytest.mark.parametrize("provider", [p for p in ALL_MODELS if p != "openai"])
@pytest.mark.parametrize("kind", ["truncated", "not_image"])
def test_broken_downloads(cli, gateway: FakeGateway, provider: str, kind: str) -> None:
    gateway.fault("image", kind)
    result = cli("generate", "x", "-m", ALL_MODELS[provider])
    assert result.returncode == 1
    assert "not a valid image" in result.stderr
    assert not list(cli.out.glob("*"))


@pytest.mark.parametrize("provider", list(ALL_MODELS))
def test_dropped_connection_every_provider(cli, gateway: FakeGateway, provider: str) -> None:
    gateway.fault("generate", "drop", provider=provider)
    result = cli("generate", "again", "-m", ALL_MODELS[provider])
    assert result.returncode == 0, result.stderr
    assert len(gateway.calls(provider)) == 2


@pytest.mark.parametrize("provider", list(ALL_MODELS))
def test_slow_response_every_provider(cli, gateway: FakeGateway, provider: str) -> None:
    gateway.fault("generate", "slow", delay=3)
    start = time.monotonic()
    result = cli("generate", "x", "-m", ALL_MODELS[provider], "--timeout", "1", "--json")
    assert time.monotonic() - start < 3
    assert result.returncode == 1
    assert result.json()["errors"][0]["code"] == "timeout"
    assert not list(cli.out.glob("*"))


def test_download_404(cli, gateway: FakeGateway) -> None:
    gateway.fault("image", "status", status=404, body=b"<html><title>Not Found</title></html>")
    result = cli("generate", "x", "-m", "mka1:meetkai:z-image-turbo")
    assert result.returncode == 1
    assert f"image download failed (HTTP 404 from {gateway.image_host})" in result.stderr


def test_html_error_page_is_one_line(cli, gateway: FakeGateway) -> None:
    gateway.fault(
        "generate",
        "status",
        status=500,
        body=b"<!DOCTYPE html><html><head><title>Internal oops</title>"
        b"</head><body><pre>trace\nback</pre></body></html>",
    )
    result = cli("generate", "x", "-m", "openai:dall-e-2")
    assert result.returncode == 1
    assert "error: openai: HTTP 500: Internal oops" in result.stderr


def test_error_without_error_object_uses_message(cli, gateway: FakeGateway) -> None:
    gateway.fault("generate", "status", status=400, body=b'{"code": 400, "message": "prompt rejected"}')
    result = cli("generate", "x", "-m", "apimart:z-image-turbo")
    assert result.returncode == 1
    assert "HTTP 400: prompt rejected" in result.stderr


@pytest.mark.parametrize(
    ("kind", "text"),
    [("failed", "failed: content policy violation"), ("cancelled", "was cancelled: cancelled by operator")],
)
def test_failed_and_cancelled_tasks(cli, gateway: FakeGateway, kind: str, text: str) -> None:
    gateway.fault("generate", kind)
    result = cli("generate", "x", "-m", "apimart:z-image-turbo", "--json")
    assert result.returncode == 1
    doc = result.json()
    assert doc["tasks"][0]["status"] == kind
    assert text in doc["errors"][0]["message"]
    assert text in result.stderr


def test_never_finishing_task_exits_5_with_the_task_id(cli, gateway: FakeGateway) -> None:
    gateway.fault("generate", "never")
    result = cli("generate", "x", "-m", "apimart:z-image-turbo", "--timeout", "1", "--json")
    assert result.returncode == 5, result.stderr
    doc = result.json()
    assert doc["status"] == "submitted"
    (task,) = doc["tasks"]
    assert task["status"] == "pending" and task["remote_id"].startswith("task_")
    assert task["id"] == doc["job"]
    assert task["remote_id"] in result.stderr


def test_partial_success_exits_3(cli, gateway: FakeGateway) -> None:
    gateway.fault("generate", "status", status=500)
    result = cli("generate", "x", "-m", "token360:seedream-4.5", "-n", "2", "--seed", "1", "--json")
    assert result.returncode == 3
    doc = result.json()
    assert doc["status"] == "partial"
    assert len(doc["images"]) == 1 and len(doc["errors"]) == 1


def test_fewer_images_than_asked_is_partial(cli, gateway: FakeGateway) -> None:
    gateway.fault("generate", "fewer")
    result = cli("generate", "x", "-m", "openai:dall-e-2", "-n", "3", "--json")
    assert result.returncode == 3
    assert "asked for 3 image(s), got 2" in result.json()["errors"][0]["message"]


def test_unknown_task_id(cli, gateway: FakeGateway) -> None:
    gateway.fault("poll", "status", status=404, body=b'{"code": 404, "error": {"message": "task not found"}}')
    result = cli("generate", "x", "-m", "apimart:z-image-turbo")
    assert result.returncode == 1
    assert "task not found" in result.stderr


def test_same_origin_download_carries_key_but_redirect_to_cdn_does_not(cli, gateway: FakeGateway) -> None:
    gateway.cross_host_images = False  # images served by the API host itself
    first = cli("generate", "x", "-m", "modelmax:imagen-3")
    assert first.returncode == 0, first.stderr
    file_requests = [r for r in gateway.requests if r.path.startswith("/files/")]
    assert file_requests[0].headers.get("Authorization", "").startswith("Bearer ")

    # Now the API host answers the download with a redirect to the CDN: the key must not follow.
    token = "img-redirected"
    gateway.images[token] = gateway.images[next(iter(gateway.images))]
    gateway.fault("image", "redirect", headers={"Location": f"{gateway.image_origin}/files/{token}.png"})
    second = cli("generate", "x", "-m", "modelmax:imagen-3")
    assert second.returncode == 0, second.stderr
    cdn = [r for r in gateway.image_requests if token in r.path]
    assert cdn and "Authorization" not in cdn[0].headers
