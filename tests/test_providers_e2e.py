"""End to end: the installed imagegen against the fake gateway, one proof per provider and mapping rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from PIL import Image

from tests.fakegateway import FakeGateway

SCHEMA = json.loads((Path(__file__).parent / "data" / "openai-images.schema.json").read_text())


def openai_request_validator() -> Draft202012Validator:
    schema = dict(SCHEMA["schemas"]["CreateImageRequest"])
    schema["additionalProperties"] = False  # catch any field OpenAI does not define
    schema["components"] = {"schemas": SCHEMA["schemas"]}
    return Draft202012Validator(schema)


def assert_images(paths: list[str], size: tuple[int, int], fmt: str = "PNG") -> None:
    for path in paths:
        assert Path(path).is_absolute()
        with Image.open(path) as img:
            img.load()
            assert img.size == size
            assert img.format == fmt


def test_apimart_ratio_resolution_two_tasks(cli, gateway: FakeGateway) -> None:
    result = cli(
        "generate",
        "a red fox",
        "-m",
        "apimart:z-image-turbo",
        "--ratio",
        "16:9",
        "--resolution",
        "2K",
        "-n",
        "2",
    )
    assert result.returncode == 0, result.stderr
    assert len(result.lines) == 2
    assert_images(result.lines, (2048, 1152))
    submits = gateway.calls("apimart")
    assert len(submits) == 2
    for call in submits:
        assert call.body["size"] == "16:9"
        assert call.body["resolution"] == "2K"
        assert "n" not in call.body
        assert call.body["model"] == "z-image-turbo"
    polls = [r for r in gateway.requests if "/tasks/" in r.path]
    assert len(polls) >= 4  # each task answered "processing" once, then "completed"
    # the CDN (127.0.0.2) never sees the key
    assert gateway.image_requests and all("Authorization" not in r.headers for r in gateway.image_requests)


@pytest.mark.parametrize("shape", ["list", "object"])
@pytest.mark.parametrize("url_as_list", [False, True])
def test_apimart_both_submit_shapes_and_url_forms(cli, gateway: FakeGateway, shape: str, url_as_list: bool) -> None:
    gateway.apimart_shape = shape
    gateway.url_as_list = url_as_list
    result = cli("generate", "ink landscape", "-m", "apimart:z-image-turbo", "--json")
    assert result.returncode == 0, result.stderr
    doc = result.json()
    assert doc["status"] == "succeeded"
    assert doc["tasks"][0]["status"] == "succeeded"
    assert_images([doc["images"][0]["path"]], (1024, 1024))


def test_openai_dalle3_fans_out(cli, gateway: FakeGateway) -> None:
    result = cli(
        "generate",
        "a lighthouse",
        "-m",
        "openai:dall-e-3",
        "-n",
        "3",
        "--ratio",
        "16:9",
        "--style",
        "natural",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    calls = gateway.calls("openai")
    assert len(calls) == 3
    validator = openai_request_validator()
    for call in calls:
        validator.validate(call.body)
        assert call.body["n"] == 1
        assert call.body["size"] == "1792x1024"
        assert call.body["style"] == "natural"
    doc = result.json()
    assert [img["index"] for img in doc["images"]] == [1, 2, 3]
    assert_images([img["path"] for img in doc["images"]], (1792, 1024))
    assert any("1792x1024" in note for note in doc["notes"])
    assert all(img["revised_prompt"].startswith("revised:") for img in doc["images"])


def test_openai_gpt_image_has_no_response_format(cli, gateway: FakeGateway) -> None:
    result = cli(
        "generate",
        "a cat",
        "-m",
        "openai:gpt-image-1",
        "-n",
        "2",
        "--size",
        "1536x1024",
        "--quality",
        "hd",
        "--response-format",
        "url",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    (call,) = gateway.calls("openai")
    openai_request_validator().validate(call.body)
    assert "response_format" not in call.body
    assert call.body["n"] == 2
    assert call.body["quality"] == "high"
    doc = result.json()
    assert any("--response-format dropped" in note for note in doc["notes"])
    assert any("--quality hd → high" in note for note in doc["notes"])
    assert_images([img["path"] for img in doc["images"]], (1536, 1024))


def test_openai_ratio_picks_nearest_size_and_says_so(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "a dog", "-m", "openai:gpt-image-1", "--ratio", "16:9")
    assert result.returncode == 0, result.stderr
    assert gateway.calls("openai")[0].body["size"] == "1536x1024"
    assert "--ratio 16:9 → size 1536x1024" in result.stderr


def test_kkiai_aspect_ratio(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "mountains", "-m", "kkiai:flux-kontext-pro", "--ratio", "21:9", "--quality", "hd")
    assert result.returncode == 0, result.stderr
    (call,) = gateway.calls("kkiai")
    assert call.body["aspect_ratio"] == "21:9"
    assert "size" not in call.body and "quality" not in call.body
    assert "--quality dropped" in result.stderr
    assert_images(result.lines, (1344, 576))


def test_kkiai_aspect_ratio_is_always_sent(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "mountains", "-m", "kkiai:flux-kontext-pro", "--size", "1280x720")
    assert result.returncode == 0, result.stderr
    assert gateway.calls("kkiai")[0].body["aspect_ratio"] == "16:9"
    assert "--size 1280x720 → ratio 16:9" in result.stderr


def test_token360_seed_watermark_ratio(cli, gateway: FakeGateway) -> None:
    result = cli(
        "generate",
        "a koi",
        "-m",
        "token360:seedream-4.5",
        "-n",
        "2",
        "--seed",
        "42",
        "--param",
        "watermark=false",
        "--size",
        "1024x1024",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    calls = gateway.calls("token360")
    assert sorted(c.body["seed"] for c in calls) == [42, 43]
    assert all(c.body["watermark"] is False for c in calls)
    doc = result.json()
    assert sorted(img["seed"] for img in doc["images"]) == [42, 43]
    assert doc["usage"]["generated_images"] == 2
    # the seed is in the file's metadata, so the image can be reproduced
    for image in doc["images"]:
        with Image.open(image["path"]) as img:
            assert f"Seed: {image['seed']}," in img.text["parameters"]  # each file carries its own seed

    result = cli("generate", "a koi", "-m", "token360:nano-banana-pro", "--ratio", "16:9", "--quality", "high")
    assert result.returncode == 0, result.stderr
    call = gateway.calls("token360")[-1]
    assert call.body["ratio"] == "16:9" and call.body["quality"] == "high"
    assert "size" not in call.body and "n" not in call.body


def test_mka1_on_behalf_of_header(cli, gateway: FakeGateway) -> None:
    result = cli(
        "generate",
        "a serene lake",
        "-m",
        "mka1:meetkai:z-image-turbo",
        "--on-behalf-of",
        "user-7",
        "--user",
        "abuse-id",
        "--size",
        "512x512",
        "--quality",
        "hd",
        "--style",
        "vivid",
    )
    assert result.returncode == 0, result.stderr
    (call,) = gateway.calls("mka1")
    assert call.path == "/mka1/api/v1/llm/images/generations"
    assert call.headers["X-On-Behalf-Of"] == "user-7"
    assert call.body["model"] == "meetkai:z-image-turbo"
    assert call.body["user"] == "abuse-id"
    assert call.body["quality"] == "hd" and call.body["style"] == "vivid"
    assert_images(result.lines, (512, 512))


def test_mka1_default_model(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "a lake", "--provider", "mka1")
    assert result.returncode == 0, result.stderr
    assert gateway.calls("mka1")[0].body["model"] == "meetkai:z-image-turbo"


def test_modelmax_402(cli, gateway: FakeGateway) -> None:
    gateway.fault(
        "generate",
        "status",
        status=402,
        body=json.dumps({"error": {"message": "Insufficient balance", "type": "insufficient_balance"}}).encode(),
    )
    result = cli("generate", "a city", "-m", "modelmax:imagen-3", "--json")
    assert result.returncode == 1
    assert len(gateway.calls("modelmax")) == 1  # 402 is never retried
    doc = result.json()
    assert doc["status"] == "failed"
    assert doc["errors"][0]["code"] == "insufficient_balance"
    assert "insufficient balance" in doc["errors"][0]["message"]
    assert "error: modelmax: insufficient balance" in result.stderr


def test_modelmax_usage_and_url_download(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "a city", "-m", "modelmax:imagen-3", "--size", "640x480", "--json")
    assert result.returncode == 0, result.stderr
    doc = result.json()
    assert doc["usage"]["total_tokens"] == 3
    assert doc["images"][0]["url"].startswith(gateway.image_origin)
    assert_images([doc["images"][0]["path"]], (640, 480))
