"""``imagegen gallery``: the contact sheet's tiles, escaping, thumbnail cache, job ids, errors, and a real browser."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import typer
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner

from imagegen_cli.cli.gallery_cmd import gallery
from imagegen_cli.gallery import CSP, build_gallery, thumbnail_cache_dir
from imagegen_cli.meta import ImageMeta
from imagegen_cli.store.metadata import png_texts
from tests.conftest import CAPTURED, Result, run_cli

# Read now: the autouse isolated_env fixture drops every IMAGEGEN_* variable before each test runs.
ARTIFACTS = os.environ.get("IMAGEGEN_TEST_ARTIFACTS")
SCRIPT = "<script>document.body.dataset.pwned='1'</script>"
ATTRIBUTE = '"><img src=x onerror="document.body.dataset.pwned=2">'
PROMPTS = ["a red fox in the snow", f"before {SCRIPT} after", f"quote {ATTRIBUTE} end"]


def write_png(path: Path, prompt: str, *, seed: int = 3, color: tuple[int, int, int] = (200, 90, 40)) -> Path:
    """A 64x64 PNG carrying imagegen's record in an iTXt chunk, as the writer embeds it."""
    record = ImageMeta(
        prompt=prompt, provider="local", model="tiny", seed=seed, width=64, height=64, created="2026-12-05T10:00:00Z"
    ).to_record()
    info = PngImagePlugin.PngInfo()
    for key, text in png_texts(record):
        info.add_itxt(key, text)
    Image.new("RGB", (64, 64), color).save(path, pnginfo=info)
    return path


def make_folder(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [
        write_png(folder / f"{n}.png", prompt, seed=n, color=(60 * n, 120, 90)) for n, prompt in enumerate(PROMPTS)
    ]
    plain = folder / "zz-plain.jpg"  # no metadata at all: still an image, still a tile
    Image.new("RGB", (96, 48), (20, 160, 220)).save(plain)
    return [*paths, plain]


def invoke(*args: str) -> Result:
    """The command through a Typer app of its own (the test does not depend on app.py registering it)."""
    app = typer.Typer()
    app.command()(gallery)
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    stdout, stderr = result.stdout_bytes, result.stderr_bytes or b""
    CAPTURED.extend([stdout, stderr])
    return Result(result.exit_code, stdout.decode(), stderr.decode(), stdout)


class Page(HTMLParser):
    """The parts of a gallery page the tests look at, as a browser's parser sees them."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.tiles: list[dict[str, Any]] = []
        self.scripts: list[str] = []
        self.body: dict[str, str | None] | None = None
        self._field: str | None = None
        self._in_tile = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append((tag, found))
        classes = (found.get("class") or "").split()
        if tag == "body":
            self.body = found
        elif tag == "figure" and "tile" in classes:
            self._in_tile = True
            self.tiles.append({"attrs": found, "prompt": "", "meta": "", "code": "", "href": None, "src": None})
        elif tag == "p" and classes and classes[0] in ("prompt", "meta") and self._in_tile:
            self._field = classes[0]
        elif tag == "code" and self._in_tile:
            self._field = "code"
        elif tag == "a" and "thumb" in classes:
            self.tiles[-1]["href"] = found["href"]
        elif tag == "img" and self._in_tile:
            self.tiles[-1]["src"] = found["src"]
        elif tag == "script":
            self._field = "script"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("p", "code", "script"):
            self._field = None
        elif tag == "figure":
            self._in_tile = False

    def handle_data(self, data: str) -> None:
        if self._field == "script":
            self.scripts.append(data)
        elif self._field is not None and self._in_tile:
            self.tiles[-1][self._field] += data


def assert_inert(page: Page) -> None:
    """Only the page's own script, no event-handler attribute, every image an embedded thumbnail."""
    assert [tag for tag, _ in page.tags].count("script") == 1
    assert not any(name.startswith("on") for _, attrs in page.tags for name in attrs), "an event handler got in"
    sources = [attrs.get("src") for tag, attrs in page.tags if tag == "img" and attrs.get("id") != "full"]
    assert sources and all(str(src).startswith("data:image/webp;base64,") for src in sources)
    assert "pwned" not in "".join(page.scripts)


def test_one_tile_per_image_prompts_escaped_filter_and_replay(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    paths = make_folder(folder)
    hostile = write_png(folder / 'x"><svg onload=alert(1)>.png', "hostile name")
    paths.insert(3, hostile)  # sorted by name: after 0.png 1.png 2.png, before zz-plain.jpg
    result = invoke(str(folder))
    assert result.returncode == 0, result.stderr
    assert result.lines == [str(folder / "index.html")]
    text = (folder / "index.html").read_text(encoding="utf-8")
    assert SCRIPT not in text and "onerror=" not in text.replace("onerror=&quot;", "")
    assert '<meta charset="utf-8">' in text and "http://" not in text and "https://" not in text
    page = Page(text)
    (policy,) = [attrs["content"] for tag, attrs in page.tags if attrs.get("http-equiv") == "Content-Security-Policy"]
    assert policy == CSP and str(policy).startswith("default-src 'none';")
    assert_inert(page)
    assert [tile["prompt"] for tile in page.tiles] == [*PROMPTS, "hostile name", "(no parameters)"]
    assert any(tag == "input" and attrs.get("id") == "filter" for tag, attrs in page.tags)
    for tile, path in zip(page.tiles, paths, strict=True):
        assert (folder / _unquote(tile["href"])).resolve() == path.resolve()
        if tile["prompt"] == "(no parameters)":
            assert tile["code"] == ""  # nothing to replay
        else:
            assert tile["code"] == f"imagegen generate --from {shlex.quote(str(path.absolute()))}"
            assert "local:tiny" in tile["meta"] and "64×64" in tile["meta"] and "2026-12-0" in tile["meta"]
    assert "data-search" in text and page.tiles[1]["attrs"]["data-search"].startswith("before <script>")


def _unquote(href: str) -> str:
    from urllib.parse import unquote

    assert ":" not in href  # relative, never a scheme
    return unquote(href)


def test_rebuild_hashes_and_decodes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "out"
    paths = make_folder(folder)
    out = tmp_path / "sheet.html"
    first = build_gallery([folder], out)
    assert (first.images, first.cached, first.placeholders) == (len(paths), 0, 0)
    assert len(list(thumbnail_cache_dir().glob("*.webp"))) == len(paths)
    page = out.read_bytes()

    opened: list[object] = []
    real_open = Image.open

    def counting_open(*args: Any, **kwargs: Any) -> Image.Image:
        opened.append(args[0])
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    second = build_gallery([folder], out)
    assert (second.images, second.cached) == (len(paths), len(paths))
    assert opened == [], "a rebuild decoded an image"
    assert out.read_bytes() == page  # the same page, byte for byte

    write_png(paths[0], "a changed fox", seed=9)  # new bytes: only that one is made again
    third = build_gallery([folder], out)
    assert third.cached == len(paths) - 1 and len(opened) >= 1
    assert "a changed fox" in out.read_text(encoding="utf-8")


def test_broken_and_oversized_images_get_placeholder_tiles(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    Image.new("1", (8200, 8000)).save(folder / "huge.png")  # 65.6 megapixels, a few KB on disk
    write_png(folder / "ok.png", "fine")
    result = invoke(str(folder), "--json")
    assert result.returncode == 0, result.stderr
    assert result.json() == {"path": str((folder / "index.html").absolute()), "images": 3}
    assert "2 image(s) could not be previewed" in result.stderr
    text = (folder / "index.html").read_text(encoding="utf-8")
    assert "cannot preview this file" in text and "too large to preview (8200×8000)" in text
    assert [tile["prompt"] for tile in Page(text).tiles] == ["(no parameters)", "(no parameters)", "fine"]


def test_job_id_files_and_open(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = cli("generate", "a fox in a job", "-m", "openai:dall-e-2", "--size", "256x256", "-n", "2")
    assert made.returncode == 0, made.stderr
    (job,) = run_cli("tasks", "list", "--json").json()
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda uri, *a, **k: opened.append(uri) or True)
    extra = write_png(tmp_path / "extra.png", "one more")
    result = invoke(job["id"], str(extra), "--open")  # no folder among them: ./gallery.html
    assert result.returncode == 0, result.stderr
    out = Path("gallery.html")
    assert result.lines == ["gallery.html"] and out.is_file()
    assert opened == [out.absolute().as_uri()]
    tiles = Page(out.read_text(encoding="utf-8")).tiles
    assert [tile["prompt"] for tile in tiles] == ["a fox in a job", "a fox in a job", "one more"]
    assert sorted(Path(_unquote(tile["href"])).resolve() for tile in tiles[:2]) == sorted(
        Path(path).resolve() for path in job["paths"]
    )


@pytest.mark.parametrize("bad", ["no-such-folder-or-job", "notes.txt"])
def test_bad_argument_is_exit_2_and_writes_nothing(tmp_path: Path, bad: str) -> None:
    folder = tmp_path / "out"
    make_folder(folder)
    Path("notes.txt").write_text("not an image")
    result = invoke(str(folder), bad)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), lines
    assert bad in lines[0] and result.stdout == ""
    assert not (folder / "index.html").exists() and not Path("gallery.html").exists()
    assert not thumbnail_cache_dir().exists()
    assert not (Path(os.environ["XDG_DATA_HOME"]) / "imagegen" / "journal.sqlite3").exists()  # no journal made


def test_an_empty_folder_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = invoke(str(tmp_path / "empty"))
    assert result.returncode == 2 and result.stderr.startswith("error: no images to show\nhint: ")
    assert not (tmp_path / "empty" / "index.html").exists()


def test_importing_the_gallery_loads_neither_torch_nor_pillow() -> None:
    probe = (
        "import sys, imagegen_cli.gallery, imagegen_cli.cli.gallery_cmd\n"
        "print(sorted({'torch', 'diffusers', 'PIL'} & set(sys.modules)))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert proc.stdout.strip() == "[]"


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("no chromium: apt-get install chromium")
    return found


def _chromium_run(binary: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_in_headless_chromium_tiles_render_and_injected_script_never_runs(tmp_path: Path) -> None:
    binary = _chromium()
    folder = tmp_path / "out"
    make_folder(folder)
    assert invoke(str(folder)).returncode == 0
    uri = (folder / "index.html").absolute().as_uri()
    # The hash sets the filter at load: the dumped DOM shows the page's script ran, and filtered.
    dumped = _chromium_run(binary, tmp_path, "--dump-dom", uri + "#fox")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    page = Page(dumped.stdout)
    assert [tile["prompt"] for tile in page.tiles] == [*PROMPTS, "(no parameters)"]
    assert page.body is not None and "data-pwned" not in page.body  # the injected scripts never ran
    assert "data-pwned" not in dumped.stdout
    shown = [tile["prompt"] for tile in page.tiles if "hidden" not in tile["attrs"]]
    assert shown == ["a red fox in the snow"]
    assert "1 of 4 images" in dumped.stdout

    shot = tmp_path / "gallery.png"
    taken = _chromium_run(binary, tmp_path, f"--screenshot={shot}", "--window-size=1280,900", uri)
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    with Image.open(shot) as image:
        image.load()
        assert image.size == (1280, 900)
        colors = image.convert("RGB").resize((64, 64)).getcolors(64 * 64) or []
        assert len(colors) > 10  # drawn, not blank
    if ARTIFACTS:
        Path(ARTIFACTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(ARTIFACTS) / "gallery.png")


def test_generate_gallery_writes_the_batchs_page_and_prints_it_last(cli: Any, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a fox\na <b>hen</b>\n")
    out = tmp_path / "out"
    made = cli("generate", "--prompt-file", str(prompts), "-m", "openai:dall-e-2", "--size", "256x256", "--gallery",
               "-o", str(out))  # fmt: skip
    assert made.returncode == 0, made.stderr
    page_path = Path(made.stdout.splitlines()[-1])
    assert page_path.parent == out and page_path.name.startswith("gallery-") and page_path.suffix == ".html"
    page = Page(page_path.read_text())
    assert sorted(tile["prompt"] for tile in page.tiles) == ["a <b>hen</b>", "a fox"]
    assert_inert(page)
    again = cli("generate", "one more", "-m", "openai:dall-e-2", "--size", "256x256", "--gallery", "--json",
                "-o", str(tmp_path / "json"))  # fmt: skip
    assert Path(again.json()["gallery"]).is_file()


def test_a_page_the_gallery_did_not_write_is_never_replaced(tmp_path: Path) -> None:
    make_folder(tmp_path / "pics")
    mine = tmp_path / "pics" / "index.html"
    mine.write_text("<html>my own page</html>")
    refused = invoke(str(tmp_path / "pics"))
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f"error: {mine} exists and is not an imagegen gallery",
        "hint: choose another page with -o PATH",
    ]
    assert mine.read_text() == "<html>my own page</html>"
    built = invoke(str(tmp_path / "pics"), "-o", str(tmp_path / "sheet.html"))
    assert built.returncode == 0 and invoke(str(tmp_path / "pics"), "-o", str(tmp_path / "sheet.html")).returncode == 0
