"""``imagegen show``: the record embedded by the writer read back, in every format, plus A1111's text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from imagegen_cli.meta import ImageMeta
from imagegen_cli.store.reader import NoParameters, parse_a1111, read_meta
from imagegen_cli.store.writer import ImageWriter, OutputSpec
from tests.conftest import heavy_imports, run_cli
from tests.imagesamples import SVG

PROMPT = "a lighthouse -- ünïcode 灯塔\x1b[31m"


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "gif"])
def test_remote_images_round_trip_in_every_format(cli, fmt: str) -> None:
    made = cli("generate", PROMPT, "-m", "openai:gpt-image-1.5", "--seed", "9", "--format", fmt, "--json")
    assert made.returncode == 0, made.stderr
    path = made.json()["images"][0]["path"]
    meta = read_meta(Path(path))
    assert (meta.prompt, meta.provider, meta.model, meta.index) == (PROMPT, "openai", "gpt-image-1.5", 1)
    shown = run_cli("show", path, "--json")
    assert shown.returncode == 0, shown.stderr
    (document,) = shown.json()
    assert document["path"] == path and document["record"]["prompt"] == PROMPT
    text = run_cli("show", path)
    assert text.returncode == 0 and "\x1b" not in text.stdout and "灯塔" in text.stdout


def test_svg_round_trip(tmp_path: Path) -> None:
    spec = OutputSpec.from_args(
        str(tmp_path), default_dir=None, template=None, fmt="svg", overwrite=False, metadata=True, n=1
    )
    writer = ImageWriter(spec, prompt=PROMPT, provider="test", model="m", n=1)
    meta = ImageMeta(prompt=PROMPT, provider="test", model="m", index=1, seed=4)
    saved = writer.save_bytes(SVG, index=1, seed=4, meta=meta)
    meta = read_meta(Path(saved.path))
    assert (meta.prompt, meta.seed, meta.index) == (PROMPT, 4, 1)
    assert run_cli("show", saved.path, "--json").json()[0]["record"]["seed"] == 4


def test_local_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("diffusers")
    made = run_cli("generate", "a fox", "-m", "local:tiny", "--seed", "7", "-o", str(tmp_path), "--json")
    assert made.returncode == 0, made.stderr
    image = made.json()["images"][0]
    meta = read_meta(Path(image["path"]))
    assert (meta.prompt, meta.provider, meta.seed) == ("a fox", "local", 7)
    assert (meta.width, meta.height) == (image["width"], image["height"])


A1111 = (
    "a castle on a hill\nsecond line\nNegative prompt: blurry, low quality\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 123, Size: 512x768, Model hash: abc, Model: sd15, "
    'Lora hashes: "a: 1, b: 2", Version: v1.6'
)


def test_an_a1111_png_is_read(tmp_path: Path) -> None:
    info = PngInfo()
    info.add_text("parameters", A1111)
    path = tmp_path / "a1111.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    meta = read_meta(path)
    assert meta.prompt == "a castle on a hill\nsecond line"
    assert meta.negative_prompt == "blurry, low quality"
    assert (meta.steps, meta.scheduler, meta.guidance, meta.seed) == (20, "Euler a", 7.5, 123)
    assert (meta.width, meta.height, meta.model) == (512, 768, "sd15")
    assert meta.extra["a1111"]["Lora hashes"] == "a: 1, b: 2"
    shown = run_cli("show", str(path), "--json").json()[0]["record"]
    assert shown["scheduler"] == "Euler a"


def test_a1111_without_settings_line() -> None:
    assert parse_a1111("just a prompt")["prompt"] == "just a prompt"


def test_files_without_parameters_exit_2(tmp_path: Path) -> None:
    bare = tmp_path / "bare.png"
    Image.new("RGB", (4, 4)).save(bare)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for path in (bare, text, tmp_path / "missing.png"):
        with pytest.raises(NoParameters):
            read_meta(path)
        result = run_cli("show", str(path))
        assert result.returncode == 2 and result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: ")


def test_several_files_print_what_can_be_read_and_exit_2(tmp_path: Path) -> None:
    info = PngInfo()
    info.add_text("parameters", A1111)
    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8)).save(good, pnginfo=info)
    result = run_cli("show", str(good), str(tmp_path / "missing.png"), "--json")
    assert result.returncode == 2
    assert [entry["path"] for entry in json.loads(result.stdout)] == [str(good)]


def test_show_starts_light(tmp_path: Path) -> None:
    info = PngInfo()
    info.add_text("parameters", A1111)
    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8)).save(good, pnginfo=info)
    heavy, (out,) = heavy_imports(["show", str(good), "--json"])
    assert heavy == [] and "castle" in out


def test_a_png_over_pillows_bomb_limit_is_read_without_decoding_and_never_a_traceback(tmp_path: Path) -> None:
    from PIL import Image, PngImagePlugin

    from imagegen_cli.meta import ImageMeta
    from imagegen_cli.store.metadata import png_texts

    Image.MAX_IMAGE_PIXELS, limit = None, Image.MAX_IMAGE_PIXELS
    try:
        huge = Image.new("1", (14000, 14000))  # 196 megapixels: Pillow refuses to open it at all
        info = PngImagePlugin.PngInfo()
        for key, value in png_texts(ImageMeta(prompt="a huge sky", provider="local", model="tiny", seed=5).to_record()):
            info.add_itxt(key, value, zip=True)
        huge.save(tmp_path / "huge.png", pnginfo=info)
        huge.save(tmp_path / "bare.png")
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    shown = run_cli("show", str(tmp_path / "huge.png"), "--json")
    assert shown.returncode == 0, shown.stderr
    assert shown.json()[0]["record"]["prompt"] == "a huge sky" and shown.json()[0]["record"]["seed"] == 5
    bare = run_cli("show", str(tmp_path / "bare.png"))
    assert (
        bare.returncode == 2
        and bare.stderr.splitlines()[0] == f"error: {tmp_path / 'bare.png'} holds no generation parameters"
    )
