"""Every architecture of the tiny-pipeline zoo through imagegen's local backend (in-process, CPU, 32x32, 2 steps).

Each issue-15 item has a test here on a real tiny pipeline: the keywords a pipeline gets come from its own
``__call__`` signature and config, and the pixels equal plain diffusers' for the same seeds.
"""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.zoo import ZOO, Recorder, build, generate, plain

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="session")
def zoo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once per test run, under the session's temporary directory."""
    return tmp_path_factory.getbasetemp() / "zoo"


@pytest.fixture(scope="session")
def zoo(zoo_root: Path) -> Any:
    return lambda name: build(name, zoo_root)


@pytest.mark.parametrize("name", list(ZOO))
def test_same_seed_same_pixels_as_plain_diffusers(name: str, zoo: Any, tmp_path: Path) -> None:
    source = zoo(name)
    first = generate(source, tmp_path / "a", n=2, seed=7)
    assert first.errors == [] and len(first.images) == 2
    assert first.sizes() == [(32, 32), (32, 32)]
    assert first.metadata()["pipeline"] == ZOO[name].pipeline
    again = generate(source, tmp_path / "b", n=2, seed=7)
    assert again.pixels() == first.pixels()
    assert plain(source, [7, 8], **ZOO[name].plain) == first.pixels()
    assert first.pixels()[0] != first.pixels()[1]  # seed+1 is another image


# ---------------------------------------------------------------------------------------------- 1. variants
def test_a_folder_of_fp16_files_loads_and_bad_variant_is_one_line(zoo: Any, tmp_path: Path) -> None:
    from diffusers import DiffusionPipeline

    folder = tmp_path / "sd-fp16"
    DiffusionPipeline.from_pretrained(zoo("sd")).save_pretrained(folder, variant="fp16")
    assert list(folder.glob("unet/*.fp16.safetensors")) and not list(folder.glob("unet/*model.safetensors"))
    outcome = generate(folder, tmp_path / "out", n=1)
    assert outcome.errors == [] and len(outcome.images) == 1
    assert outcome.metadata()["variant"] == "fp16"
    wrong = generate(folder, tmp_path / "out2", n=1, options={"variant": "bf16"})
    assert len(wrong.errors) == 1 and "bf16" in wrong.errors[0] and "\n" not in wrong.errors[0]


# ------------------------------------------------------------------------------------- 2. negative_prompt
def test_negative_prompt_goes_only_where_the_signature_takes_it(zoo: Any, tmp_path: Path) -> None:
    sprint = generate(zoo("sana-sprint"), tmp_path / "a", n=1, negative_prompt="blurry")  # no negative_prompt
    assert sprint.errors == [] and len(sprint.images) == 1
    assert any(n.startswith("--negative-prompt dropped") and "SanaSprintPipeline" in n for n in sprint.notes)
    lcm = generate(zoo("lcm"), tmp_path / "b", n=1, negative_prompt="blurry")  # **kwargs would swallow it
    assert any(n.startswith("--negative-prompt dropped") for n in lcm.notes)
    assert lcm.metadata().get("negative_prompt") is None  # dropped, so not recorded as if it were applied
    strict = generate(zoo("lcm"), tmp_path / "c", n=1, negative_prompt="blurry", strict=True)
    assert strict.images == [] and "--negative-prompt dropped" in strict.errors[0]
    sd = generate(zoo("sd"), tmp_path / "d", n=1, negative_prompt="blurry", guidance=3.0)
    assert sd.metadata()["negative_prompt"] == "blurry"


# ---------------------------------------------------------------------------------- 3. callbacks, generators
def test_legacy_callback_gives_step_progress_and_stops_between_steps(zoo: Any, tmp_path: Path) -> None:
    recorder = Recorder()
    pixart = generate(zoo("pixart"), tmp_path / "a", n=1, steps=3, reporter=recorder)
    assert pixart.errors == [] and recorder.totals == [3] and recorder.updates == [1, 2, 3]

    holder: dict[str, Any] = {}
    stopper = Recorder(on_update=lambda done: holder["run"].stop.request())
    outcome = _generate_with_run(zoo("pixart"), tmp_path / "b", holder, reporter=stopper, steps=5, n=2)
    assert outcome.result.interrupted and outcome.images == [] and stopper.updates == [1]


def _generate_with_run(source: Path, out: Path, holder: dict[str, Any], **kwargs: Any) -> Any:
    """``generate`` with the LocalRun made available to the reporter (to request a stop mid-call)."""
    import imagegen_cli.local.runner as runner

    original = runner.LocalRun.__init__

    def init(self: Any, *args: Any, **kw: Any) -> None:
        original(self, *args, **kw)
        holder["run"] = self

    runner.LocalRun.__init__ = init  # type: ignore[method-assign]
    try:
        return generate(source, out, **kwargs)
    finally:
        runner.LocalRun.__init__ = original  # type: ignore[method-assign]


def test_one_generator_pipelines_make_one_image_per_call(zoo: Any, tmp_path: Path) -> None:
    recorder = Recorder()
    both = generate(zoo("amused"), tmp_path / "a", n=2, seed=3, reporter=recorder)
    assert both.errors == [] and len(both.images) == 2 and recorder.totals == [2, 2]
    second = generate(zoo("amused"), tmp_path / "b", n=1, seed=4)
    assert second.pixels()[0] == both.pixels()[1]  # image 2 of seed 3 is image 1 of seed 4


class NoCallbackPipe:
    """A pipeline whose __call__ offers no step callback at all (wraps a real tiny pipeline)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.scheduler = inner.scheduler

    def __call__(
        self,
        prompt: str,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 2,
        num_images_per_prompt: int = 1,
        generator: list[Any] | None = None,
    ) -> Any:
        return self.inner(
            prompt,
            height=height,
            width=width,
            num_inference_steps=num_inference_steps,
            num_images_per_prompt=num_images_per_prompt,
            generator=generator,
        )


def _direct_run(pipe: Any, tmp_path: Path, n: int = 2, **fields: Any) -> Any:
    from imagegen_cli.events import StopToken
    from imagegen_cli.local.planning import LocalOptions, build_local_plan, resolve_source
    from imagegen_cli.local.runner import LocalRun, Placement
    from imagegen_cli.request import GenerationRequest, Size
    from imagegen_cli.result import JobResult
    from imagegen_cli.saving import JobRecorder
    from imagegen_cli.store.writer import ImageWriter, OutputSpec

    request = GenerationRequest(
        prompt="a fox", provider="local", model="x", n=n, seed=5, size=Size.parse("32x32"), steps=2, **fields
    )
    plan = build_local_plan(request, resolve_source("sd-turbo"), LocalOptions(device="cpu"))
    spec = OutputSpec.from_args(
        str(tmp_path), default_dir=None, template=None, fmt=None, overwrite=False, metadata=True, n=n
    )
    writer = ImageWriter(spec, prompt="a fox", provider="local", model="x", n=n)
    result = JobResult("local", "x", n)
    recorder = Recorder()
    run = LocalRun(plan, JobRecorder(result, None, recorder, writer).handle, StopToken())
    run._generate(torch, pipe, Placement("cpu", "fp32", torch.float32), "test")
    return run, result, recorder


def test_a_pipeline_without_step_callback_gets_per_call_progress(zoo: Any, tmp_path: Path) -> None:
    from diffusers import DiffusionPipeline

    pipe = NoCallbackPipe(DiffusionPipeline.from_pretrained(zoo("sd")))
    _, result, recorder = _direct_run(pipe, tmp_path)
    assert len(result.images) == 2 and recorder.totals == [None] and recorder.updates == []
    assert any("reports no steps" in n and "Ctrl-C waits" in n for n in result.notes)


# ------------------------------------------------------------------------------------ 4. prior and decoder
def test_two_stage_steps_and_progress_cover_the_prior(zoo: Any, tmp_path: Path) -> None:
    recorder = Recorder()
    outcome = generate(zoo("kandinsky"), tmp_path / "a", n=1, steps=3, reporter=recorder)
    assert outcome.errors == []
    assert recorder.totals == [6] and recorder.updates == [1, 2, 3, 4, 5, 6]  # 3 prior steps, then 3 decoder steps
    assert outcome.metadata()["prior_steps"] == 3
    assert plain(zoo("kandinsky"), [7], steps=3, prior_num_inference_steps=3) == outcome.pixels()

    holder: dict[str, Any] = {}
    stopper = Recorder(on_update=lambda done: holder["run"].stop.request())
    stopped = _generate_with_run(zoo("kandinsky"), tmp_path / "b", holder, reporter=stopper, steps=4, n=1)
    assert stopped.result.interrupted and stopper.updates == [1]  # stopped inside the prior


# ------------------------------------------------------------------------------- 5. retry one image per call
def test_a_failing_multi_image_call_is_retried_one_image_per_call(zoo: Any, tmp_path: Path) -> None:
    # KandinskyV22CombinedPipeline with guidance, a negative prompt and a list of generators: IndexError.
    outcome = generate(zoo("kandinsky"), tmp_path / "a", n=3, guidance=4.0, negative_prompt="blurry")
    assert outcome.errors == [] and len(outcome.images) == 3
    assert any("retrying one image per call" in n for n in outcome.notes)
    single = generate(zoo("kandinsky"), tmp_path / "b", n=1, seed=8, guidance=4.0, negative_prompt="blurry")
    assert single.pixels()[0] == outcome.pixels()[1]


# ------------------------------------------------------------------------------------ 6. resolution binning
def test_resolution_binning_does_not_change_the_asked_size(zoo: Any, tmp_path: Path) -> None:
    outcome = generate(zoo("hunyuan"), tmp_path / "a", n=1, size="64x64")
    assert outcome.errors == [] and outcome.sizes() == [(64, 64)]  # binning would give 1024x1024


def test_an_output_of_another_size_is_noted(zoo: Any, tmp_path: Path) -> None:
    from diffusers import DiffusionPipeline

    class Resizing(NoCallbackPipe):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return super().__call__(*args, **{**kwargs, "height": 48, "width": 48})

    Resizing.__call__.__signature__ = inspect.signature(NoCallbackPipe.__call__)  # type: ignore[attr-defined]
    _, result, _ = _direct_run(Resizing(DiffusionPipeline.from_pretrained(zoo("sd"))), tmp_path, n=1)
    assert any("returned 48x48 images, not the 32x32 asked" in n for n in result.notes)


# ------------------------------------------------------------------------------------- 7. guidance mapping
def test_qwen_guidance_maps_to_true_cfg(zoo: Any, tmp_path: Path) -> None:
    source = zoo("qwen")
    guided = generate(source, tmp_path / "a", n=1, guidance=4.0)
    assert guided.errors == []
    meta = guided.metadata()
    assert meta["guidance_knob"] == "true_cfg_scale" and meta["negative_prompt"] == " "
    assert any("true_cfg_scale" in n for n in guided.notes)
    assert plain(source, [7], true_cfg_scale=4.0, negative_prompt=" ") == guided.pixels()
    assert plain(source, [7]) != guided.pixels()  # guidance changed the image

    useless = generate(source, tmp_path / "b", n=1, guidance=1.0, negative_prompt="blurry")
    assert any("--negative-prompt has no effect" in n for n in useless.notes)


def test_guidance_on_classic_pipelines_stays_guidance_scale(zoo: Any, tmp_path: Path) -> None:
    outcome = generate(zoo("sd3"), tmp_path, n=1, guidance=3.0)
    assert outcome.metadata()["guidance_knob"] == "guidance_scale"
    assert plain(zoo("sd3"), [7], guidance_scale=3.0) == outcome.pixels()


@pytest.mark.parametrize(("model", "species"), [("qwen-image", "qwen"), ("flux-schnell", "flux"), ("sd-1.5", "sd")])
@pytest.mark.parametrize("guidance", [None, 1.0, 4.0])
def test_dry_run_calls_match_what_the_pipeline_gets(model: str, species: str, guidance: float | None, zoo: Any) -> None:
    # --dry-run prints plan.call_kwargs, from the catalog entry; the run sends adapt's, from the loaded pipeline.
    from diffusers import DiffusionPipeline

    from imagegen_cli.local.calls import adapt
    from imagegen_cli.local.catalog import LOCAL_MODELS
    from imagegen_cli.local.planning import LocalOptions, ModelSource, build_local_plan
    from imagegen_cli.request import GenerationRequest, Size

    entry = LOCAL_MODELS[model]
    request = GenerationRequest(
        prompt="a fox", provider="local", model=model, n=2, seed=7, size=Size(32, 32), guidance=guidance
    )
    plan = build_local_plan(request, ModelSource(model, str(zoo(species)), entry.pipeline, entry), LocalOptions())
    call, _ = adapt(DiffusionPipeline.from_pretrained(zoo(species)), plan)
    batch = plan.batches[0]
    assert plan.call_kwargs(batch) == call.kwargs(batch)


# ------------------------------------------------------------------------------------- 8. the size multiple
def test_sizes_round_to_the_pipelines_own_multiple(zoo: Any, tmp_path: Path) -> None:
    outcome = generate(zoo("flux"), tmp_path, n=1, size="76x44")  # the tiny Flux needs multiples of 16
    assert outcome.errors == []
    assert any("--size 76x44 → 80x48 (multiples of 16 for FluxPipeline)" in n for n in outcome.notes)
    assert outcome.sizes() == [(80, 48)]
    strict = generate(zoo("flux"), tmp_path / "s", n=1, size="76x44", strict=True)
    assert strict.images == [] and "multiples of 16" in strict.errors[0]


def test_folder_sizes_are_refused_far_above_the_native_size(zoo: Any, tmp_path: Path) -> None:
    outcome = generate(zoo("sd3"), tmp_path, n=1, size="2048x2048")  # native 32x32; floor 1024x1024
    assert outcome.images == [] and "too large" in outcome.errors[0]
    assert "more than 1,048,576 pixels (4x its native 32x32)" in outcome.errors[0]


def test_zoo_is_small(zoo: Any, zoo_root: Path) -> None:
    for name in ZOO:
        zoo(name)
    for folder in zoo_root.iterdir():
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        assert size < 20 * 2**20, f"{folder.name} is {size / 2**20:.1f} MiB"
    shutil.rmtree(zoo_root / "missing", ignore_errors=True)
