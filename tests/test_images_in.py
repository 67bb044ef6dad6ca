"""Images in: ``--image``, ``--mask``, ``--strength``, ``--input-fidelity`` and ``generate --from`` (issue 22).

Remote mappings are checked against the fake gateway, which parses each multipart body with the standard library's
MIME parser (not httpx's encoder) and checks every field against the ``openai`` package's ``ImageEditParams``.
Local img2img and inpainting run on tiny random-weight pipelines (a UNet and a DiT) in this process.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageStat

from tests.conftest import IMAGEGEN, gateway_env, run_cli
from tests.fakegateway import TEST_KEY, FakeGateway, Form


def _png(path: Path, size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 30, 30)) -> Path:
    Image.new("RGB", size, color).save(path)
    return path


def _alpha_mask(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    """Transparent (to change) on the left half, opaque on the right: OpenAI's rule."""
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    mask.save(path)
    return path


def _bw_mask(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    """White (to change) on the left half, black on the right: diffusers' rule."""
    mask = Image.new("L", size, 0)
    mask.paste(255, (0, 0, size[0] // 2, size[1]))
    mask.save(path)
    return path


def _edit_params() -> set[str]:
    from openai.types.image_edit_params import ImageEditParamsBase

    return set(ImageEditParamsBase.__annotations__)


def _one_line_usage(result: Any, text: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: ") and text in lines[0], result.stderr
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), result.stderr


# ------------------------------------------------------------------------------------------------- OpenAI edits
def test_openai_edit_is_multipart_with_every_field_from_image_edit_params(cli, gateway: FakeGateway, tmp_path: Path):
    photo, logo = _png(tmp_path / "photo.png"), _png(tmp_path / "logo.png", color=(10, 200, 10))
    mask = _alpha_mask(tmp_path / "mask.png")
    result = cli("generate", "put the logo on a mug", "-m", "openai:gpt-image-1.5", "--image", str(photo),
                 "--image", str(logo), "--mask", str(mask), "--input-fidelity", "high", "--quality", "low",
                 "--size", "1024x1024", "-n", "2", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    [call] = gateway.calls("openai", route="images/edits")
    form: Form = call.body
    assert call.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert call.headers["Authorization"] == f"Bearer {TEST_KEY}"
    known = _edit_params()
    assert {name.removesuffix("[]") for name, _ in form.fields} <= known
    assert {name.removesuffix("[]") for name, *_ in form.files} <= known
    assert dict(form.fields) == {"model": "gpt-image-1.5", "prompt": "put the logo on a mug", "size": "1024x1024",
                                 "quality": "low", "n": "2", "input_fidelity": "high"}  # fmt: skip
    images = [part for part in form.files if part[0] == "image[]"]
    assert [(name, filename, ctype) for name, filename, ctype, _ in images] == [
        ("image[]", "photo.png", "image/png"),
        ("image[]", "logo.png", "image/png"),
    ]
    assert images[0][3] == photo.read_bytes() and images[1][3] == logo.read_bytes()
    [(_, mask_name, mask_type, mask_bytes)] = [part for part in form.files if part[0] == "mask"]
    assert mask_type == "image/png" and mask_name == "mask.png"
    sent = Image.open(io.BytesIO(mask_bytes))
    assert sent.format == "PNG" and sent.size == (64, 48) and sent.mode == "RGBA"
    assert sent.getpixel((5, 5))[3] == 0 and sent.getpixel((60, 5))[3] == 255  # transparent = to change
    doc = result.json()
    assert len(doc["images"]) == 2 and all(Path(image["path"]).is_file() for image in doc["images"])
    shown = run_cli("show", doc["images"][0]["path"], "--json").json()[0]["record"]
    assert shown["inputs"] == [
        {"name": "photo.png", "sha256": hashlib.sha256(photo.read_bytes()).hexdigest(), "role": "image"},
        {"name": "logo.png", "sha256": hashlib.sha256(logo.read_bytes()).hexdigest(), "role": "image"},
        {"name": "mask.png", "sha256": hashlib.sha256(mask.read_bytes()).hexdigest(), "role": "mask"},
    ]
    assert shown["input_fidelity"] == "high" and str(tmp_path) not in json.dumps(shown)  # names, never paths


def test_one_image_is_sent_as_image_and_a_black_and_white_mask_is_converted(cli, gateway: FakeGateway, tmp_path):
    photo, mask = _png(tmp_path / "photo.jpg"), _bw_mask(tmp_path / "bw.png")
    Image.new("RGB", (64, 48), (1, 2, 3)).save(photo, format="JPEG")
    result = cli("generate", "winter", "-m", "openai:gpt-image-2", "--image", str(photo), "--mask", str(mask),
                 "--input-fidelity", "low")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "--input-fidelity dropped" in result.stderr  # gpt-image-2 must not be sent it
    form: Form = gateway.calls("openai", route="images/edits")[0].body
    assert [(name, ctype) for name, _, ctype, _ in form.files] == [("image", "image/jpeg"), ("mask", "image/png")]
    assert form.field("input_fidelity") is None
    sent = Image.open(io.BytesIO(form.files[1][3]))
    assert sent.getpixel((5, 5))[3] == 0 and sent.getpixel((60, 5))[3] == 255  # white became transparent


def test_the_dry_run_shows_the_multipart_body_without_the_bytes(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    photo = _png(tmp_path / "photo.png")
    result = cli("generate", "x", "-m", "openai:gpt-image-1.5", "--image", str(photo), "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    [call] = result.json()["calls"]
    assert call["url"].endswith("/images/edits") and call["multipart"]["files"][0]["name"] == "image"
    assert call["multipart"]["files"][0]["sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest()
    assert gateway.requests == []


# ------------------------------------------------------------------------------------------ kkiai and Token360
def test_kkiai_flux_kontext_edits_through_images_edits(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    photo, mask = _png(tmp_path / "p.png"), _alpha_mask(tmp_path / "m.png")
    result = cli("generate", "fix the sky", "-m", "kkiai:flux-kontext-pro", "--image", str(photo), "--mask", str(mask))
    assert result.returncode == 0, result.stderr
    [call] = gateway.calls("kkiai", route="images/edits")
    form: Form = call.body
    assert [name for name, *_ in form.files] == ["image", "mask"] and form.files[0][3] == photo.read_bytes()
    assert form.field("aspect_ratio") == "1:1" and form.field("prompt") == "fix the sky"
    assert gateway.calls("kkiai") == []  # nothing on images/generations


def test_token360_seedream_takes_data_uris_and_urls_in_its_field(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    photo = _png(tmp_path / "p.png")
    url = f"{gateway.image_origin}/files/ref.png"
    result = cli("generate", "same character", "-m", "token360:seedream-4.5", "--image", str(photo), "--image", url)
    assert result.returncode == 0, result.stderr
    assert "not documented by token360 (unconfirmed)" in result.stderr
    body = gateway.calls("token360")[0].body
    first, second = body["image"]
    assert first.startswith("data:image/png;base64,") and second == url
    import base64

    assert base64.b64decode(first.split(",", 1)[1]) == photo.read_bytes()


def test_a_config_table_corrects_an_unconfirmed_field(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[providers.token360.models."kling-image-o1"]\nimage_inputs = { field = "images", max_images = 2 }\n'
    )
    photo = _png(tmp_path / "p.png")
    result = cli("generate", "x", "-m", "token360:kling-image-o1", "--image", str(photo),
                 env={"IMAGEGEN_CONFIG": str(config)})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "unconfirmed" not in result.stderr
    body = gateway.calls("token360")[0].body
    assert "image_list" not in body and body["images"][0].startswith("data:image/png;base64,")


# ----------------------------------------------------------------------------------- refusals: exit 2, nothing sent
@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["-m", "mka1:auto", "--image", "{photo}"], "mka1:auto takes no input image (--image)"),
        (["-m", "modelmax:imagen-3", "--image", "{photo}"], "modelmax:imagen-3 takes no input image"),
        (["-m", "openai:gpt-image-1.5", "--mask", "{mask}"], "--mask needs --image"),
        (["-m", "openai:gpt-image-1.5", "--image", "{photo}", "--mask", "{small}"], "must be the same size"),
        (["-m", "openai:gpt-image-1.5", "--image", "{photo}", "--strength", "1.5"], "--strength 1.5 is out of range"),
        (["-m", "openai:gpt-image-1.5", "--image", "{photo}", "--input-fidelity", "max"], "invalid --input-fidelity"),
        (
            ["-m", "openai:gpt-image-1-mini", "--image", "{photo}", "--input-fidelity", "high"],
            "--input-fidelity high is not accepted by openai:gpt-image-1-mini",
        ),
        (["-m", "kkiai:flux-kontext-pro", "--image", "{photo}", "--image", "{photo}"], "takes at most 1"),
        (["-m", "token360:seedream-4.5", "--image", "{photo}", "--mask", "{mask}"], "takes no --mask"),
        (["-m", "openai:gpt-image-1.5", "--image", "https://example.com/a.png"], "is a URL"),
        (["-m", "openai:gpt-image-1.5", "--image", "{missing}"], "no such file"),
        (["-m", "openai:gpt-image-1.5", "--image", "{text}"], "is not an image"),
        (["-m", "openai:gpt-image-1.5", "--image", "{gif}"], "is GIF image"),
        (["-m", "openai:gpt-image-1.5", "--image", "{truncated}"], "does not decode"),
        (["-m", "local:tiny", "--image", "{photo}", "--image", "{photo}"], "local:tiny starts from one image"),
    ],
)
def test_refusals_exit_2_and_send_nothing(cli, gateway: FakeGateway, tmp_path: Path, args: list[str], text: str):
    paths = {
        "photo": _png(tmp_path / "photo.png"),
        "mask": _alpha_mask(tmp_path / "mask.png"),
        "small": _alpha_mask(tmp_path / "small.png", (32, 32)),
        "missing": tmp_path / "nope.png",
        "text": tmp_path / "notes.png",
        "gif": tmp_path / "anim.gif",
        "truncated": tmp_path / "cut.png",
    }
    paths["text"].write_text("not an image")
    Image.new("RGB", (8, 8)).save(paths["gif"], format="GIF")
    paths["truncated"].write_bytes(paths["photo"].read_bytes()[:60])
    result = cli("generate", "x", *(arg.format(**{k: str(v) for k, v in paths.items()}) for arg in args))
    _one_line_usage(result, text)
    assert gateway.requests == []
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def test_stdin_cannot_be_both_the_prompt_and_the_image(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "-", "-m", "openai:gpt-image-1.5", "--image", "-", input=b"a fox")
    _one_line_usage(result, "--image - and the prompt both read standard input")
    both = cli("generate", "x", "-m", "openai:gpt-image-1.5", "--image", "-", "--mask", "-", input=b"")
    _one_line_usage(both, "--image - and --mask - both read standard input")


# ------------------------------------------------------------------------------- no bytes, no key elsewhere
def test_no_key_and_no_input_bytes_reach_any_host_but_the_providers(cli, gateway: FakeGateway, tmp_path: Path):
    photo = _png(tmp_path / "p.png", color=(12, 34, 56))
    result = cli("generate", "x", "-m", "kkiai:flux-kontext-pro", "--image", str(photo), "--json")
    assert result.returncode == 0, result.stderr
    data = photo.read_bytes()
    for request in gateway.requests:
        carries = data in request.raw or TEST_KEY in json.dumps(request.headers)
        api = request.provider == "kkiai" and request.path.endswith("/images/edits")
        assert not carries or api, f"{request.method} {request.path} carried the input or the key"
    downloads = gateway.image_requests  # the CDN stand-in (127.0.0.2) the answer's URL points to
    assert downloads and all("Authorization" not in r.headers for r in downloads)


# ------------------------------------------------------------------------------------------ local img2img, inpaint
@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "zoo"


def _local(source: Any, out: Path, **fields: Any) -> Any:
    from tests.zoo import generate

    return generate(source, out, **{"n": 1, "seed": 11, "size": "32x32", "steps": 4, **fields})


def _diff(a: bytes, b: bytes) -> float:
    first, second = (Image.frombytes("RGB", (32, 32), data) for data in (a, b))
    return sum(ImageStat.Stat(ImageChops.difference(first, second)).mean)


@pytest.mark.parametrize("name", ["sd", "flux"])  # a UNet and a DiT
def test_local_img2img_same_seed_same_pixels_and_strength_moves_away(name: str, zoo_dir: Path, tmp_path: Path):
    pytest.importorskip("diffusers")
    from imagegen_cli.inputs import load_input
    from tests.zoo import build

    source = build(name, zoo_dir)
    photo = load_input(str(_png(tmp_path / "in.png", (32, 32), (220, 40, 40))))
    input_pixels = Image.open(tmp_path / "in.png").convert("RGB").tobytes()
    near = _local(source, tmp_path / "a", images=(photo,), strength=0.1, steps=10)
    again = _local(source, tmp_path / "b", images=(photo,), strength=0.1, steps=10)
    far = _local(source, tmp_path / "c", images=(photo,), strength=0.9, steps=10)
    assert near.errors == [] and far.errors == [], near.errors + far.errors
    assert near.pixels() == again.pixels()
    assert _diff(near.pixels()[0], input_pixels) < _diff(far.pixels()[0], input_pixels)
    meta = near.metadata()
    assert meta["strength"] == 0.1 and meta["inputs"][0]["name"] == "in.png"
    assert "Img2Img" in meta["pipeline"]


@pytest.mark.parametrize("name", ["sd", "flux"])
def test_local_inpainting_repaints_the_mask_and_is_reproducible(name: str, zoo_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("diffusers")
    from imagegen_cli.inputs import load_input
    from tests.zoo import build

    source = build(name, zoo_dir)
    photo = load_input(str(_png(tmp_path / "in.png", (32, 32))))
    mask = load_input(str(_alpha_mask(tmp_path / "mask.png", (32, 32))), "mask")
    first = _local(source, tmp_path / "a", images=(photo,), mask=mask)
    second = _local(source, tmp_path / "b", images=(photo,), mask=mask)
    assert first.errors == [], first.errors
    assert first.pixels() == second.pixels()
    assert "Inpaint" in first.metadata()["pipeline"]
    assert [entry["role"] for entry in first.metadata()["inputs"]] == ["image", "mask"]


def test_a_strength_too_small_for_one_step_is_refused(zoo_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("diffusers")
    from imagegen_cli.inputs import load_input
    from tests.zoo import build

    photo = load_input(str(_png(tmp_path / "in.png", (32, 32))))
    outcome = _local(build("sd", zoo_dir), tmp_path / "a", images=(photo,), strength=0.1, steps=4)
    assert outcome.images == [] and len(outcome.errors) == 1
    assert "--strength 0.1 x 4 steps is less than one denoising step" in outcome.errors[0]


def test_an_input_of_another_size_is_resized_with_a_note(zoo_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("diffusers")
    from imagegen_cli.inputs import load_input
    from tests.zoo import build

    photo = load_input(str(_png(tmp_path / "wide.png", (96, 40))))
    outcome = _local(build("sd", zoo_dir), tmp_path / "a", images=(photo,), strength=0.5)
    assert outcome.errors == [] and outcome.sizes() == [(32, 32)]
    assert any("--image wide.png 96x40 → 32x32" in note for note in outcome.notes), outcome.notes


# -------------------------------------------------------------------------------------------- pipes and replay
def test_a_generated_image_pipes_into_the_next_as_its_input(tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    command = (
        f"'{IMAGEGEN}' generate a -m local:tiny --seed 1 -o - | "
        f"'{IMAGEGEN}' generate b -m local:tiny --image - --strength 0.5 -o '{out}'"
    )
    done = subprocess.run(["sh", "-c", command], env=os.environ, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    record = run_cli("show", str(out), "--json").json()[0]["record"]
    assert record["inputs"][0]["name"] == "stdin" and record["strength"] == 0.5
    with Image.open(out) as image:
        assert image.size == (64, 64)


def test_replay_gives_identical_pixels_and_flags_override(tmp_path: Path) -> None:
    first = tmp_path / "first.png"
    made = run_cli("generate", "a lighthouse", "-m", "local:tiny", "--seed", "5", "--steps", "3", "-o", str(first))
    assert made.returncode == 0, made.stderr
    again = run_cli("generate", "--from", str(first), "-o", str(tmp_path / "again.png"))
    assert again.returncode == 0, again.stderr
    with Image.open(first) as a, Image.open(tmp_path / "again.png") as b:
        assert a.convert("RGB").tobytes() == b.convert("RGB").tobytes()
    changed = run_cli("generate", "--from", str(first), "--steps", "2", "--json", "-o", str(tmp_path / "c.png"))
    record = run_cli("show", changed.json()["images"][0]["path"], "--json").json()[0]["record"]
    assert record["steps"] == 2 and record["seed"] == 5 and record["prompt"] == "a lighthouse"


def test_replay_of_an_edit_finds_its_input_and_checks_it(tmp_path: Path) -> None:
    photo = _png(tmp_path / "in.png", (64, 64))
    edited = tmp_path / "edited.png"
    made = run_cli("generate", "oil", "-m", "local:tiny", "--image", str(photo), "--strength", "0.6", "--seed", "2",
                   "-o", str(edited))  # fmt: skip
    assert made.returncode == 0, made.stderr
    again = run_cli("generate", "--from", str(edited), "-o", str(tmp_path / "again.png"))
    assert again.returncode == 0, again.stderr
    with Image.open(edited) as a, Image.open(tmp_path / "again.png") as b:
        assert a.convert("RGB").tobytes() == b.convert("RGB").tobytes()
    _png(photo, (64, 64), (0, 0, 255))  # the input changed: replay cannot find the one it recorded
    _one_line_usage(run_cli("generate", "--from", str(edited)), "its image in.png (SHA-256")


def test_replay_of_a_file_without_parameters_is_one_line(tmp_path: Path) -> None:
    plain = _png(tmp_path / "plain.png")
    _one_line_usage(run_cli("generate", "--from", str(plain)), "holds no generation parameters")


# ---------------------------------------------------------------------------------------------------- resume
def test_a_changed_input_is_refused_on_resume(gateway: FakeGateway, tmp_path: Path) -> None:
    photo = _png(tmp_path / "p.png")
    prompts = tmp_path / "lines.jsonl"
    prompts.write_text(json.dumps({"prompt": "a", "image": str(photo)}) + "\n" + json.dumps({"prompt": "b"}) + "\n")
    gateway.fault("generate", "status", status=400)  # line b fails: the batch is left to resume
    env = gateway_env(gateway)
    args = ("generate", "--prompt-file", str(prompts), "-m", "openai:gpt-image-1.5", "-o", str(tmp_path / "out"))
    first = run_cli(*args, "--concurrency", "1", env=env)
    assert first.returncode != 0
    _png(photo, color=(0, 0, 0))
    resumed = run_cli(*args, "--resume", env=env)
    _one_line_usage(resumed, f"line 1: image {photo} changed since the job started")


# ------------------------------------------------------------------------------------------ apimart: upload first
def test_apimart_uploads_each_file_once_then_submits_its_urls(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    photo = _png(tmp_path / "p.png")
    url = "https://cdn.example.net/ref.png"
    result = cli("generate", "same cat", "-m", "apimart:gpt-4o-image", "--image", str(photo), "--image", url,
                 "--image", str(photo), "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    [(field_name, filename, ctype, data)] = gateway.uploads  # one upload for the file given twice
    assert (field_name, filename, ctype, data) == ("file", "p.png", "image/png", photo.read_bytes())
    uploaded = f"{gateway.image_origin}/uploads/1-p.png"
    [submit] = gateway.calls("apimart")
    assert submit.body["image_urls"] == [uploaded, url, uploaded]
    paths = [r.path for r in gateway.requests if r.provider == "apimart" and r.method == "POST"]
    assert paths[0].endswith("/uploads/images") and paths[1].endswith("/images/generations")  # upload first


def test_an_upload_is_never_retried_blindly(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    photo = _png(tmp_path / "p.png")
    gateway.fault("upload", "status", status=500)
    result = cli("generate", "x", "-m", "apimart:gpt-4o-image", "--image", str(photo))
    assert result.returncode != 0 and "HTTP 500" in result.stderr, result.stderr
    assert len([r for r in gateway.requests if r.path.endswith("/uploads/images")]) == 1
    assert gateway.calls("apimart") == []  # nothing submitted without its input


def test_a_resumed_apimart_line_reuses_its_upload(gateway: FakeGateway, tmp_path: Path) -> None:
    photo = _png(tmp_path / "p.png")
    prompts = tmp_path / "lines.jsonl"
    prompts.write_text(json.dumps({"prompt": "a", "image": str(photo)}) + "\n")
    gateway.fault("generate", "status", status=400)  # the submit fails after the upload: the line is left to resume
    env = gateway_env(gateway)
    args = ("generate", "--prompt-file", str(prompts), "-m", "apimart:gpt-4o-image", "-o", str(tmp_path / "out"))
    first = run_cli(*args, env=env)
    assert first.returncode != 0 and len(gateway.uploads) == 1, first.stderr
    resumed = run_cli(*args, "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert len(gateway.uploads) == 1 and "the earlier run's upload is reused" in resumed.stderr
    assert gateway.calls("apimart")[-1].body["image_urls"] == [f"{gateway.image_origin}/uploads/1-p.png"]


def test_an_a1111_png_replays_where_its_model_is_known(tmp_path: Path) -> None:
    from PIL import PngImagePlugin

    def a1111(model: str) -> Path:
        info = PngImagePlugin.PngInfo()
        info.add_text(
            "parameters", f"a red barn\nSteps: 3, Sampler: Euler a, CFG scale: 1, Seed: 9, Size: 64x64, Model: {model}"
        )
        path = tmp_path / f"{model}.png"
        Image.new("RGB", (64, 64)).save(path, pnginfo=info)
        return path

    made = run_cli("generate", "--from", str(a1111("tiny")), "--json", "-o", str(tmp_path / "out"))
    assert made.returncode == 0, made.stderr
    record = run_cli("show", made.json()["images"][0]["path"], "--json").json()[0]["record"]
    assert (record["prompt"], record["model"], record["seed"], record["steps"]) == ("a red barn", "tiny", 9, 3)
    assert record["scheduler"] == "EulerAncestralDiscreteScheduler"
    unknown = a1111("sd_xl_base_1.0")
    _one_line_usage(run_cli("generate", "--from", str(unknown)), "(sd_xl_base_1.0) is not one imagegen knows")
    chosen = run_cli("generate", "--from", str(unknown), "-m", "local:tiny", "-o", str(tmp_path / "chosen.png"))
    assert chosen.returncode == 0, chosen.stderr


def test_an_editing_pipeline_takes_the_image_as_it_is(zoo_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("diffusers")
    from diffusers import FluxKontextPipeline

    from imagegen_cli.inputs import load_input
    from tests.zoo import build

    kontext = tmp_path / "kontext"
    FluxKontextPipeline.from_pretrained(build("flux", zoo_dir)).save_pretrained(kontext)
    photo = load_input(str(_png(tmp_path / "in.png", (32, 32))))
    first = _local(kontext, tmp_path / "a", images=(photo,), steps=2)
    again = _local(kontext, tmp_path / "b", images=(photo,), steps=2)
    assert first.errors == [] and first.sizes() == [(32, 32)], first.errors + first.notes
    assert first.metadata()["pipeline"] == "FluxKontextPipeline"  # no img2img wrapper: it edits by itself
    assert first.pixels() == again.pixels()


def test_a_planned_batch_holds_no_input_bytes(tmp_path: Path) -> None:
    # Every line is planned before anything is sent: a plan names its inputs, and their bytes are read per call.
    from imagegen_cli import api
    from imagegen_cli.options import GenerateOptions, PromptLine
    from imagegen_cli.providers.calls import MultipartPayload

    photo = _png(tmp_path / "p.png")
    lines = [PromptLine(n, f"line {n}", {"image": str(photo)}) for n in range(1, 4)]
    for model in ("openai:gpt-image-1.5", "token360:seedream-4.5", "apimart:gpt-4o-image"):
        for job in api.plan(lines, GenerateOptions(model=model)):
            plan: Any = job.plan
            for http in [*(u.http for u in plan.uploads), *(c.http for c in plan.calls)]:
                payload = http.payload
                if isinstance(payload, MultipartPayload):
                    assert all(part.content is None and part.source is not None for part in payload.files)
                else:
                    assert b"data:image" not in payload.content and len(payload.content) < 2000


def test_replay_onto_another_model_keeps_only_what_any_model_takes(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    first = tmp_path / "first.png"
    made = run_cli("generate", "a barn", "-m", "local:tiny", "--seed", "4", "--steps", "3", "--param", "eta=0.5",
                   "-o", str(first))  # fmt: skip
    assert made.returncode == 0, made.stderr
    result = cli("generate", "--from", str(first), "-m", "openai:gpt-image-1.5", "--strict", "--dry-run", "--json")
    assert result.returncode == 2 and "--steps dropped" in result.stderr  # --steps was the image's, not taken
    loose = cli("generate", "--from", str(first), "-m", "openai:gpt-image-1.5", "--dry-run", "--json")
    assert loose.returncode == 0, loose.stderr
    body = loose.json()["calls"][0]["body"]
    assert body["prompt"] == "a barn" and "size" not in body and "eta" not in body  # the local size and params stay


def test_a_mask_on_an_editing_model_is_refused_before_loading(tmp_path: Path) -> None:
    photo, mask = _png(tmp_path / "p.png"), _alpha_mask(tmp_path / "m.png")
    result = run_cli(
        "generate", "x", "-m", "local:flux-kontext", "--image", str(photo), "--mask", str(mask), "--dry-run"
    )
    _one_line_usage(result, "local:flux-kontext edits by instruction and takes no --mask")
