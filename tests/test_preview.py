"""``--preview`` (issue 25): saved images drawn in the terminal by chafa.py, in each protocol it offers (kitty,
iTerm2, sixel, coloured symbols), chosen from the terminal's identity; checked under a real pseudo-terminal, and
absent when stdout is not a terminal, with ``--json``, ``-q`` and ``-o -``.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IMAGEGEN, run_cli

pytest.importorskip("chafa")

MARKERS = {
    "kitty": b"\x1b_Ga=T",  # kitty graphics: transmit and display
    "iterm2": b"\x1b]1337;File=inline=1",  # iTerm2 inline image
    "sixel": b"\x1bP0;1;0q",  # DCS ... q: a sixel image
    "symbols": b"\x1b[38;2;",  # truecolor foreground on Unicode symbols
}
TERMINALS = {
    "kitty": {"TERM": "xterm-kitty"},
    "iterm2": {"TERM": "xterm-256color", "TERM_PROGRAM": "iTerm.app"},
    "sixel": {"TERM": "foot"},
    "symbols": {"TERM": "xterm-256color", "COLORTERM": "truecolor"},
}


def on_a_terminal(*args: str, env: dict[str, str], bound: float = 120.0) -> tuple[int, bytes, str]:
    """Run imagegen with stdout on a pseudo-terminal; (exit code, what the terminal got, stderr)."""
    import select
    import tempfile
    import time

    master, slave = pty.openpty()
    base = {k: v for k, v in os.environ.items() if k not in ("TERM", "TERM_PROGRAM", "COLORTERM", "NO_COLOR")}
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty child cannot block on it
        process = subprocess.Popen([str(IMAGEGEN), *args], stdout=slave, stderr=errors, env={**base, **env})
        os.close(slave)
        received = bytearray()
        ends = time.monotonic() + bound
        try:
            while time.monotonic() < ends:
                ready, _, _ = select.select([master], [], [], 1.0)
                if not ready:
                    if process.poll() is not None:
                        break
                    continue
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed its end
                    break
                if not chunk:
                    break
                received += chunk
        finally:
            os.close(master)
            if process.poll() is None:
                process.kill()
            process.wait(60)
        errors.seek(0)
        return process.returncode, bytes(received), errors.read().decode()


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    """A picture with its record, as imagegen saves one (a gradient: every protocol has something to draw)."""
    from PIL import Image, PngImagePlugin

    from imagegen_cli.meta import ImageMeta
    from imagegen_cli.store.metadata import png_texts

    image = Image.new("RGB", (64, 48))
    image.putdata([(x * 4, y * 5, 128) for y in range(48) for x in range(64)])
    info = PngImagePlugin.PngInfo()
    for key, value in png_texts(ImageMeta(prompt="a red barn", provider="local", model="tiny", seed=1).to_record()):
        info.add_itxt(key, value)
    image.save(tmp_path / "barn.png", pnginfo=info)
    return tmp_path / "barn.png"


@pytest.mark.parametrize("protocol", list(TERMINALS))
def test_show_preview_draws_in_the_terminals_own_protocol(protocol: str, picture: Path) -> None:
    code, screen, stderr = on_a_terminal("show", str(picture), "--preview", env=TERMINALS[protocol])
    assert code == 0, stderr
    assert b"prompt: a red barn" in screen
    assert MARKERS[protocol] in screen
    others = [name for name, marker in MARKERS.items() if name != protocol and marker in screen]
    assert others == []


def test_no_color_draws_shapes_without_colour_and_the_protocol_can_be_forced(picture: Path) -> None:
    plain = {**TERMINALS["symbols"], "NO_COLOR": "1"}
    _, screen, _ = on_a_terminal("show", str(picture), "--preview", env=plain)
    assert b"\x1b[38;2;" not in screen and b"\x1b[48;2;" not in screen  # no colour at all
    assert len(screen.splitlines()) > 5  # the picture's rows are there, as shapes
    _, forced, _ = on_a_terminal("show", str(picture), "--preview", env={"TERM": "dumb", "IMAGEGEN_PREVIEW": "sixel"})
    assert MARKERS["sixel"] in forced
    code, _, stderr = on_a_terminal("show", str(picture), "--preview", env={"IMAGEGEN_PREVIEW": "braille"})
    assert code == 2 and stderr.startswith("error: IMAGEGEN_PREVIEW='braille' is not a protocol")


def test_generate_preview_draws_each_image_under_its_path_on_a_terminal(tmp_path: Path) -> None:
    args = ("generate", "a lighthouse", "-m", "local:tiny", "--seed", "2", "--size", "64x64", "-n", "2")
    code, screen, stderr = on_a_terminal(*args, "-o", str(tmp_path / "a"), "--preview", env=TERMINALS["symbols"])
    assert code == 0, stderr
    paths = sorted(str(path) for path in (tmp_path / "a").iterdir())
    assert len(paths) == 2 and screen.count(MARKERS["symbols"]) > 10
    first, second = screen.index(paths[0].encode()), screen.index(paths[1].encode())
    assert MARKERS["symbols"] in screen[first:second]  # the first picture sits between the two paths


def test_json_on_a_terminal_is_the_document_alone(picture: Path) -> None:
    code, screen, stderr = on_a_terminal("show", str(picture), "--preview", "--json", env=TERMINALS["kitty"])
    assert code == 0, stderr
    assert MARKERS["kitty"] not in screen and json.loads(screen.decode())[0]["record"]["prompt"] == "a red barn"


def test_no_preview_into_a_pipe_with_q_or_with_o_dash(tmp_path: Path) -> None:
    from imagegen_cli.cli.preview import previewer
    from imagegen_cli.cli.render import Output

    piped = run_cli("generate", "x", "-m", "local:tiny", "--size", "64x64", "--preview", "-o", str(tmp_path / "a"))
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.splitlines() == [str(next((tmp_path / "a").iterdir()))]  # the path, nothing drawn

    class Terminal:
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    assert previewer(terminal, Output(), to_stdout=False) is not None  # type: ignore[arg-type]
    assert previewer(terminal, Output(quiet=True)) is None  # type: ignore[arg-type]
    assert previewer(terminal, Output(json_mode=True)) is None  # type: ignore[arg-type]
    assert previewer(terminal, Output(), to_stdout=True) is None  # type: ignore[arg-type]


def test_without_the_extra_preview_is_one_line_with_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from imagegen_cli.cli.preview import require_preview
    from imagegen_cli.errors import UsageError

    monkeypatch.setitem(sys.modules, "chafa", None)
    with pytest.raises(UsageError) as missing:
        require_preview()
    assert missing.value.message == "--preview needs the preview extra (chafa.py)"
    assert missing.value.hint == "install it with: pip install 'imagegen-cli[preview]'"


def test_an_image_pillow_cannot_open_is_a_line_not_a_failure(tmp_path: Path) -> None:
    import io

    from imagegen_cli.cli.preview import Previewer

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    screen = io.StringIO()
    Previewer(screen, "symbols").draw(broken)
    assert screen.getvalue().startswith("(no preview: ")
