"""The cost of embedding metadata: a 60-image batch with and without ``--no-metadata``, per format.

The fake gateway (tests/fakegateway.py, in this process) answers every call with the same photo-like
1024x1024 image (tests/imagesamples.py) as base64: a PNG, then the same picture as JPEG and as WebP.
``imagegen generate --prompt-file`` (60 lines, ``--concurrency 8``) runs with and without metadata, the
runs alternating, each into a fresh directory. Target: with metadata <= 1.15x without, for each format.

It also times, in this process, what the writer could spend per image: Pillow's full decode (which both
runs pay, to prove the pixels are there) against a Pillow encode (what the writer used to pay to embed
metadata), and the container-level insertion that replaced it.

Run: PYTHONPATH=. .venv/bin/python bench/metadata_save.py [ROUNDS]
"""

from __future__ import annotations

import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from timing import run_child  # noqa: E402

import tests.fakegateway as fakegateway  # noqa: E402
from tests.fakegateway import TEST_KEY, FakeGateway  # noqa: E402
from tests.imagesamples import encode, photo_like  # noqa: E402

IMAGEGEN = str(Path(sys.executable).with_name("imagegen"))
IMAGES = 60
FORMATS = {"PNG": {}, "JPEG": {"quality": 90}, "WEBP": {"quality": 90}}


def median_ms(action: Callable[[], object], repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def in_process(samples: dict[str, bytes]) -> None:
    from PIL import Image

    from imagegen_cli.store.containers import parse
    from imagegen_cli.store.writer import ImageWriter, OutputSpec

    print("\nper image, in process (median of 7):")
    print(f"{'format':<6} {'bytes':>9} {'decode':>9} {'re-encode':>10} {'insert metadata':>16}")
    work = Path(tempfile.mkdtemp(prefix="imagegen-meta-inproc-"))
    spec = OutputSpec.from_args(
        str(work), default_dir=None, template="{uid}", fmt=None, overwrite=False, metadata=True, n=1
    )
    writer = ImageWriter(spec, prompt="p", provider="bench", model="m", n=1)
    meta = {"prompt": "a lighthouse number 1", "seed": 1, "model": "dall-e-2", "provider": "openai"}
    for name, data in samples.items():
        fmt = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}[name]

        def decode(data: bytes = data) -> None:
            with Image.open(io.BytesIO(data)) as img:
                img.load()

        with Image.open(io.BytesIO(data)) as img:
            img.load()
            options = {"quality": 95} if name != "PNG" else {}
            encode_ms = median_ms(lambda img=img, name=name, options=options: img.save(io.BytesIO(), name, **options))
        layout = parse(data, fmt)
        insert_ms = median_ms(lambda layout=layout: layout.with_metadata(writer._metadata(layout, meta)))
        print(f"{name:<6} {len(data):>9,} {median_ms(decode):>7.1f} ms {encode_ms:>7.1f} ms {insert_ms:>13.2f} ms")
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    work = Path(tempfile.mkdtemp(prefix="imagegen-meta-bench-"))
    prompts = work / "prompts.txt"
    prompts.write_text("\n".join(f"a lighthouse number {i}" for i in range(IMAGES)) + "\n")
    picture = photo_like(1024)
    samples = {name: encode(picture, name, **options) for name, options in FORMATS.items()}
    with FakeGateway() as gateway:
        env = {
            **os.environ,
            "XDG_DATA_HOME": str(work / "data"),
            "XDG_CONFIG_HOME": str(work / "config"),
            "IMAGEGEN_OPENAI_BASE_URL": gateway.base_url("openai"),
            "IMAGEGEN_OPENAI_API_KEY": TEST_KEY,
            "CI": "1",
        }
        times: dict[tuple[str, bool], list[float]] = {(name, md): [] for name in samples for md in (True, False)}
        for round_number in range(rounds + 1):  # the first round warms caches and is not counted
            for name, data in samples.items():
                fakegateway.png_bytes = lambda width, height, data=data: data  # every answer is this image
                # Which side runs first alternates too: a burst of load on the shared machine hits both.
                for metadata in (False, True) if round_number % 2 else (True, False):
                    out = work / "out"
                    argv = [IMAGEGEN, "generate", "--prompt-file", str(prompts), "-m", "openai:dall-e-2"]
                    argv += ["--size", "1024x1024", "--concurrency", "8", "-q", "-o", str(out)]
                    if not metadata:
                        argv.append("--no-metadata")
                    elapsed, _ = run_child(argv, env)
                    saved = [p for p in out.iterdir() if not p.name.startswith(".")]
                    assert len(saved) == IMAGES, f"{len(saved)} images saved"
                    shutil.rmtree(out)
                    if round_number:
                        times[(name, metadata)].append(elapsed)
    print(f"{IMAGES}-image batch, photo-like 1024x1024, --concurrency 8, {rounds} alternating rounds (median):")
    print(f"{'format':<6} {'bytes':>9} {'--no-metadata':>14} {'metadata':>10} {'ratio':>6}")
    for name, data in samples.items():
        bare = statistics.median(times[(name, False)])
        tagged = statistics.median(times[(name, True)])
        verdict = "PASS" if tagged / bare <= 1.15 else "FAIL"
        print(
            f"{name:<6} {len(data):>9,} {bare:>12.2f} s {tagged:>8.2f} s {tagged / bare:>6.2f}  "
            f"({bare / IMAGES * 1000:.0f} vs {tagged / IMAGES * 1000:.0f} ms per image; target <= 1.15: {verdict})"
        )
    in_process(samples)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
