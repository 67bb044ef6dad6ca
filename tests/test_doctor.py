"""``imagegen doctor``: what it reports, its exit code, no key values, no torch import when torch is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import CAPTURED, gateway_env, run_cli
from tests.fakegateway import TEST_KEY, FakeGateway

LOCAL_EXTRA_HINT = "pip install 'imagegen-cli[local]' torch==2.13.0 (or your own CUDA build of torch)"


def doctor(*args: str, env: dict[str, str] | None = None) -> Any:
    from imagegen_cli.cli.app import app

    result = CliRunner().invoke(app, ["doctor", *args], env=env)
    CAPTURED.append(result.output.encode())
    return result


def by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in document["checks"]}


def test_remote_default_with_a_key_is_ready_and_the_key_is_never_shown(gateway: FakeGateway) -> None:
    env = {**gateway_env(gateway), "IMAGEGEN_MODEL": "openai:dall-e-2"}
    result = doctor("--json", env=env)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    checks = by_name(document)
    assert document["ok"] is True and document["default_model"] == "openai:dall-e-2"
    assert checks["key openai"]["status"] == "ok" and "IMAGEGEN_OPENAI_API_KEY" in checks["key openai"]["value"]
    assert checks["python"]["status"] == "ok" and checks["config"]["status"] == "ok"
    assert TEST_KEY not in result.output
    human = doctor(env=env)
    assert human.exit_code == 0 and TEST_KEY not in human.output
    assert "key openai" in human.output and human.output.rstrip().endswith("ready")


def test_missing_key_for_the_default_provider_is_exit_1_with_the_fix() -> None:
    result = doctor(env={"IMAGEGEN_MODEL": "openai:dall-e-2"})
    assert result.exit_code == 1
    assert "key openai: imagegen keys set openai" in result.output
    assert "not ready" in result.output


def test_online_checks_each_base_url(gateway: FakeGateway) -> None:
    env = {**gateway_env(gateway), "IMAGEGEN_MODEL": "openai:dall-e-2"}
    result = doctor("--online", "--json", env=env)
    assert result.exit_code == 0, result.output
    checks = by_name(json.loads(result.stdout))
    assert checks["online openai"]["status"] == "ok" and "answers (HTTP" in checks["online openai"]["value"]
    dead = doctor("--online", "--json", env={**env, "IMAGEGEN_OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert dead.exit_code == 1
    problems = {p["name"]: p for p in json.loads(dead.stdout)["problems"]}
    assert "cannot be reached: connection refused" in problems["online openai"]["problem"]
    assert problems["online openai"]["fix"] and "Error)" not in problems["online openai"]["problem"]


def test_online_probes_share_one_timeout_and_a_stalled_gateway_is_said(gateway: FakeGateway) -> None:
    """Every gateway stalls its answer: the whole --online check is bounded by one --timeout, said per gateway."""
    import threading

    release = threading.Event()
    stalled = stalling_server(release)
    env = {"IMAGEGEN_MODEL": "openai:dall-e-2", "IMAGEGEN_OPENAI_API_KEY": TEST_KEY}
    for provider in ("openai", "mka1", "kkiai", "modelmax", "token360", "apimart"):
        env[f"IMAGEGEN_{provider.upper()}_BASE_URL"] = stalled
    try:
        result = doctor("--online", "--timeout", "0.5", "--json", env=env)
    finally:
        release.set()
    assert result.exit_code == 1, result.output
    problems = {p["name"]: p["problem"] for p in json.loads(result.stdout)["problems"]}
    for provider in ("openai", "apimart", "token360"):
        assert "does not answer" in problems[f"online {provider}"], problems


def stalling_server(release: Any) -> str:
    """An HTTP server that accepts and never answers until ``release`` is set; its base URL."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def serve() -> None:
        held = []
        listener.settimeout(0.05)
        while not release.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue
        for conn in held:
            conn.close()
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/v1"


def test_doctor_timeout_is_checked() -> None:
    result = run_cli("doctor", "--online", "--timeout", "nan")
    assert result.returncode == 2 and "--timeout" in result.stderr and "hint:" in result.stderr


def test_a_host_name_that_does_not_resolve_is_said_so_and_not_retried(gateway: FakeGateway) -> None:
    env = {**gateway_env(gateway), "IMAGEGEN_OPENAI_BASE_URL": "https://no-such-host.invalid/v1",
           "IMAGEGEN_MAX_RETRIES": "4", "IMAGEGEN_RETRY_BASE_DELAY": "5"}  # fmt: skip
    result = run_cli("generate", "x", "-m", "openai:dall-e-2", env=env)
    assert result.returncode == 1, result.stderr
    assert "no-such-host.invalid: the host name does not resolve" in result.stderr, result.stderr
    assert "retrying" not in result.stderr and "unknown error" not in result.stderr
    online = doctor("--online", "--json", env={**env, "IMAGEGEN_MODEL": "openai:dall-e-2"})
    problems = {p["name"]: p["problem"] for p in json.loads(online.stdout)["problems"]}
    assert "the host name does not resolve" in problems["online openai"]


def test_a_broken_config_file_is_a_problem(isolated_env: Path) -> None:
    config = isolated_env / "config" / "imagegen" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("default_model = [unclosed\n")
    result = doctor("--json", env={"IMAGEGEN_MODEL": "local:tiny"})
    assert result.exit_code == 1
    check = by_name(json.loads(result.stdout))["config"]
    assert check["status"] == "fail" and "not valid TOML" in check["value"]


def test_local_tiny_default_is_ready_offline() -> None:
    result = doctor("--json", env={"IMAGEGEN_MODEL": "local:tiny", "HF_HUB_OFFLINE": "1"})
    assert result.exit_code == 0, result.output
    checks = by_name(json.loads(result.stdout))
    assert checks["default model"]["status"] == "ok" and checks["offline"]["value"].startswith("yes")
    assert checks["hf cache"]["value"]
    offline = doctor("--json", env={"IMAGEGEN_MODEL": "local:sd-turbo", "HF_HUB_OFFLINE": "1"})
    assert offline.exit_code == 1
    assert by_name(json.loads(offline.stdout))["default model"]["fix"] == "imagegen models pull sd-turbo"


def test_a_local_default_without_its_weights_is_not_ready_online_or_offline() -> None:
    # Online, the first run would start by downloading gigabytes; offline (no network, HF_HUB_OFFLINE unset) it
    # would fail after its retries. Either way the weights are not there: not ready, with the command that fixes it.
    for offline in ("", "1"):
        result = doctor("--json", env={"IMAGEGEN_MODEL": "local:sd-turbo", "HF_HUB_OFFLINE": offline})
        assert result.exit_code == 1, (offline, result.output)
        document = json.loads(result.stdout)
        check = by_name(document)["default model"]
        assert check["status"] == "fail" and check["needed"] is True
        assert "not downloaded" in check["value"] and check["fix"] == "imagegen models pull sd-turbo"
    human = doctor(env={"IMAGEGEN_MODEL": "local:sd-turbo", "HF_HUB_OFFLINE": ""})
    assert "default model: imagegen models pull sd-turbo" in human.output
    assert human.output.rstrip().endswith("not ready: the default model cannot run (see above)")


def test_without_the_local_extra_the_built_in_default_points_to_a_remote_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from imagegen_cli.local import weights

    monkeypatch.setattr(weights, "installed", lambda module: module not in ("torch", "diffusers"))
    remote_hint = "imagegen config set default_model apimart:z-image-turbo"
    # generate with no -m, no IMAGEGEN_MODEL, no default_model in the config: the built-in local:auto
    result = run_cli("generate", "a fox", "-o", str(tmp_path / "out"))
    assert result.returncode == 4
    error, hint = result.stderr.splitlines()
    assert error == (
        "error: no model was given, and the default (local:auto) needs the local extra (torch is not installed)"
    )
    assert hint == (
        "hint: use a remote model: -m apimart:z-image-turbo, or once for all: "
        f"{remote_hint}; or install the local extra: {LOCAL_EXTRA_HINT}"
    )
    assert run_cli("tasks", "list", "--json").json() == [] and not (tmp_path / "out").exists()
    # A local model asked for by name keeps the plain message: the user chose it.
    named = run_cli("generate", "a fox", "-m", "local:tiny", "-o", str(tmp_path / "out"))
    assert named.returncode == 4
    assert named.stderr.splitlines() == [
        "error: local:tiny needs the local extra (torch is not installed)",
        f"hint: {LOCAL_EXTRA_HINT}",
    ]
    checks = by_name(json.loads(doctor("--json").stdout))
    assert checks["default model"]["status"] == "fail" and remote_hint in checks["default model"]["fix"]


def test_local_default_model_is_judged_as_generate_resolves_it(tmp_path: Path) -> None:
    from imagegen_cli.local.tiny import ensure_tiny_pipeline

    def default_model(model: str) -> dict[str, Any]:
        result = doctor("--json", env={"IMAGEGEN_MODEL": model})
        return by_name(json.loads(result.stdout))["default model"]

    assert default_model("local:tiny")["value"] == "local:tiny: built on first use"
    ensure_tiny_pipeline()
    built = default_model("local:tiny")
    assert built["status"] == "ok" and built["value"].startswith("local:tiny: built (")
    assert built["value"].endswith(" KB)") or built["value"].endswith(" MB)")
    # A path that is not a pipeline folder is what generate refuses, not a Hub repo to download.
    missing = default_model("local:./nowhere")
    assert missing["status"] == "fail" and missing["needed"] is True
    assert "is not a diffusers pipeline directory" in missing["value"]
    assert default_model("local:org/name")["value"] == "local:org/name: a Hub repo, downloaded on first use"


HIDE_TORCH = """
import builtins, sys
sys.modules["torch"] = None  # as if torch were not installed
attempts = []
real_import = builtins.__import__
def watch(name, *args, **kwargs):
    if name.split(".")[0] == "torch":
        attempts.append(name)
    return real_import(name, *args, **kwargs)
builtins.__import__ = watch
from imagegen_cli.cli.app import app
try:
    app(["doctor", "--json"], prog_name="imagegen")
except SystemExit as exc:
    sys.stderr.write(f"attempts={attempts} code={exc.code}\\n")
"""


def test_without_torch_doctor_does_not_import_it() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", HIDE_TORCH],
        capture_output=True,
        env={**os.environ, "IMAGEGEN_MODEL": "local:auto"},
        timeout=60,
        check=False,
    )
    CAPTURED.extend([proc.stdout, proc.stderr])
    assert b"attempts=[] code=1" in proc.stderr, proc.stderr
    checks = by_name(json.loads(proc.stdout))
    assert checks["torch"] == {
        "name": "torch",
        "status": "fail",
        "value": "not installed",
        "fix": "pip install 'imagegen-cli[local]' torch==2.13.0 (or your own CUDA build of torch)",
        "needed": True,
    }
    assert checks["default model"]["status"] == "fail"
