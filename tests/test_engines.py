"""The engine protocol and registry, through a fake engine: the driver's batch, resume after SIGKILL, Ctrl-C and
journal run in-process, without HTTP or torch."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import run_cli, write_config
from tests.fake_engine import FakeEngine, png


@pytest.fixture
def fake() -> Iterator[FakeEngine]:
    from imagegen_cli.engines import register_engine, unregister_engine

    engine = FakeEngine()
    register_engine("fake", lambda: engine, providers=("fake",))
    try:
        yield engine
    finally:
        unregister_engine("fake")


def lines(tmp_path: Path, *prompts: str) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("".join(f"{p}\n" for p in prompts))
    return path


def test_a_registered_engine_runs_a_batch_and_the_driver_records_it(fake: FakeEngine, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("generate", "--prompt-file", str(lines(tmp_path, "a", "b")), "-m", "fake:m", "-n", "2",
                     "--seed", "5", "-o", str(out), "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = result.json()
    assert doc["summary"]["succeeded"] == 2 and len(doc["images"]) == 4
    for image in doc["images"]:
        data = Path(image["path"]).read_bytes()
        with Image.open(image["path"]) as img:
            record = json.loads(img.text["imagegen"])
        assert record["provider"] == "fake" and record["seed"] == image["seed"] and record["index"] == image["index"]
        assert data.startswith(png(image["seed"])[:8])
    listed = run_cli("tasks", "list", "--json").json()
    assert sorted(len(job["paths"]) for job in listed) == [2, 2]
    assert all(job["status"] == "succeeded" and job["provider"] == "fake" for job in listed)


def test_the_config_chooses_the_engine_of_a_provider(fake: FakeEngine, tmp_path: Path) -> None:
    write_config('[engines]\nlocal = "fake"\n')
    result = run_cli("generate", "x", "-m", "local:tiny", "-o", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    assert fake.made == [("x", 1, 1001)]
    write_config('[engines]\nlocal = "nowhere"\n')
    bad = run_cli("generate", "x", "-m", "local:tiny", "-o", str(tmp_path))
    assert bad.returncode == 4 and "no engine 'nowhere'" in bad.stderr


def test_ctrl_c_in_an_engine_keeps_what_was_saved_and_exits_130(fake: FakeEngine, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("generate", "--prompt-file", str(lines(tmp_path, "stop-after:1", "b")), "-m", "fake:m",
                     "-n", "3", "-o", str(out), "--json")  # fmt: skip
    assert result.returncode == 130, result.stderr
    doc = result.json()
    assert [line["status"] for line in doc["lines"]] == ["partial", "not_started"]
    assert len(list(out.iterdir())) == 1 and fake.made == [("stop-after:1", 1, 1001)]
    assert "interrupted: 1 of 3 image(s) saved" in result.stderr
    # The journal tells the same story: line 1 ran and saved one image, line 2 never started (not journalled).
    (job,) = run_cli("tasks", "list", "--json").json()
    assert job["provider"] == "fake" and len(job["paths"]) == 1


def test_resume_after_sigkill_makes_only_the_missing_images(fake: FakeEngine, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prompts = lines(tmp_path, "kill-after:2", "plain")
    args = ["generate", "--prompt-file", str(prompts), "-m", "fake:m", "-n", "3", "-o", str(out), "--seed", "1"]
    child = os.fork()
    if child == 0:  # the run that is killed: in a forked copy of this process, so nothing but the kill ends it
        try:
            run_cli(*args)
        finally:
            os._exit(0)  # never reached after the kill; never lets the child run pytest's teardown
    _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
    assert len(list(out.iterdir())) == 2  # the killed run saved two images
    # The same command with --resume (this process's engine has made nothing yet, so it is not killed again).
    resumed = run_cli(*args, "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    # Exactly one file per image: line 1's third image and line 2's three, nothing made twice.
    assert sorted((p, i) for p, i, _ in fake.made) == [("kill-after:2", 3), ("plain", 1), ("plain", 2), ("plain", 3)]
    assert len(list(out.iterdir())) == 6
    doc = resumed.json()
    assert doc["summary"]["succeeded"] == 2 and len(doc["images"]) == 6
