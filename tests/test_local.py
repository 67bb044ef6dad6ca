"""Local generation on CPU and offline, with tiny pipelines of two architectures (UNet and Z-Image DiT)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import CAPTURED, IMAGEGEN, run_cli

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")


@pytest.fixture(scope="session")
def zimage_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_zimage import build_tiny_zimage

    return build_tiny_zimage(tmp_path_factory.mktemp("pipelines") / "tiny-zimage")


def pixels(path: str) -> bytes:
    with Image.open(path) as img:
        return img.tobytes()


def test_tiny_is_reproducible_and_seeded(tmp_path: Path) -> None:
    first = run_cli("generate", "a lighthouse", "-m", "local:tiny", "-n", "2", "--seed", "7", "-o", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    assert len(first.lines) == 2
    again = run_cli("generate", "a lighthouse", "-m", "local:tiny", "-n", "2", "--seed", "7", "-o", str(tmp_path / "b"))
    assert [pixels(p) for p in again.lines] == [pixels(p) for p in first.lines]
    other = run_cli("generate", "a lighthouse", "-m", "local:tiny", "--seed", "8", "-o", str(tmp_path / "c"), "--json")
    (image,) = other.json()["images"]
    assert image["seed"] == 8
    assert pixels(image["path"]) != pixels(first.lines[0])
    # seed+i: the second image of --seed 7 is the first image of --seed 8, batch or no batch
    assert pixels(image["path"]) == pixels(first.lines[1])
    with Image.open(first.lines[0]) as img:
        assert img.size == (64, 64)
        record = json.loads(img.text["imagegen"])
        assert "Seed: 7" in img.text["parameters"] and "Steps: 4" in img.text["parameters"]
    assert record["seed"] == 7 and record["steps"] == 4 and record["device"] == "cpu" and record["dtype"] == "fp32"
    assert (
        record["scheduler"] == "EulerDiscreteScheduler"
        and record["versions"]["torch"]
        and record["versions"]["diffusers"]
    )


def test_a_pipeline_directory_the_tool_did_not_build(zimage_dir: Path, tmp_path: Path) -> None:
    result = run_cli(
        "generate",
        "a koi pond",
        "-m",
        f"local:{zimage_dir}",
        "-n",
        "2",
        "--seed",
        "3",
        "--size",
        "102x62",
        "--steps",
        "3",
        "-o",
        str(tmp_path),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    doc = result.json()
    assert [i["seed"] for i in doc["images"]] == [3, 4]
    for image in doc["images"]:
        with Image.open(image["path"]) as img:
            assert img.size == (104, 64)  # rounded to the pipeline's multiple, with a note
            record = json.loads(img.text["imagegen"])
            assert record["pipeline"] == "ZImagePipeline" and record["steps"] == 3
    assert any("--size 102x62 → 104x64 (multiples of 4 for ZImagePipeline)" in n for n in doc["notes"])
    assert "--size 102x62 → 104x64" in result.stderr


def test_local_errors_are_one_line(tmp_path: Path) -> None:
    cuda = run_cli("generate", "x", "-m", "local:tiny", "--device", "cuda", "-o", str(tmp_path))
    assert cuda.returncode == 2 and "no CUDA device is available" in cuda.stderr
    fp16 = run_cli("generate", "x", "-m", "local:tiny", "--dtype", "fp16", "-o", str(tmp_path))
    assert fp16.returncode == 2 and "fp16 is not supported on the CPU" in fp16.stderr
    missing = run_cli("generate", "x", "-m", "local:sd-turbo", "-o", str(tmp_path), env={"HF_HUB_OFFLINE": "1"})
    assert missing.returncode == 1
    assert "weights of sd-turbo are not downloaded" in missing.stderr
    assert "imagegen models pull sd-turbo" in missing.stderr
    notdir = run_cli("generate", "x", "-m", f"local:{tmp_path}", "-o", str(tmp_path))
    assert notdir.returncode == 2 and "not a diffusers pipeline directory" in notdir.stderr
    for result in (cuda, fp16, missing, notdir):
        assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.png"))


def test_dry_run_and_notes(tmp_path: Path) -> None:
    result = run_cli(
        "generate",
        "x",
        "-m",
        "local:sdxl-turbo",
        "-n",
        "5",
        "--seed",
        "1",
        "--ratio",
        "16:9",
        "--resolution",
        "1K",
        "--quality",
        "hd",
        "--style",
        "vivid",
        "--dry-run",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    doc = result.json()
    assert "local" not in doc and doc["provider"] == "local"  # the same "calls" key as every dry run
    calls = doc["calls"]
    assert [c["seeds"] for c in calls] == [[1, 2, 3, 4], [5]]
    assert calls[0]["width"] == 1280 and calls[0]["height"] == 720
    assert calls[0]["num_inference_steps"] == 2 and calls[0]["guidance_scale"] == 0.0
    assert any("--style dropped" in n for n in doc["notes"])
    strict = run_cli("generate", "x", "-m", "local:sdxl-turbo", "--style", "vivid", "--strict", "--dry-run")
    assert strict.returncode == 2
    remote = run_cli("generate", "x", "-m", "openai:gpt-image-1.5", "--device", "cpu", "--dry-run")
    assert "--device dropped: local only" in remote.stderr


def test_a_dry_run_without_seed_says_the_seed_is_drawn_at_run_time() -> None:
    # The run draws its own random seed when it starts: a seed printed by the dry run would be one it never uses.
    unseeded = run_cli("generate", "x", "-m", "local:tiny", "-n", "5", "--dry-run", "--json")
    assert unseeded.returncode == 0, unseeded.stderr
    doc = unseeded.json()
    assert doc["seed"] is None
    assert [(c["first_image"], c["seeds"]) for c in doc["calls"]] == [(1, None), (5, None)]
    assert [n for n in doc["notes"] if "--seed" in n] == [SEED_NOTE]
    text = run_cli("generate", "x", "-m", "local:tiny", "--dry-run")
    assert f"note: {SEED_NOTE}" in text.stderr.splitlines()
    assert '"seeds": null' in text.stdout
    seeded = run_cli("generate", "x", "-m", "local:tiny", "-n", "5", "--seed", "7", "--dry-run", "--json").json()
    assert seeded["seed"] == 7 and [c["seeds"] for c in seeded["calls"]] == [[7, 8, 9, 10], [11]]
    assert not [n for n in seeded["notes"] if "--seed" in n]
    batch = run_cli("generate", "--prompt-file", "-", "-m", "local:tiny", "--dry-run", "--json", input=b"a\nb\n")
    assert all(line["seed"] is None and SEED_NOTE in line["notes"] for line in batch.json()["lines"])


SEED_NOTE = "no --seed: the run draws a random seed when it starts (each image records its own); --seed N fixes it"


def test_dry_run_shows_qwen_images_true_cfg() -> None:
    # Qwen-Image's guidance is true CFG, which applies only with a negative prompt: the dry run prints the call
    # the pipeline gets (tests/test_local_zoo.py checks the two agree on real pipelines), no weights needed.
    def call(*flags: str) -> dict:
        result = run_cli("generate", "x", "-m", "local:qwen-image", "--seed", "1", *flags, "--dry-run", "--json")
        assert result.returncode == 0, result.stderr
        (only,) = result.json()["calls"]
        return only

    default = call()
    assert default["true_cfg_scale"] == 4.0 and default["negative_prompt"] == " " and "guidance_scale" not in default
    assert call("--negative-prompt", "blurry")["negative_prompt"] == "blurry"
    off = call("--guidance", "1")
    assert off["true_cfg_scale"] == 1.0 and "negative_prompt" not in off
    classic = run_cli("generate", "x", "-m", "local:sd-1.5", "--dry-run", "--json").json()["calls"][0]
    assert classic["guidance_scale"] == 7.5 and "true_cfg_scale" not in classic


def test_models_show_maps_every_local_flag() -> None:
    tiny = run_cli("models", "show", "local:tiny", "--json")
    assert tiny.returncode == 0, tiny.stderr
    flags = tiny.json()["flags"]
    for flag in ("--lora", "--quantize", "--gguf", "--scheduler", "--variant"):
        assert flag in flags, flag
    assert flags["--guidance"] == "guidance_scale (default 0)"
    qwen = run_cli("models", "show", "local:qwen-image", "--json").json()["flags"]
    assert qwen["--guidance"].startswith("true_cfg_scale (default 4)")


def test_offload_and_vae_tiling_on_cpu(tmp_path: Path) -> None:
    result = run_cli("generate", "x", "-m", "local:tiny", "--offload", "model", "--vae-tiling", "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "--offload model skipped: no accelerator" in result.stderr
    assert len(result.lines) == 1


def test_ctrl_c_stops_between_steps(tmp_path: Path) -> None:
    env = dict(os.environ)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [str(IMAGEGEN), "generate", "x", "-m", "local:tiny", "--steps", "100000", "-o", str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    journal = Path(os.environ["XDG_DATA_HOME"]) / "imagegen" / "journal.sqlite3"
    deadline = time.monotonic() + 60
    while not journal.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)  # well into the denoising loop
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    CAPTURED.extend([stdout, stderr])
    assert proc.returncode == 130, stderr
    assert not list(out.iterdir())
    assert b"Traceback" not in stderr


# ---------------------------------------------------------------- in-process: runner logic with injected faults
class FakePipe:
    """Stands in for a diffusers pipeline; optionally raises out-of-memory for big batches."""

    def __init__(self, oom_above: int | None = 0, stop_after: Any = None) -> None:
        self.oom_above = oom_above
        self.calls: list[int] = []
        self.stop_after = stop_after
        self.scheduler = object()

    def __call__(
        self,
        prompt: str,
        num_images_per_prompt: int = 1,
        num_inference_steps: int = 1,
        guidance_scale: float | None = None,
        width: int | None = None,
        height: int | None = None,
        generator: list[Any] | None = None,
        callback_on_step_end: Any = None,
    ) -> Any:
        kwargs = dict(locals())
        count = kwargs["num_images_per_prompt"]
        self.calls.append(count)
        if self.oom_above is not None and count > self.oom_above:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        for step in range(kwargs.get("num_inference_steps", 1)):
            if self.stop_after is not None:
                self.stop_after(step)
            kwargs["callback_on_step_end"](self, step, 0, {})
        images = [Image.new("RGB", (64, 64), (seed.initial_seed() % 255, 0, 0)) for seed in kwargs["generator"]]
        return type("Out", (), {"images": images})()


def make_run(tmp_path: Path, n: int, seed: int = 10) -> Any:
    from imagegen_cli.events import StopToken
    from imagegen_cli.local.planning import LocalOptions, build_local_plan, resolve_source
    from imagegen_cli.local.runner import LocalRun
    from imagegen_cli.request import GenerationRequest
    from imagegen_cli.result import JobResult, SilentSink
    from imagegen_cli.saving import JobRecorder
    from imagegen_cli.store.writer import ImageWriter, OutputSpec

    request = GenerationRequest(prompt="x", provider="local", model="tiny", n=n, seed=seed)
    plan = build_local_plan(request, resolve_source("tiny"), LocalOptions(device="cpu"))
    spec = OutputSpec.from_args(
        str(tmp_path), default_dir=None, template=None, fmt=None, overwrite=False, metadata=True, n=n
    )
    writer = ImageWriter(spec, prompt="x", provider="local", model="tiny", n=n)
    result = JobResult("local", "tiny", n)
    return LocalRun(plan, JobRecorder(result, None, SilentSink(), writer).handle, StopToken()), result


def placement() -> Any:
    from imagegen_cli.local.runner import Placement

    return Placement("cpu", "fp32", torch.float32)


def test_out_of_memory_halves_the_batch(tmp_path: Path) -> None:
    run, result = make_run(tmp_path, n=4)
    pipe = FakePipe(oom_above=1)
    run._generate(torch, pipe, placement(), "test")
    assert pipe.calls == [4, 2, 1, 1, 2, 1, 1]
    assert sorted(i.seed for i in result.images) == [10, 11, 12, 13]
    assert any("out of memory at 4 images per call" in n for n in result.notes)


def test_out_of_memory_at_one_image_is_a_clear_error(tmp_path: Path) -> None:
    from imagegen_cli.local.runner import OutOfMemory

    run, _ = make_run(tmp_path, n=2)
    with pytest.raises(OutOfMemory) as caught:
        run._generate(torch, FakePipe(oom_above=0), placement(), "test")
    assert "out of memory on cpu generating one 64x64 image" in caught.value.message
    assert "--offload" in (caught.value.hint or "")
    assert caught.value.exit_code == 1


def test_interrupt_keeps_finished_images(tmp_path: Path) -> None:
    run, result = make_run(tmp_path, n=6)

    def stop(step: int) -> None:
        if len(pipe.calls) == 2 and step == 1:
            run.stop.request()

    pipe = FakePipe(oom_above=None, stop_after=stop)
    run._generate(torch, pipe, placement(), "test")
    assert run.stop.requested
    assert len(result.images) == 4  # the first batch finished and was saved; the second stopped mid-way
    assert len(list(tmp_path.glob("*.png"))) == 4


def test_compile_uses_regional_compilation(tmp_path: Path) -> None:
    from imagegen_cli.local.planning import LocalOptions, build_local_plan, resolve_source
    from imagegen_cli.local.runner import place
    from imagegen_cli.request import GenerationRequest

    class Denoiser:
        _repeated_blocks = ("Block",)
        compiled: Any = None

        def compile_repeated_blocks(self, **kwargs: Any) -> None:
            self.compiled = kwargs

    class Pipe:
        unet = Denoiser()
        vae = None

        def to(self, device: str) -> None:
            self.device = device

    request = GenerationRequest(prompt="x", provider="local", model="tiny")
    plan = build_local_plan(request, resolve_source("tiny"), LocalOptions(device="cpu", compile=True, vae_tiling=True))
    pipe = Pipe()
    notes: list[str] = []
    place(pipe, plan, placement(), notes)
    assert pipe.unet.compiled == {"fullgraph": True} and pipe.device == "cpu"
    assert any("--vae-tiling skipped" in n for n in notes)


def test_missing_local_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from imagegen_cli.errors import ConfigError
    from imagegen_cli.local.runner import import_stack

    monkeypatch.setitem(sys.modules, "diffusers", None)
    with pytest.raises(ConfigError) as caught:
        import_stack()
    assert "needs the local extra" in caught.value.message
    assert "pip install 'imagegen-cli[local]'" in (caught.value.hint or "")


def test_gated_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub.errors import GatedRepoError

    from imagegen_cli.errors import ConfigError
    from imagegen_cli.local.planning import LocalOptions, build_local_plan, resolve_source
    from imagegen_cli.local.runner import load_pipeline
    from imagegen_cli.request import GenerationRequest

    class Diffusers:
        class DiffusionPipeline:
            @staticmethod
            def from_pretrained(*args: Any, **kwargs: Any) -> Any:
                import httpx

                response = httpx.Response(403, request=httpx.Request("GET", "https://huggingface.co/x"))
                raise GatedRepoError("403 gated", response=response)

    plan = build_local_plan(
        GenerationRequest(prompt="x", provider="local", model="flux-schnell"),
        resolve_source("flux-schnell"),
        LocalOptions(device="cpu"),
    )
    with pytest.raises(ConfigError) as caught:
        load_pipeline(Diffusers, plan, placement())
    assert "gated" in caught.value.message and "HF_TOKEN" in (caught.value.hint or "")


# One denoising step made of a single torch operation lasting many seconds: Python runs no signal handler
# until it returns, as in a 1280x720 step on a CPU.
SLOW_STEP = """
import os, sys, torch
from diffusers import UNet2DConditionModel

torch.set_num_threads(1)
forward = UNet2DConditionModel.forward
big = torch.ones(8000, 8000)
marker = sys.argv[1]

def slow(self, *args, **kwargs):
    open(marker, "w").close()
    for _ in range(int(os.environ.get("SLOW_STEP_ROUNDS", "1"))):
        torch.mm(big, big)
    return forward(self, *args, **kwargs)

UNet2DConditionModel.forward = slow
import imagegen_cli.backends.interrupts as interrupts  # the grace a SIGTERM gives the run: its length is not tested
interrupts.TERM_GRACE = float(os.environ.get("TERM_GRACE", interrupts.TERM_GRACE))
sys.argv = ["imagegen", *sys.argv[2:]]
from imagegen_cli.cli.app import main
main()
"""


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130)])
def test_a_second_signal_stops_at_once_inside_a_long_step(tmp_path: Path, signum: int, code: int) -> None:
    import sys

    started = tmp_path / "step-started"
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_STEP, str(started), "generate", "x", "-m", "local:tiny", "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert started.exists(), proc.stderr.read() if proc.stderr else ""
        time.sleep(0.3)
        proc.send_signal(signum)
        time.sleep(0.5)
        assert proc.poll() is None  # the first signal waits for the step
        sent = time.monotonic()
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=30)
        stopped_after = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    CAPTURED.extend([stdout, stderr])
    assert proc.returncode == code, stderr
    assert stopped_after < 5, f"took {stopped_after:.1f} s after the second signal"
    assert b"press Ctrl-C again to stop at once" in stderr
    assert b"stopped at once" in stderr and b"Traceback" not in stderr
    assert not out.exists() or not list(out.iterdir())


def test_one_sigterm_inside_a_long_step_stops_the_run(tmp_path: Path) -> None:
    """SIGTERM means stop now: one is enough, even while one denoising step lasts minutes (here: 200 big products)."""
    import os
    import sys

    started = tmp_path / "step-started"
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_STEP, str(started), "generate", "x", "-m", "local:tiny", "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "SLOW_STEP_ROUNDS": "200", "TERM_GRACE": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert started.exists(), proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGTERM)
        # Far below the step's own length: before, the run waited for the step to end (minutes), then stopped.
        _, stderr = proc.communicate(timeout=45)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    assert b"terminated" in stderr
    assert not out.exists() or not list(out.iterdir())
