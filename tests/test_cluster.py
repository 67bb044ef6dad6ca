"""``--engine ray`` (issue 26): a batch's pipeline calls made by actors of a real local Ray instance.

One Ray instance per test module (``num_cpus=2``, no dashboard), started the way a user's ``ray start --head``
would be, with the tiny pipeline; the runs join it as drivers (in this process, or as ``imagegen`` processes with
``--ray-address``). What is checked is what a user relies on: every image saved exactly once with its seed and
the pixels an in-process run makes, a worker killed mid-run, Ctrl-C, the driver SIGKILLed then ``--resume``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imagegen_cli.options import ClusterOptions, GenerateOptions, OutputOptions, RequestOptions, RunOptions
from imagegen_cli.result import SilentSink
from tests.conftest import IMAGEGEN, run_cli, write_config

ray = pytest.importorskip("ray", reason="the ray extra is part of the dev install")

LINES = 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local Ray instance for the module; its workers see an offline Hub and their own cache (the tiny model)."""
    home = tmp_path_factory.mktemp("ray-home")
    env = {
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / "cache"),
        "HF_HUB_OFFLINE": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        # Loopback only, and the drivers of these tests run with other HOMEs (where Ray looks for its token).
        "RAY_AUTH_MODE": "disabled",
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        address = ray.get_runtime_context().gcs_address
    finally:
        for name, value in saved.items():
            if name == "RAY_AUTH_MODE":
                continue  # the drivers started by the tests join without a token
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    yield address
    ray.shutdown()
    if saved["RAY_AUTH_MODE"] is None:
        os.environ.pop("RAY_AUTH_MODE", None)


class Recorder(SilentSink):
    """Keeps what a run says about its workers and its notes said at once."""

    def __init__(self) -> None:
        self.states: list[tuple[tuple[str, str, int], ...]] = []
        self.notes: list[str] = []

    def workers(self, states: tuple[tuple[str, str, int], ...]) -> None:
        self.states.append(states)

    def made(self) -> dict[str, int]:
        """Images each worker returned, by the last word of the run."""
        return {name: made for name, _, made in self.states[-1]}

    def note(self, text: str) -> None:
        self.notes.append(text)


def prompt_file(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("".join(f"a lighthouse number {k}\n" for k in range(1, count + 1)))
    return path


def options(out: Path, *, engine: str | None = "ray", n: int = 1, **cluster: Any) -> GenerateOptions:
    return GenerateOptions(
        model="local:tiny",
        request=RequestOptions(n=n, seed=7, steps=2),
        output=OutputOptions(out=str(out)),
        run=RunOptions(engine=engine, cluster=ClusterOptions(**cluster) if engine else ClusterOptions()),
    )


def records(folder: Path) -> dict[tuple[str, int], tuple[int, bytes, Path]]:
    """Each saved file by (prompt, index): its seed, its pixels and its path (a second copy fails the test)."""
    found: dict[tuple[str, int], tuple[int, bytes, Path]] = {}
    for path in sorted(folder.glob("*.png")):
        with Image.open(path) as image:
            record = json.loads(image.info["imagegen"])
            key = (record["prompt"], record["index"])
            assert key not in found, f"{key} saved twice: {found[key][2].name} and {path.name}"
            found[key] = (record["seed"], image.tobytes(), path)
    return found


def test_twenty_lines_on_two_workers_are_saved_once_with_in_process_pixels(cluster: str, tmp_path: Path) -> None:
    import torch

    from imagegen_cli.api import run_batch

    lines = prompt_file(tmp_path, LINES)
    sink = Recorder()
    # Three workers asked for, room for two (a CPU each of the instance's two): the third never starts, and the
    # run never waits for it.
    result = run_batch(lines, options(tmp_path / "ray", workers=3), sink=sink)
    assert result.exit_code() == 0, [(job.line, job.status(), len(job.images), job.notes) for job in result.jobs]
    assert len(result.jobs) == LINES and all(len(job.images) == 1 for job in result.jobs)
    # Two actors made images (counted from what each returned), together all of them; the third none.
    made = sink.made()
    assert sorted(made.values())[0] == 0 and all(sorted(made.values())[1:]) and sum(made.values()) == LINES, made
    assert [state for name, state, count in sink.states[-1] if count == 0] == ["starting"]
    notes = [note for job in result.jobs for note in job.notes]
    assert any("ray: 3 workers" in note for note in notes) and any("room for 2 of 3 workers" in note for note in notes)

    on_cluster = records(tmp_path / "ray")
    assert len(on_cluster) == LINES and {prompt for prompt, _ in on_cluster} == set(lines.read_text().splitlines())
    assert all(seed == 7 for seed, _, _ in on_cluster.values())

    # Lines spread over both workers, made again in this process with the thread count Ray gives each worker
    # (CPU sums depend on it): the same pixels.
    sample = tmp_path / "sample.txt"
    sample.write_text("".join(line + "\n" for line in lines.read_text().splitlines()[::5]))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here = run_batch(sample, options(tmp_path / "here", engine=None))
    finally:
        torch.set_num_threads(threads)
    assert here.exit_code() == 0
    in_process = records(tmp_path / "here")
    assert len(in_process) == 4
    for key, (_, pixels, path) in in_process.items():
        assert pixels == on_cluster[key][1], f"{path.name}: other pixels than in-process"
    # Journalled as an in-process run is: one job per line, its images recorded.
    from imagegen_cli.store.journal import Journal

    with Journal.open() as journal:
        rows = [journal.get(job.job_id or "") for job in result.jobs]
    assert all(row.status == "succeeded" and row.saved_indices() == {1} for row in rows)


def _busy_image_workers() -> list[int]:
    """Pids of this instance's ImageWorker actors making a call now (Ray titles the process after the method
    running in it; children of this instance's raylet, never another test process's instance)."""
    import psutil

    node = ray._private.worker.global_worker.node
    raylet = node.all_processes["raylet"][0].process.pid
    found = []
    for proc in psutil.Process(raylet).children():
        try:
            if proc.cmdline() and proc.cmdline()[0].startswith("ray::ImageWorker.make"):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def test_a_worker_killed_mid_run_has_its_calls_made_by_another(
    cluster: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from imagegen_cli.api import run_batch

    out = tmp_path / "out"
    killed: list[int] = []

    def kill_one_after_the_first_images() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            pids = _busy_image_workers() if len(list(out.glob("*.png"))) >= 2 else []
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_after_the_first_images, daemon=True)
    killer.start()
    sink = Recorder()
    result = run_batch(prompt_file(tmp_path, 8), options(out, workers=2, n=2), sink=sink)
    killer.join(5)
    assert killed, "no worker was running to kill"
    assert result.exit_code() == 0, [(job.line, job.status(), len(job.images), job.notes) for job in result.jobs]
    saved = records(out)  # exactly one file per image, even for the calls in flight on the killed worker
    assert len(saved) == 16 and all(seed == 7 + index - 1 for (_, index), (seed, _, _) in saved.items())
    assert any(state == "lost" for states in sink.states for _, state, _ in states)
    assert any("died" in note and "sent to another worker" in note for note in sink.notes), sink.notes
    time.sleep(0.5)  # Ray's own message about the death arrives on its own thread: on stderr, never on stdout
    assert "(raylet)" not in capfd.readouterr().out


def _paths_after(proc: subprocess.Popen[bytes], count: int, timeout: float = 120) -> list[str]:
    """Read ``count`` saved paths from a running batch's stdout (it streams them as they land), within ``timeout``."""
    import selectors

    assert proc.stdout is not None
    paths: list[str] = []
    pending = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while (len(paths) < count or pending) and time.monotonic() < deadline:
            if not selector.select(timeout=0.2):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break  # the process ended
            pending += chunk
            *lines, pending = pending.split(b"\n")
            paths += [line.decode() for line in lines if line]
    return paths


def test_ctrl_c_then_the_driver_killed_then_resume_finish_with_one_set_per_line(cluster: str, tmp_path: Path) -> None:
    lines, out = prompt_file(tmp_path, 12), tmp_path / "out"  # enough that no run ends before its signal
    base = [str(IMAGEGEN), "generate", "--prompt-file", str(lines), "-m", "local:tiny", "-n", "2", "--seed", "7"]
    base += ["--steps", "2", "--engine", "ray", "-o", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    # Ctrl-C: the calls in flight stop between steps; exit 130; what was saved is listed and journalled.
    pipes: dict[str, Any] = {"env": env, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    first = subprocess.Popen([*base, "--ray-address", cluster, "--workers", "1"], **pipes)
    listed = _paths_after(first, 2)
    first.send_signal(signal.SIGINT)
    rest, err = first.communicate(timeout=60)
    listed += [line for line in rest.decode().splitlines() if line]
    assert first.returncode == 130, err.decode()[-2000:]
    assert len(listed) >= 2 and all(Path(path).exists() for path in listed)
    before = {path: Path(path).stat().st_mtime_ns for path in listed}
    assert sorted(str(p) for p in out.glob("*.png")) == sorted(before)

    # SIGTERM: the run's own stop (Ray's handler is not left in its place): exit 143, what was saved listed.
    term = subprocess.Popen([*base, "--ray-address", cluster, "--workers", "1", "--resume"], **pipes)
    listed = _paths_after(term, 2)
    term.send_signal(signal.SIGTERM)
    rest, err = term.communicate(timeout=60)
    listed += [line for line in rest.decode().splitlines() if line]
    # No traceback, and no stack dump from Ray's core (its C-level SIGTERM handler is replaced by the run's).
    assert term.returncode == 143 and "Traceback" not in err.decode(), err.decode()[-2000:]
    assert "SIGTERM received" not in err.decode(), err.decode()[-2000:]
    assert len(listed) >= 2 and all(Path(path).exists() for path in listed)
    before |= {path: Path(path).stat().st_mtime_ns for path in listed}

    # The driver SIGKILLed mid-run (its actors die with it), resuming.
    second = subprocess.Popen([*base, "--ray-address", cluster, "--workers", "1", "--resume"], **pipes)
    assert _paths_after(second, 2)
    second.send_signal(signal.SIGKILL)
    second.communicate(timeout=30)

    # The same command with --resume, on a Ray instance of its own (no address): the rest, nothing twice.
    env.pop("RAY_ADDRESS", None)
    third = subprocess.run(
        [*base, "--workers", "1", "--resume", "--json"], env=env, capture_output=True, timeout=300, check=False
    )
    assert third.returncode == 0, third.stderr.decode()[-2000:]
    assert json.loads(third.stdout)["status"] == "succeeded"  # stdout holds the JSON document and nothing else
    saved = records(out)
    assert len(saved) == 24 and all(seed == 7 + index - 1 for (_, index), (seed, _, _) in saved.items())
    for path, mtime in before.items():  # saved before: never made or written again
        assert Path(path).stat().st_mtime_ns == mtime


def test_worker_writes_places_the_files_once_even_when_a_worker_dies(cluster: str, tmp_path: Path) -> None:
    from imagegen_cli.api import run_batch
    from imagegen_cli.store.journal import Journal

    out = tmp_path / "shared"
    killed: list[int] = []

    def kill_the_worker_after_its_first_files() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            pids = _busy_image_workers() if len(list(out.glob("*.png"))) >= 2 else []
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.02)

    killer = threading.Thread(target=kill_the_worker_after_its_first_files, daemon=True)
    killer.start()
    sink = Recorder()
    # One worker: its death is survived by the replacement the driver starts.
    result = run_batch(prompt_file(tmp_path, 6), options(out, workers=1, n=2, worker_writes=True), sink=sink)
    killer.join(5)
    assert killed, "no worker was running to kill"
    assert result.exit_code() == 0, [(job.line, job.status(), len(job.images), job.notes) for job in result.jobs]
    assert sink.made().get("w2", 0) > 0  # the replacement made the rest
    saved = records(out)  # one file per image: what the dead worker placed was adopted, not made again
    assert len(saved) == 12
    with Journal.open() as journal:
        for job in result.jobs:
            assert job.job_id is not None
            row = journal.get(job.job_id)
            assert row.status == "succeeded" and len(row.saved_indices()) == 2
            for image in job.images:  # the file's own record names its job (what a resume adopts by)
                with Image.open(image.path) as png:
                    assert json.loads(png.info["imagegen"])["job"] == job.job_id
    # Nothing half-written but what the killed worker was writing (its pid names it; a later run sweeps it).
    assert all(f"-{killed[0]}-" in part.name for part in out.glob("*.part*")), list(out.glob("*.part*"))


def test_engine_ray_refuses_a_remote_model_and_stray_flags_in_one_line() -> None:
    remote = run_cli("generate", "a fox", "-m", "openai:gpt-image-1.5", "--engine", "ray", "--dry-run")
    assert remote.returncode == 2
    assert "--engine ray runs local models" in remote.stderr and len(remote.stderr.strip().splitlines()) <= 2
    stray = run_cli("generate", "a fox", "-m", "local:tiny", "--workers", "2", "--dry-run")
    assert stray.returncode == 2 and "--workers goes with --engine ray" in stray.stderr
    bad = run_cli("generate", "a fox", "-m", "local:tiny", "--engine", "ray", "--ray-address", "no good", "--dry-run")
    assert bad.returncode == 2 and "invalid --ray-address" in bad.stderr
    unknown = run_cli("generate", "a fox", "-m", "local:tiny", "--engine", "spark", "--dry-run")
    assert unknown.returncode == 2 and "unknown --engine" in unknown.stderr
    bare = run_cli("generate", "a fox", "-m", "local:tiny", "--engine", "ray", "--worker-writes", "--no-metadata")
    assert bare.returncode == 2 and "--worker-writes needs each file's record" in bare.stderr


def test_an_address_nobody_answers_fails_in_seconds_not_minutes(tmp_path: Path) -> None:
    import socket

    with socket.socket() as closed:  # a port just freed: nothing listens on it
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = run_cli(
        "generate", "a fox", "-m", "local:tiny", "--engine", "ray", "--ray-address", f"127.0.0.1:{port}",
        "-o", str(tmp_path / "out"), timeout=60, process=True,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert f"could not reach the Ray cluster at 127.0.0.1:{port}" in result.stderr
    assert "ray start --head" in result.stderr and result.stdout == "" and not list(tmp_path.glob("out/*"))


def test_without_ray_installed_the_error_is_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    result = run_cli("generate", "a fox", "-m", "local:tiny", "--engine", "ray", "--dry-run")
    assert result.returncode == 2
    assert "pip install 'imagegen-cli[ray]'" in result.stderr


def test_dry_run_and_config_choose_the_cluster() -> None:
    write_config('ray_workers = 3\nray_address = "auto"\n[engines]\nlocal = "ray"\n')
    result = run_cli("generate", "a fox", "-m", "local:tiny", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    plan = result.json()
    plan = plan[0] if isinstance(plan, list) else plan
    text = json.dumps(plan)
    assert '"engine": "ray"' in text and '"workers": 3' in text and '"address": "auto"' in text
    # --engine local wins over the config's engine; the flags win over its values.
    local = run_cli("generate", "a fox", "-m", "local:tiny", "--engine", "local", "--dry-run", "--json")
    assert local.returncode == 0 and '"engine": "ray"' not in local.stdout
    flags = run_cli("generate", "a fox", "-m", "local:tiny", "--workers", "5", "--dry-run", "--json")
    assert flags.returncode == 0 and '"workers": 5' in flags.stdout


def test_planning_a_ray_run_imports_neither_ray_nor_torch() -> None:
    from tests.conftest import heavy_imports

    heavy, (plan,) = heavy_imports(["generate", "a fox", "-m", "local:tiny", "--engine", "ray", "--dry-run", "--json"])
    assert '"engine": "ray"' in plan
    assert not {"ray", "torch", "diffusers"} & set(heavy), heavy
