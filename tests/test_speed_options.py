"""Fast on a GPU, checked on a CPU (issue 24): ``--quantize fp8`` refused where float8 cannot run, the compile cache
under imagegen's own cache keyed by model, options and torch version (known to ``models rm`` and ``doctor``), and
the GPU benchmark run in its ``--tiny`` form so that it cannot rot.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

pytest.importorskip("diffusers")


def _one_line(result: Any, error: str, hint: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f"error: {error}", f"hint: {hint}"]


def test_fp8_without_a_cuda_gpu_is_refused_before_anything_loads(tmp_path: Path, monkeypatch) -> None:
    from imagegen_cli.local import planning

    monkeypatch.setattr(planning, "nvidia_present", lambda: False)  # as on this machine, whatever the test host
    hint = "drop --quantize, or use --quantize 8bit (any device)"
    for extra, where in (((), "no CUDA GPU here"), (("--device", "cpu"), "--device cpu")):
        for dry in ((), ("--dry-run",)):
            result = run_cli("generate", "x", "-m", "local:tiny", "--quantize", "fp8", *extra, *dry,
                             "-o", str(tmp_path / "out"))  # fmt: skip
            _one_line(result, f"--quantize fp8 needs a CUDA GPU with float8 (compute capability 8.9 or newer): {where}",
                      hint)  # fmt: skip
    assert not (tmp_path / "out").exists()
    bad = run_cli("generate", "x", "-m", "local:tiny", "--quantize", "fp4")
    _one_line(bad, "invalid --quantize 'fp4'", "use 8bit, 4bit or fp8")


def test_fp8_on_an_older_gpu_or_without_torchao_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    import diffusers
    import torch

    from imagegen_cli.errors import ConfigError, UsageError
    from imagegen_cli.local import weights

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA A100-SXM4-80GB")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    with pytest.raises(UsageError) as older:
        weights.fp8_config(diffusers, {"transformer": "diffusers"}, "cuda")
    assert older.value.message == (
        "--quantize fp8 needs compute capability 8.9 or newer (Ada, Hopper, Blackwell); "
        "the NVIDIA A100-SXM4-80GB has 8.0"
    )
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    monkeypatch.setattr(weights, "installed", lambda module: module != "torchao")
    with pytest.raises(ConfigError) as missing:
        weights.fp8_config(diffusers, {"transformer": "diffusers"}, "cuda")
    assert missing.value.message == "--quantize fp8 needs torchao (not installed)"
    assert missing.value.hint == "pip install 'torchao>=0.15'"


def _plan(**options: Any) -> Any:
    from imagegen_cli.local.planning import LocalOptions, build_local_plan, resolve_source
    from imagegen_cli.request import GenerationRequest

    request = GenerationRequest(prompt="x", provider="local", model="tiny")
    return build_local_plan(request, resolve_source("tiny"), LocalOptions(**options))


@pytest.fixture
def fresh_compile_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from imagegen_cli.local import compile_cache

    for name in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        monkeypatch.setenv(name, "/tmp/torchinductor_default")  # torch's own default, written by torch itself
    monkeypatch.setattr(compile_cache, "_USERS", [set()])  # the user set neither


def test_the_compile_cache_is_keyed_by_model_options_and_torch_version(isolated_env: Path) -> None:
    from imagegen_cli.local.compile_cache import compile_folder, compile_root

    base = compile_folder(_plan(compile=True), "bf16", "2.13.0")
    assert base.is_relative_to(isolated_env / "cache" / "imagegen" / "compile")
    assert base.parent == compile_root() / "torch-2.13.0" and base.name.startswith("tiny-")
    assert compile_folder(_plan(compile=True), "bf16", "2.13.0") == base  # the same: reused
    # placement does not change the compiled graph's key; what changes the graph does
    assert compile_folder(_plan(compile=True, device="cuda", offload="model"), "bf16", "2.13.0") == base
    others = {
        compile_folder(_plan(compile=True, scheduler="euler"), "bf16", "2.13.0"),
        compile_folder(_plan(compile=True), "fp16", "2.13.0"),
        compile_folder(_plan(compile=True, vae_tiling=True), "bf16", "2.13.0"),
        compile_folder(_plan(compile=True), "bf16", "2.14.0"),
    }
    assert base not in others and len(others) == 4


@pytest.mark.usefixtures("fresh_compile_env")
def test_compile_points_torchs_caches_at_imagegens_and_leaves_a_users_own(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from imagegen_cli.local.compile_cache import compile_folder
    from imagegen_cli.local.runner import LocalEngine

    plan = _plan(compile=True, device="cpu")
    LocalEngine().load(plan, lambda event: None)  # place() compiles lazily: nothing is compiled yet
    folder = compile_folder(plan, "fp32", str(torch.__version__))
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(folder) and folder.is_dir()
    assert os.environ["TRITON_CACHE_DIR"] == str(folder / "triton")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/somewhere/mine")
    from imagegen_cli.local import compile_cache

    monkeypatch.setattr(compile_cache, "_USERS", [{"TORCHINDUCTOR_CACHE_DIR"}])  # seen before torch was imported
    assert compile_cache.use_compile_cache(plan, "fp32", "2.13.0") is None
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == "/somewhere/mine"


def test_models_rm_removes_compile_caches_and_doctor_counts_them() -> None:
    from imagegen_cli.local.compile_cache import compile_root

    folders = [
        compile_root() / "torch-2.13.0" / "tiny-0123456789ab",
        compile_root() / "torch-2.14.0" / "tiny-ba9876543210",
    ]
    for folder in folders:
        folder.mkdir(parents=True)
        (folder / "fxgraph.bin").write_bytes(b"x" * 2048)
    other = compile_root() / "torch-2.13.0" / "tinyx-0123456789ab"
    other.mkdir()
    doctor = run_cli("doctor", "--json")
    check = next(c for c in doctor.json()["checks"] if c["name"] == "compile cache")
    assert check["value"].startswith(f"{compile_root()} (4.0 KB")
    removed = run_cli("models", "rm", "tiny", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.splitlines() == [str(folder) for folder in sorted(folders)]
    assert not any(folder.exists() for folder in folders) and other.exists()


def test_the_gpu_benchmark_runs_in_its_tiny_form(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    import gpu_zimage

    out = tmp_path / "figures.json"
    figures = gpu_zimage.main(["--tiny", "--runs", "1", "--variants", "eager,--quantize fp8", "--no-processes",
                               "--json", str(out)])  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(figures))
    eager, fp8 = figures["variants"]
    assert eager["variant"] == "eager" and eager["seconds_per_image"] > 0 and eager["tflop_per_image"] > 0
    assert 0 < eager["fraction_of_floor"] < 1
    assert fp8 == {"variant": "--quantize fp8", "skipped": "needs a CUDA GPU"}
