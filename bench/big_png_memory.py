"""Peak memory of saving legal 99-megapixel PNGs (289 KB on the wire each): one, and eight at once.

Each figure is the peak RSS (VmHWM) of a fresh process that saves the images through imagegen's writer;
the baseline, measured in the same run, is a process that decodes the same files the way the writer did before
(Pillow, every pixel). Goal (issue 20.12): under 300 MB for one, under 600 MB for eight in flight.

Run: .venv/bin/python bench/big_png_memory.py
"""

from __future__ import annotations

import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

SIDE = 9950  # 99 MP


def big_png(side: int = SIDE) -> bytes:
    """A valid RGB PNG of one colour: rows of zeros, compressed row by row (never the whole image in memory)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    row = b"\x00" * (1 + 3 * side)
    deflate = zlib.compressobj(9)
    body = b"".join(deflate.compress(row) for _ in range(side)) + deflate.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


# The child's own peak: VmHWM belongs to the new process image; ru_maxrss would also count the parent's memory
# at the fork (a pytest worker with torch loaded), which survives exec.
PEAK = """
def peak_mb():
    import resource
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
"""

SAVE = (
    PEAK
    + """
import resource, sys, threading
from pathlib import Path
from imagegen_cli.meta import ImageMeta
from imagegen_cli.store.writer import ImageWriter, OutputSpec
data = Path(sys.argv[1]).read_bytes()
count = int(sys.argv[2])
fmt = sys.argv[4] if len(sys.argv) > 4 else None
spec = OutputSpec.from_args(
    sys.argv[3], default_dir=None, template=None, fmt=fmt, overwrite=False, metadata=True, n=count
)
writer = ImageWriter(spec, prompt="x", provider="bench", model="m", n=count)
meta = ImageMeta(prompt="x", provider="bench", model="m")
threads = [threading.Thread(target=writer.save_bytes, args=(data,), kwargs={"index": i + 1, "seed": None, "meta": meta})
           for i in range(count)]
for t in threads: t.start()
for t in threads: t.join()
print(peak_mb())
"""
)

DECODE = (
    PEAK
    + """
import io, resource, sys, threading
from pathlib import Path
from PIL import Image
Image.MAX_IMAGE_PIXELS = None
data = Path(sys.argv[1]).read_bytes()
def decode():
    with Image.open(io.BytesIO(data)) as img:
        img.load()
threads = [threading.Thread(target=decode) for _ in range(int(sys.argv[2]))]
for t in threads: t.start()
for t in threads: t.join()
print(peak_mb())
"""
)


def peak_mb(script: str, *args: str) -> int:
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "big.png"
        source.write_bytes(big_png())
        print(f"one image: {source.stat().st_size // 1024} KB on the wire, {SIDE}x{SIDE}")
        for count, goal in ((1, 300), (8, 600)):
            out = Path(tmp) / f"out{count}"
            saved = peak_mb(SAVE, str(source), str(count), str(out))
            decoded = peak_mb(DECODE, str(source), str(count))
            print(
                f"{count} at once: imagegen {saved} MB peak (goal < {goal}); decoding every pixel {decoded} MB; "
                f"ratio {saved / decoded:.2f}"
            )
        converted = peak_mb(SAVE, str(source), "8", str(Path(tmp) / "jpeg"), "jpeg")
        print(f"8 at once with --format jpeg (each decoded and re-encoded, in turn under the budget): {converted} MB")


if __name__ == "__main__":
    main()
