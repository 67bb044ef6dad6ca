"""Saving huge but legal images within a memory bound (issue 20.12): proof without decoding, one shared budget."""

from __future__ import annotations

import importlib.util
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest

from imagegen_cli.store.containers import ContainerError
from imagegen_cli.store.containers.png import PngLayout

ROOT = Path(__file__).resolve().parent.parent


def _bench() -> object:
    spec = importlib.util.spec_from_file_location("big_png_memory", ROOT / "bench" / "big_png_memory.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png(width: int, height: int, raw: bytes, *, interlace: int = 0, colour: int = 2) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_a_png_with_every_row_is_proven_and_one_missing_rows_is_refused() -> None:
    whole = b"\x00" * (10 * (1 + 3 * 10))
    PngLayout.parse(_png(10, 10, whole)).prove_pixels(step=7)
    with pytest.raises(ContainerError, match="incomplete"):
        PngLayout.parse(_png(10, 10, whole[: len(whole) // 2])).prove_pixels()  # valid CRCs, half the rows
    with pytest.raises(ContainerError, match="longer"):
        PngLayout.parse(_png(10, 10, whole + b"\x00" * 31)).prove_pixels()
    # Adam7: the seven passes of a 10x10 RGB image hold 320 bytes of filtered rows (Pillow agrees), not 310.
    PngLayout.parse(_png(10, 10, b"\x00" * 320, interlace=1)).prove_pixels()
    with pytest.raises(ContainerError):
        PngLayout.parse(_png(10, 10, whole, interlace=1)).prove_pixels()


def test_the_budget_never_lets_more_than_its_capacity_be_held() -> None:
    from imagegen_cli.store.budget import MemoryBudget

    budget = MemoryBudget(10)
    peak = [0]

    def hold(size: int, meet: threading.Barrier) -> None:
        with budget.take(size):
            peak[0] = max(peak[0], budget.in_use)
            try:
                meet.wait()  # two that fit together meet here; two that do not never do
            except threading.BrokenBarrierError:
                pass

    together = threading.Barrier(2, timeout=30)  # both fit: they meet at once
    small = [threading.Thread(target=hold, args=(5, together)) for _ in range(2)]
    for thread in small:
        thread.start()
    for thread in small:
        thread.join()
    assert peak[0] == 10  # both held at once: they fit
    alone = threading.Barrier(2, timeout=0.2)  # they cannot meet: each lets go when its wait breaks
    big = [threading.Thread(target=hold, args=(8, alone)) for _ in range(2)]
    peak[0] = 0
    for thread in big:
        thread.start()
    for thread in big:
        thread.join()
    assert peak[0] == 8 and budget.in_use == 0  # one after the other
    with budget.take(50):  # larger than the whole: takes all of it, alone
        assert budget.in_use == 10


@pytest.fixture(scope="module")
def big_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("big") / "big.png"
    source.write_bytes(_bench().big_png())  # type: ignore[attr-defined]
    return source


@pytest.mark.parametrize(("count", "limit_mb"), [(1, 300), (8, 600)])
def test_99_megapixel_pngs_are_saved_within_the_memory_goal(
    tmp_path: Path, big_png: Path, count: int, limit_mb: int
) -> None:
    """Memory, not time: the peak RSS of a fresh process saving 289 KB files of 99 megapixels each."""
    bench = _bench()
    source = big_png
    out = subprocess.run(
        [sys.executable, "-c", bench.SAVE, str(source), str(count), str(tmp_path / "out")],  # type: ignore[attr-defined]
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    peak = int(out.stdout.strip())
    assert peak < limit_mb, f"{peak} MB"
    saved = sorted((tmp_path / "out").iterdir())
    assert len(saved) == count and all(PngLayout.parse(p.read_bytes()).width == 9950 for p in saved)
