"""SIGINT and SIGTERM during submit, poll, download and save: no partial files, pending tasks recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import CAPTURED, IMAGEGEN, gateway_env, run_cli
from tests.fakegateway import FakeGateway

PHASES = {
    # phase: (model, fault setup, how to know the process is in that phase)
    "submit": (
        "openai:dall-e-2",
        lambda gw: gw.fault("generate", "slow", delay=20),
        lambda gw: bool(gw.calls("openai")),
    ),
    "poll": (
        "apimart:z-image-turbo",
        lambda gw: gw.fault("generate", "never"),
        lambda gw: any("/tasks/" in r.path for r in gw.requests),
    ),
    "download": (
        "modelmax:imagen-3",
        lambda gw: gw.fault("image", "slow_body", delay=20),
        lambda gw: bool(gw.image_requests),
    ),
}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", list(PHASES))
def test_signal_during(phase: str, sig: signal.Signals, gateway: FakeGateway, tmp_path: Path) -> None:
    model, setup, reached = PHASES[phase]
    setup(gateway)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [str(IMAGEGEN), "generate", "a lighthouse", "-m", model, "-o", str(out), "--json"],
        env={**os.environ, **gateway_env(gateway)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while not reached(gateway):
        assert time.monotonic() < deadline, "never reached the phase"
        time.sleep(0.02)
    time.sleep(0.3)  # well inside it
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=20)
    CAPTURED.extend([stdout, stderr])
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), stderr
    assert b"Traceback" not in stderr
    doc = json.loads(stdout)
    assert doc["images"] == []
    assert not (out.exists() and list(out.iterdir())), list(out.iterdir())  # no image, no .part file
    (job,) = run_cli("tasks", "list", "--json").json()
    if phase == "poll":
        assert job["status"] == "submitted" and [t["status"] for t in job["tasks"]] == ["pending"]
        assert "resume with: imagegen tasks wait" in stderr.decode()
    else:
        assert job["paths"] == []


def test_interrupt_while_saving_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from imagegen_cli.store.writer import ImageWriter, OutputSpec

    out = tmp_path / "out"
    spec = OutputSpec.from_args(
        str(out), default_dir=None, template=None, fmt=None, overwrite=False, metadata=True, n=1
    )
    writer = ImageWriter(spec, prompt="x", provider="test", model="m", n=1)
    original = Image.Image.save

    def interrupted_save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        original(self, fp, *args, **kwargs)
        raise KeyboardInterrupt  # Ctrl-C lands while the encoded image is being written

    monkeypatch.setattr(Image.Image, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        writer.save_pil(Image.new("RGB", (32, 32)), index=1, seed=None, meta={"prompt": "x"})
    assert list(out.iterdir()) == []


def _term_during_submit(gateway: FakeGateway, tmp_path: Path, delay: float) -> tuple[int, str, str]:
    """SIGTERM while apimart's task-creating call is out (answered after ``delay`` s); the job's id and stderr."""
    gateway.fault("generate", "slow", delay=delay)
    gateway.task_polls = 0
    proc = subprocess.Popen(
        [str(IMAGEGEN), "generate", "x", "-m", "apimart:z-image-turbo", "-o", str(tmp_path / "out"), "--json"],
        env={**os.environ, **gateway_env(gateway)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while not gateway.calls("apimart"):
        assert time.monotonic() < deadline, "never sent the call"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    CAPTURED.extend([stdout, stderr])
    return proc.returncode, json.loads(stdout)["job"], stderr.decode()


def test_sigterm_during_a_submission_keeps_the_task_the_gateway_created(gateway: FakeGateway, tmp_path: Path) -> None:
    """The gateway answers soon after the stop: its task is journalled, and `tasks wait` fetches the image."""
    code, job, _ = _term_during_submit(gateway, tmp_path, delay=1.0)
    assert code == 143
    shown = run_cli("tasks", "show", job, "--json").json()
    assert [t["status"] for t in shown["tasks"]] == ["pending"]
    waited = run_cli("tasks", "wait", job, env=gateway_env(gateway))
    assert waited.returncode == 0, waited.stderr
    assert len(waited.lines) == 1 and Path(waited.lines[0]).is_file()


def test_sigterm_during_a_submission_with_no_answer_says_what_is_unknown(gateway: FakeGateway, tmp_path: Path) -> None:
    """No answer before the stop ends: the call stays journalled as in flight, and nothing is made again blindly."""
    code, job, _ = _term_during_submit(gateway, tmp_path, delay=20)
    assert code == 143
    shown = run_cli("tasks", "show", job, "--json").json()
    assert [t["status"] for t in shown["tasks"]] == ["submitting"]
    waited = run_cli("tasks", "wait", job, env=gateway_env(gateway))
    assert waited.returncode == 1
    assert "the call for image 1 was out when the run stopped" in waited.stderr
    assert "apimart may have created (and billed) a task" in waited.stderr and "never submitted" not in waited.stderr
