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


def test_a_line_another_live_process_is_making_is_not_started_again(fake: FakeEngine, tmp_path: Path) -> None:
    """Two overlapping `--resume` runs of one batch: the line the other (live) run holds is not made twice."""
    import sqlite3
    import subprocess

    from imagegen_cli.store.job_rows import process_start
    from imagegen_cli.store.journal import journal_path

    out = tmp_path / "out"
    prompts = lines(tmp_path, "stop-after:1", "plain")
    args = ["generate", "--prompt-file", str(prompts), "-m", "fake:m", "-n", "2", "-o", str(out)]
    assert run_cli(*args).returncode == 130  # line 1 saved one image of two; line 2 never started
    other = subprocess.Popen(["sleep", "60"])  # stands for the other imagegen, alive, holding line 1
    try:
        with sqlite3.connect(journal_path()) as conn:
            conn.execute("UPDATE jobs SET pid = ?, pid_start = ?, owner = NULL, status = 'running'",
                         (other.pid, process_start(other.pid)))  # fmt: skip
        fake.made.clear()
        resumed = run_cli(*args, "--resume", "--json")
    finally:
        other.kill()
        other.wait()
    assert resumed.returncode == 5, resumed.stderr
    assert [p for p, _, _ in fake.made] == ["plain", "plain"]  # line 1 was left to its owner
    assert f"being generated by another imagegen process (pid {other.pid})" in resumed.stderr


def test_a_usage_error_found_when_the_run_begins_leaves_no_job(tmp_path: Path) -> None:
    """`--device mps` without an Apple GPU is exit 2 with nothing made: no failed job is left in the journal."""
    result = run_cli("generate", "x", "-m", "local:tiny", "--device", "mps", "-o", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "no Apple GPU" in result.stderr
    assert run_cli("tasks", "list", "--json").json() == []


def test_no_error_sits_beside_succeeded(fake: FakeEngine, tmp_path: Path) -> None:
    """An error met on the way to an image that was saved after all is a note: exit 0, `succeeded`, no errors."""
    from imagegen_cli.errors import GatewayError
    from imagegen_cli.events import CallFailed

    original = fake._one

    def failing_then_fine(job, plan, index, channel):  # type: ignore[no-untyped-def]
        channel.emit(CallFailed(job.work, GatewayError("fake: a first try failed")))
        original(job, plan, index, channel)

    fake._one = failing_then_fine  # type: ignore[method-assign]
    result = run_cli("generate", "x", "-m", "fake:m", "-o", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    doc = result.json()
    assert doc["status"] == "succeeded" and doc["errors"] == []
    assert any("a first try failed" in note for note in doc["notes"])
