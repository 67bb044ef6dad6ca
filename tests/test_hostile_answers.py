"""Gateway answers parsed field by field: one absurd field or one bad image never costs the whole answer."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from PIL import Image

from tests.conftest import gateway_env, run_cli
from tests.fakegateway import FakeGateway, png_bytes

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
