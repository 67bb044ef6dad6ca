"""``--preview``: saved images drawn in the terminal, through chafa.py (the ``preview`` extra).

chafa.py wraps libchafa (bundled in its wheel), which speaks every image protocol terminals have: kitty's
graphics protocol (kitty, Ghostty, Konsole), iTerm2's inline images (iTerm2, WezTerm, VS Code), sixel (foot,
mlterm, WezTerm, xterm -ti vt340) and, anywhere else, coloured Unicode symbols (half blocks and finer). The
protocol is chosen from the terminal's identity in the environment (``TERM``, ``TERM_PROGRAM``, ...; chafa's own
terminal database), never by querying the terminal, which could hang a pipe; ``IMAGEGEN_PREVIEW=kitty|iterm2|
sixel|symbols`` overrides it. A preview is drawn only on a terminal: never into a pipe, a file, ``--json``, ``-q``
or ``-o -`` output. ``NO_COLOR`` makes the symbol fallback monochrome (shapes only); the image protocols send
pictures, not coloured text, and are kept.
"""

from __future__ import annotations

import os
import shutil
from typing import IO, TYPE_CHECKING, Any

from imagegen_cli.errors import UsageError

if TYPE_CHECKING:
    from pathlib import Path

    from imagegen_cli.cli.render import Output

PROTOCOLS = ("kitty", "iterm2", "sixel", "symbols")
PREVIEW_HINT = "install it with: pip install 'imagegen-cli[preview]'"
MAX_COLUMNS = 60  # a preview is a glance, not a viewer: at most this many cells wide
CELL = (10, 20)  # pixels per character cell, assumed (a terminal does not say without being asked)


def require_preview() -> None:
    """``--preview`` without chafa.py installed: one line with the pip command (exit 2)."""
    try:
        import chafa  # noqa: F401
    except ImportError:
        raise UsageError("--preview needs the preview extra (chafa.py)", hint=PREVIEW_HINT) from None


def choose_protocol(env: dict[str, str] | None = None) -> str:
    """The best protocol the terminal in ``env`` (default: this process's) is known to speak."""
    env = dict(os.environ if env is None else env)
    forced = env.get("IMAGEGEN_PREVIEW", "").strip().lower()
    if forced:
        if forced not in PROTOCOLS:
            raise UsageError(f"IMAGEGEN_PREVIEW={forced!r} is not a protocol", hint="use " + ", ".join(PROTOCOLS))
        return forced
    info = _term_info(env)
    from chafa import TermSeq

    for protocol, seq in (
        ("kitty", TermSeq.CHAFA_TERM_SEQ_BEGIN_KITTY_IMMEDIATE_IMAGE_V1),
        ("iterm2", TermSeq.CHAFA_TERM_SEQ_BEGIN_ITERM2_IMAGE),
        ("sixel", TermSeq.CHAFA_TERM_SEQ_BEGIN_SIXELS),
    ):
        if info.have_seq(seq):
            return protocol
    return "symbols"


def _term_info(env: dict[str, str]) -> Any:
    """chafa's description of the terminal, from the environment it reads (TERM, TERM_PROGRAM, ...)."""
    from chafa import TermDb

    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        return TermDb().detect()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def render(path: Path, protocol: str, columns: int, *, color: bool = True, info: Any = None) -> bytes:
    """The escape sequences that draw the image at ``path`` in at most ``columns`` cells (``info``: the
    terminal's sequences, :func:`printing_info`, looked up once by a :class:`Previewer`)."""
    from chafa import Canvas, CanvasConfig, CanvasMode, PixelMode, PixelType
    from PIL import Image

    with Image.open(path) as opened:
        opened.draft("RGB", (columns * CELL[0], columns * CELL[0]))  # JPEG: decode at the size shown
        image = opened.convert("RGBA")
    image.thumbnail((columns * CELL[0], columns * CELL[1] * 2))  # no need to hand chafa more pixels than cells
    config = CanvasConfig()
    config.pixel_mode = {
        "kitty": PixelMode.CHAFA_PIXEL_MODE_KITTY,
        "iterm2": PixelMode.CHAFA_PIXEL_MODE_ITERM2,
        "sixel": PixelMode.CHAFA_PIXEL_MODE_SIXELS,
        "symbols": PixelMode.CHAFA_PIXEL_MODE_SYMBOLS,
    }[protocol]
    if protocol == "symbols":
        config.canvas_mode = CanvasMode.CHAFA_CANVAS_MODE_TRUECOLOR if color else CanvasMode.CHAFA_CANVAS_MODE_FGBG
    config.cell_width, config.cell_height = CELL
    config.width, config.height = columns, max(1, columns)
    config.calc_canvas_geometry(image.width, image.height, CELL[0] / CELL[1])
    canvas = Canvas(config)
    canvas.draw_all_pixels(PixelType.CHAFA_PIXEL_RGBA8_UNASSOCIATED, image.tobytes(), image.width, image.height,
                           image.width * 4)  # fmt: skip
    return bytes(canvas.print(info if info is not None else printing_info()))


def printing_info() -> Any:
    """The terminal's own sequences, completed by chafa's fallback set for any the chosen protocol needs (a
    protocol forced with IMAGEGEN_PREVIEW on a terminal chafa's database does not know)."""
    from chafa import TermDb

    info = _term_info(dict(os.environ))
    info.supplement(TermDb().get_fallback_info())
    return info


class Previewer:
    """Draws saved images on ``stream`` (a terminal), each followed by a new line."""

    def __init__(self, stream: IO[str], protocol: str | None = None) -> None:
        self.stream = stream
        self.protocol = protocol or choose_protocol()
        width = shutil.get_terminal_size((80, 24)).columns
        self.columns = max(8, min(MAX_COLUMNS, width - 1))
        self.color = not os.environ.get("NO_COLOR")
        self.info = printing_info()

    def draw(self, path: str | Path) -> None:
        from pathlib import Path

        try:
            data = render(Path(path), self.protocol, self.columns, color=self.color, info=self.info)
        except Exception as exc:  # noqa: BLE001 - undecodable, over Pillow's bomb limit...: a line, never a failure
            self.stream.write(f"(no preview: {type(exc).__name__})\n")
            return
        self.stream.flush()
        self.stream.buffer.write(data) if hasattr(self.stream, "buffer") else self.stream.write(data.decode())
        self.stream.write("\n")
        self.stream.flush()


def previewer(stream: IO[str], output: Output, *, to_stdout: bool = False) -> Previewer | None:
    """A previewer when previews may be drawn on ``stream``: a terminal, and no --json, -q or -o -."""
    if output.json_mode or output.quiet or to_stdout or not stream.isatty():
        return None
    require_preview()
    return Previewer(stream)
