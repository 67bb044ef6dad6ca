"""Disk faults: an output directory that cannot be created or written, and a full disk (ENOSPC)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import CAPTURED, IMAGEGEN, gateway_env, run_cli
from tests.fakegateway import FakeGateway

# Loaded by the imagegen process through PYTHONPATH: every temporary image file it opens reports a full
# disk after the first few kilobytes, as a real ENOSPC would.
ENOSPC_HOOK = """
import errno, os
import imagegen_cli.store.writer as writer

class FullDisk:
    def __init__(self, handle):
        self.handle, self.written = handle, 0
    def write(self, data):
        self.written += len(data)
        if self.written > 2048:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.handle.write(data)
    def __getattr__(self, name):
        return getattr(self.handle, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.handle.close()

original = writer.ImageWriter.temp_file
def temp_file(self):
    handle, path = original(self)
    return FullDisk(handle), path
writer.ImageWriter.temp_file = temp_file
"""


def test_output_dir_that_cannot_be_created(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "x", "-m", "openai:dall-e-2", "-o", "/proc/imagegen-out")
    assert result.returncode == 2
    assert "cannot create output directory /proc/imagegen-out" in result.stderr
    assert gateway.requests == []


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to become another user")
def test_output_dir_not_writable(gateway: FakeGateway) -> None:
    # Root may write anywhere, so run imagegen as nobody, with its own world-accessible home.
    home = Path(tempfile.mkdtemp(prefix="imagegen-nobody-"))
    try:
        home.chmod(0o777)
        locked = home / "locked"
        locked.mkdir(mode=0o755)  # owned by root: nobody cannot write here
        env = {
            **os.environ,
            **gateway_env(gateway),
            "XDG_CONFIG_HOME": str(home / "c"),
            "XDG_DATA_HOME": str(home / "d"),
            "XDG_CACHE_HOME": str(home / "k"),
            "HOME": str(home),
        }
        proc = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                str(IMAGEGEN),
                "generate",
                "x",
                "-m",
                "openai:dall-e-2",
                "-o",
                str(locked),
            ],
            env=env,
            capture_output=True,
            check=False,
        )
        CAPTURED.extend([proc.stdout, proc.stderr])
        assert proc.returncode == 2, proc.stderr
        assert f"output directory {locked} is not writable" in proc.stderr.decode()
        assert gateway.requests == []
        assert list(locked.iterdir()) == []
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("model", ["openai:dall-e-2", "modelmax:imagen-3"], ids=["base64", "download"])
def test_disk_full(model: str, gateway: FakeGateway, tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(ENOSPC_HOOK)
    out = tmp_path / "out"
    result = run_cli(
        "generate",
        "x",
        "-m",
        model,
        "--size",
        "512x512",
        "-o",
        str(out),
        "--json",
        # Keep any PYTHONPATH already set (a worktree under test) behind the hook.
        env={
            **gateway_env(gateway),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])),
        },
    )
    assert result.returncode == 1, result.stderr
    assert "cannot save image 1: No space left on device" in result.stderr
    assert "free space" in result.stderr  # the hint
    assert result.json()["errors"][0]["code"] == "save"
    assert list(out.iterdir()) == []  # nothing half-written left behind
    (job,) = run_cli("tasks", "list", "--json").json()
    assert job["status"] == "failed"


def test_keys_file_mode(tmp_path: Path) -> None:
    run_cli("keys", "set", "openai", input=b"sk-some-key-value\n")
    keys = Path(os.environ["XDG_CONFIG_HOME"]) / "imagegen" / "keys.json"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    keys.chmod(0o640)
    result = run_cli("keys", "list")
    assert result.returncode == 4 and "readable by other users" in result.stderr
