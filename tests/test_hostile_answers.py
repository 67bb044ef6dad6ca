"""Gateway answers parsed field by field: one absurd field or one bad image never costs the whole answer."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import IMAGEGEN, gateway_env, run_cli
from tests.fakegateway import FakeGateway, gzip_bomb, png_bytes

HUGE = int("9" * 400)  # json.dumps writes it as a 400-digit integer; float() of it overflows


def _answer(gateway: FakeGateway, items: list[dict[str, object]], usage: object = None) -> None:
    doc: dict[str, object] = {"created": 1, "data": items}
    if usage is not None:
        doc["usage"] = usage
    gateway.fault("generate", "status", status=200, body=json.dumps(doc).encode())


def _generate(gateway: FakeGateway, out: Path, count: int) -> tuple[int, dict[str, object], str]:
    result = run_cli(
        "generate", "a fox", "-m", "openai:dall-e-2", "-n", str(count), "--size", "256x256",
        "-o", str(out), "--json", env=gateway_env(gateway),
    )  # fmt: skip
    return result.returncode, result.json(), result.stderr


def _b64() -> str:
    return base64.b64encode(png_bytes(256, 256)).decode()


def test_a_400_digit_expires_at_is_ignored_not_fatal(gateway: FakeGateway, tmp_path: Path) -> None:
    _answer(gateway, [{"b64_json": _b64(), "expires_at": HUGE}], usage={"total_tokens": HUGE})
    code, doc, stderr = _generate(gateway, tmp_path / "out", 1)
    assert code == 0, stderr
    (image,) = doc["images"]  # type: ignore[misc]
    with Image.open(image["path"]) as img:
        assert img.size == (256, 256)
    assert "OverflowError" not in stderr and "internal" not in stderr.lower()


def test_one_malformed_data_url_loses_only_its_image(gateway: FakeGateway, tmp_path: Path) -> None:
    good = {"url": f"data:image/png;base64,{_b64()}"}
    _answer(gateway, [good, good, {"url": "data:image/png;base64"}, good], usage={"total_tokens": HUGE})
    code, doc, stderr = _generate(gateway, tmp_path / "out", 4)
    assert code == 3, stderr  # partial
    images = doc["images"]
    assert isinstance(images, list) and len(images) == 3
    for image in images:
        with Image.open(image["path"]) as img:
            img.load()
    errors = doc["errors"]
    assert isinstance(errors, list) and len(errors) == 1
    assert "image 3" in errors[0]["message"] and "malformed data URL" in errors[0]["message"]


def test_a_huge_progress_while_polling_is_ignored(gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.fault(
        "poll", "status", status=200,
        body=json.dumps({"code": 200, "data": {"status": "processing", "progress": HUGE}}).encode(),
    )  # fmt: skip
    result = run_cli(
        "generate", "a fox", "-m", "apimart:gpt-image-1", "-o", str(tmp_path / "out"), "--json",
        env=gateway_env(gateway),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(result.json()["images"]) == 1


# ---------------------------------------------------------------- 20.11: nested gzip, bounded while decoding

PEAK_PROBE = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True)
sys.stderr.buffer.write(proc.stderr)
print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _double_bomb() -> bytes:
    bomb = gzip.compress(gzip_bomb(4096), 9)  # 4 GiB of zeros → 4 MB → a few KB on the wire
    assert len(bomb) < 100_000
    return bomb


@pytest.mark.parametrize(("route", "model", "message"), [
    ("generate", "openai:gpt-image-2", "refusing a decompression bomb"),
    ("image", "modelmax:imagen-3", "larger than"),
])  # fmt: skip
def test_a_double_gzip_bomb_is_refused_in_bounded_memory(
    gateway: FakeGateway, route: str, model: str, message: str
) -> None:
    gateway.fault(route, "status", status=200, body=_double_bomb(), headers={"Content-Encoding": "gzip, gzip"})
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_PROBE, str(IMAGEGEN), "generate", "x", "-m", model],
        env={**os.environ, **gateway_env(gateway)}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    code, peak_kib = (int(v) for v in proc.stdout.split())
    assert code == 1, proc.stderr
    assert message in proc.stderr
    assert peak_kib < 400 * 1024, f"peak RSS {peak_kib // 1024} MiB"
