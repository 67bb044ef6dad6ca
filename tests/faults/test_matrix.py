"""Every dialect × every fault, and every provider × the faults its own error shapes decide.

The dialect matrix checks exit code, a one-line error naming the cause, no partial file and a true journal.
Dialects: OpenAI-style answering base64 (openai:dall-e-2, through the fake gateway's base URL), OpenAI-style
answering URLs on a CDN (modelmax:imagen-3), and submit-and-poll tasks (apimart:z-image-turbo). The provider
matrix runs the faults whose outcome depends on each provider's own answers (error bodies, retry counts).
The single cases at the end are the ones no matrix row can express.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import gateway_env, run_cli
from tests.fakegateway import FakeGateway

DIALECTS = {"sync-b64": "openai:dall-e-2", "sync-url": "modelmax:imagen-3", "tasks": "apimart:z-image-turbo"}
URL_DIALECTS = ("sync-url", "tasks")


@dataclass(frozen=True)
class Fault:
    """One row of the matrix."""

    name: str
    setup: Callable[[FakeGateway], None]
    exit_code: int | dict[str, int]  # one code, or per dialect
    message: str | dict[str, str]  # one text, or per dialect
    dialects: tuple[str, ...] = tuple(DIALECTS)
    args: tuple[str, ...] = ()


# A download that fails: a synchronous answer's image is lost (exit 1), a task's stays on the gateway, resumable with
# `tasks wait` (exit 5): only the gateway's own word (a failed task, an expired link) ends a task.
DOWNLOAD = {"sync-url": 1, "tasks": 5}


def gen(kind: str, **kw: object) -> Callable[[FakeGateway], None]:
    return lambda gw: gw.fault("generate", kind, **kw)  # type: ignore[arg-type]


def image(kind: str, **kw: object) -> Callable[[FakeGateway], None]:
    return lambda gw: gw.fault("image", kind, **kw)  # type: ignore[arg-type]


def status_body(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "api_error"}}).encode()


def redirect_generate(gw: FakeGateway) -> None:
    gw.fault("generate", "redirect", headers={"Location": f"{gw.image_origin}/files/elsewhere.png"})


def redirect_download(gw: FakeGateway) -> None:
    gw.cross_host_images = False  # the API host serves the image... by redirecting to the CDN
    gw.images["moved"] = __import__("tests.fakegateway", fromlist=["png_bytes"]).png_bytes(64, 64)
    gw.fault("image", "redirect", headers={"Location": f"{gw.image_origin}/files/moved.png"})


def expire(gw: FakeGateway) -> None:
    # Past its expiry time *and* refused by the CDN: expired. (A link the CDN still serves is saved whatever
    # its expiry says, since clocks differ: tests/test_tasks.py.)
    gw.expires_in = -3600
    gw.fault("image", "status", status=403)


NO_TASK = "carried no task id"
FAULTS = [
    Fault(
        "connection refused",
        lambda gw: None,
        1,
        "cannot reach 127.0.0.1:9",
        args=("--base-url", "http://127.0.0.1:9/v1"),
    ),
    Fault("reset mid-body, once", gen("reset"), 0, ""),
    Fault("reset mid-body, always", gen("reset", times=99), 1, "cannot reach"),
    Fault("429 with Retry-After, twice", gen("status", status=429, times=2, headers={"Retry-After": "0"}), 0, ""),
    Fault("429 without Retry-After, twice", gen("status", status=429, times=2), 0, ""),
    Fault(
        "429 always",
        gen("status", status=429, times=99, body=status_body("slow down")),
        1,
        "rate limited (HTTP 429): api_error: slow down",
    ),
    Fault("500", gen("status", status=500, body=status_body("boom")), 1, "HTTP 500: api_error: boom"),
    Fault(
        "502 always",
        gen("status", status=502, times=99, body=status_body("upstream")),
        1,
        "upstream provider error (HTTP 502)",
    ),
    Fault("503 always", gen("status", status=503, times=99), 1, "HTTP 503"),
    Fault("504 always", gen("status", status=504, times=99), 1, "HTTP 504"),
    Fault("invalid JSON", gen("invalid_json"), 1, "invalid JSON in response"),
    Fault(
        "JSON of the wrong shape",
        gen("wrong_shape"),
        1,
        {"sync-b64": "unexpected response shape", "sync-url": "unexpected response shape", "tasks": NO_TASK},
    ),
    Fault("HTML error page", gen("html", status=500), 1, "HTTP 500: 502 Bad Gateway"),
    Fault(
        "empty data",
        gen("empty_data"),
        1,
        {"sync-b64": "contained no images", "sync-url": "contained no images", "tasks": NO_TASK},
    ),
    Fault("invalid base64", gen("bad_b64"), 1, "invalid base64", dialects=("sync-b64",)),
    Fault("truncated PNG", gen("truncated_b64"), 1, "is not a valid image", dialects=("sync-b64",)),
    Fault("truncated PNG download", image("truncated"), DOWNLOAD, "is not a valid image", dialects=URL_DIALECTS),
    Fault("non-image bytes", gen("not_image_b64"), 1, "is not a valid image", dialects=("sync-b64",)),
    Fault("non-image download", image("not_image"), DOWNLOAD, "is not a valid image", dialects=URL_DIALECTS),
    Fault("decompression bomb", gen("bomb_b64"), 1, "possible decompression bomb", dialects=("sync-b64",)),
    Fault("decompression bomb download", image("bomb"), DOWNLOAD, "possible decompression bomb", dialects=URL_DIALECTS),
    Fault(
        "download 404",
        image("status", status=404, body=b"<html><title>Not Found</title></html>"),
        DOWNLOAD,
        "image download failed (HTTP 404",
        dialects=URL_DIALECTS,
    ),
    Fault(
        "download 403",
        image("status", status=403, body=b"AccessDenied"),
        DOWNLOAD,
        "image download failed (HTTP 403",
        dialects=URL_DIALECTS,
    ),
    Fault("download reset, always", image("reset", times=99), DOWNLOAD, "image download from", dialects=URL_DIALECTS),
    Fault("expired result", expire, 1, "expired at", dialects=("tasks",)),
    Fault("download redirected to another host", redirect_download, 0, "", dialects=("sync-url",)),
    Fault("API answer redirected to another host", redirect_generate, 1, "invalid JSON in response (HTTP 302)"),
    Fault("slower than --timeout", gen("slow", delay=4), 1, "no answer within --timeout", args=("--timeout", "1")),
    Fault("task failed", gen("failed"), 1, "task task_", dialects=("tasks",)),
    Fault("task cancelled", gen("cancelled"), 1, "was cancelled: cancelled by operator", dialects=("tasks",)),
    Fault(
        "task never finishes", gen("never"), 5, "timed out; still pending", dialects=("tasks",), args=("--timeout", "1")
    ),
    Fault(
        "unknown task id",
        lambda gw: gw.fault(
            "poll", "status", status=404, body=b'{"code": 404, "error": {"message": "task not found"}}'
        ),
        1,
        "task not found",
        dialects=("tasks",),
    ),
]
CASES = [pytest.param(f, d, id=f"{d}-{f.name.replace(' ', '_')}") for f in FAULTS for d in f.dialects]


@pytest.mark.parametrize(("fault", "dialect"), CASES)
def test_fault(fault: Fault, dialect: str, gateway: FakeGateway, tmp_path: Path) -> None:
    fault.setup(gateway)
    out = tmp_path / "out"
    result = run_cli(
        "generate",
        "a lighthouse",
        "-m",
        DIALECTS[dialect],
        "-o",
        str(out),
        *fault.args,
        env=gateway_env(gateway),
        timeout=60,
    )
    exit_code = fault.exit_code[dialect] if isinstance(fault.exit_code, dict) else fault.exit_code
    assert result.returncode == exit_code, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    if exit_code == 0:
        assert errors == []
        assert len(result.lines) == 1 and Path(result.lines[0]).is_file()
    else:
        assert len(errors) == 1, result.stderr
        expected = fault.message[dialect] if isinstance(fault.message, dict) else fault.message
        assert expected in errors[0], errors[0]
    # Nothing half-written: only finished images, under their real names.
    files = list(out.iterdir()) if out.exists() else []
    assert all(not f.name.startswith(".") for f in files), files
    assert sorted(str(f) for f in files) == sorted(result.lines)
    # The journal tells the same story.
    (job,) = run_cli("tasks", "list", "--json").json()
    expected_status = {0: {"succeeded"}, 1: {"failed", "expired", "cancelled"}, 5: {"submitted", "running"}}[exit_code]
    assert job["status"] in expected_status, job
    assert job["paths"] == result.lines
    if exit_code == 5 and isinstance(fault.exit_code, dict):
        # The gateway finished the task; its image could not be fetched: the task is resumable, and said so.
        assert [t["status"] for t in job["tasks"]] == ["succeeded"]
        assert f"imagegen tasks wait {job['id']}" in result.stderr
    elif exit_code == 5:
        assert [t["status"] for t in job["tasks"]] == ["pending"]
    if fault.name.startswith("download redirected"):
        cdn = [r for r in gateway.image_requests if "moved" in r.path]
        assert cdn and all("Authorization" not in r.headers for r in cdn)
    if fault.name.startswith("API answer redirected"):
        assert gateway.image_requests == []  # the redirect was not followed, so the key went nowhere


# ---------------------------------------------------------------- every provider
PROVIDER_MODELS = {
    "openai": "openai:gpt-image-1.5",
    "mka1": "mka1:meetkai:z-image-turbo",
    "kkiai": "kkiai:flux-kontext-pro",
    "modelmax": "modelmax:imagen-3",
    "token360": "token360:seedream-4.5",
    "apimart": "apimart:z-image-turbo",
}


@dataclass(frozen=True)
class ProviderFault:
    """A fault injected for one provider only, with what the run must make of it."""

    name: str
    kind: str
    kwargs: dict[str, object]
    exit_code: int
    calls: int  # requests the gateway must have seen (retries included)
    message: str = ""


PROVIDER_FAULTS = [
    ProviderFault("transient 429", "status", {"status": 429, "times": 2, "headers": {"Retry-After": "0"}}, 0, 3),
    ProviderFault("transient 502", "status", {"status": 502, "times": 2}, 0, 3),
    ProviderFault("transient 503", "status", {"status": 503, "times": 2}, 0, 3),
    ProviderFault("transient 504", "status", {"status": 504, "times": 2}, 0, 3),
    ProviderFault("dropped connection", "drop", {}, 0, 2),
    ProviderFault("persistent 503", "status", {"status": 503, "times": 99}, 1, 5, "HTTP 503: api_error: injected 503"),
    ProviderFault("500 is not retried", "status", {"status": 500}, 1, 1, "HTTP 500"),
]
PROVIDER_CASES = [
    pytest.param(p, f, id=f"{p}-{f.name.replace(' ', '_')}") for p in PROVIDER_MODELS for f in PROVIDER_FAULTS
]


@pytest.mark.parametrize(("provider", "fault"), PROVIDER_CASES)
def test_provider_fault(provider: str, fault: ProviderFault, gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.fault("generate", fault.kind, provider=provider, **fault.kwargs)  # type: ignore[arg-type]
    out = tmp_path / "out"
    result = run_cli("generate", "x", "-m", PROVIDER_MODELS[provider], "-o", str(out), env=gateway_env(gateway))
    assert result.returncode == fault.exit_code, result.stderr
    assert len(gateway.calls(provider)) == fault.calls
    if fault.exit_code == 0:
        assert len(result.lines) == 1 and Path(result.lines[0]).is_file()
    else:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(f"error: {provider}: {fault.message}"), result.stderr
        assert result.stdout == "" and not (out.exists() and list(out.iterdir()))


# ---------------------------------------------------------------- single cases
def test_retry_after_is_honoured(gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.fault("generate", "status", status=429, headers={"Retry-After": "1"})
    start = time.monotonic()
    result = run_cli("generate", "x", "-m", "openai:gpt-image-1.5", "-o", str(tmp_path), env=gateway_env(gateway))
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start >= 1.0


def test_retry_after_beyond_the_timeout_ends_as_rate_limited_at_once(gateway: FakeGateway, tmp_path: Path) -> None:
    body = {"error": {"message": "Rate limit reached", "type": "rate_limit_error", "code": "429"}}
    gateway.fault("generate", "status", status=429, headers={"Retry-After": "120"}, body=json.dumps(body).encode())
    start = time.monotonic()
    result = run_cli("generate", "x", "-m", "token360:seedream-4.5", "--timeout", "5", "-o", str(tmp_path),
                     env=gateway_env(gateway))  # fmt: skip
    assert result.returncode == 1 and time.monotonic() - start < 5
    assert "rate limited (HTTP 429)" in result.stderr and "Rate limit reached" in result.stderr


def test_html_error_page_keeps_its_title_on_one_line(gateway: FakeGateway, tmp_path: Path) -> None:
    page = b"<!DOCTYPE html><html><head><title>Internal oops</title></head><body><pre>trace\nback</pre></body></html>"
    gateway.fault("generate", "status", status=500, body=page)
    result = run_cli("generate", "x", "-m", "openai:gpt-image-1.5", "-o", str(tmp_path), env=gateway_env(gateway))
    assert result.returncode == 1
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error.startswith("error: openai: HTTP 500: Internal oops")


def test_error_without_an_error_object_uses_its_message(gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.fault("generate", "status", status=400, body=b'{"code": 400, "message": "prompt rejected"}')
    result = run_cli("generate", "x", "-m", "apimart:z-image-turbo", "-o", str(tmp_path), env=gateway_env(gateway))
    assert result.returncode == 1 and "HTTP 400: prompt rejected" in result.stderr


def test_never_finishing_task_exits_5_with_the_task_id(gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.fault("generate", "never")
    result = run_cli("generate", "x", "-m", "apimart:z-image-turbo", "--timeout", "1", "--json", "-o", str(tmp_path),
                     env=gateway_env(gateway))  # fmt: skip
    assert result.returncode == 5, result.stderr
    doc = result.json()
    assert doc["status"] == "submitted"
    (task,) = doc["tasks"]
    assert task["status"] == "pending" and task["remote_id"].startswith("task_") and task["id"] == doc["job"]
    assert task["remote_id"] in result.stderr


def test_one_call_of_two_failing_is_partial(gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.fault("generate", "status", status=500)
    result = run_cli("generate", "x", "-m", "token360:seedream-4.5", "-n", "2", "--seed", "1", "--json", "-o",
                     str(tmp_path), env=gateway_env(gateway))  # fmt: skip
    assert result.returncode == 3
    doc = result.json()
    assert doc["status"] == "partial" and len(doc["images"]) == 1 and len(doc["errors"]) == 1


def test_fewer_images_than_asked_is_partial_and_an_invalid_response(gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.fault("generate", "fewer")
    result = run_cli("generate", "x", "-m", "openai:gpt-image-1.5", "-n", "3", "--json", "-o", str(tmp_path),
                     env=gateway_env(gateway))  # fmt: skip
    assert result.returncode == 3
    (error,) = result.json()["errors"]
    assert error["code"] == "invalid_response" and "asked for 3 image(s), got 2" in error["message"]


def test_same_origin_download_carries_the_key_but_a_redirect_to_a_cdn_does_not(
    gateway: FakeGateway, tmp_path: Path
) -> None:
    env = gateway_env(gateway)
    gateway.cross_host_images = False  # images served by the API host itself
    first = run_cli("generate", "x", "-m", "modelmax:imagen-3", "-o", str(tmp_path), env=env)
    assert first.returncode == 0, first.stderr
    file_requests = [r for r in gateway.requests if r.path.startswith("/files/")]
    assert file_requests[0].headers.get("Authorization", "").startswith("Bearer ")
    token = "img-redirected"
    gateway.images[token] = gateway.images[next(iter(gateway.images))]
    gateway.fault("image", "redirect", headers={"Location": f"{gateway.image_origin}/files/{token}.png"})
    second = run_cli("generate", "x", "-m", "modelmax:imagen-3", "-o", str(tmp_path), env=env)
    assert second.returncode == 0, second.stderr
    cdn = [r for r in gateway.image_requests if token in r.path]
    assert cdn and "Authorization" not in cdn[0].headers
