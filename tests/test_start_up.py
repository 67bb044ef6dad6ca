"""Before the run starts: Ctrl-C while imagegen (or torch) imports or a pipeline loads, and argv that is not UTF-8.

Every stop by Ctrl-C says so in one line (``interrupted``, or ``terminated`` after SIGTERM), whatever the phase;
a prompt the terminal sent in another encoding is a usage error before anything is planned or sent.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import gateway_env, run_cli
from tests.fakegateway import FakeGateway


def _journal_jobs() -> list[object]:
    return run_cli("tasks", "list", "--limit", "0", "--json").json()


# ---------------------------------------------------------------- Ctrl-C during start-up
@pytest.mark.parametrize("step", ["import_stack", "load_pipeline"])
@pytest.mark.parametrize("json_out", [False, True], ids=["text", "json"])
def test_ctrl_c_while_torch_imports_or_the_pipeline_loads_says_interrupted(
    step: str, json_out: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from imagegen_cli.local import runner

    if step == "load_pipeline":
        pytest.importorskip("torch")
        pytest.importorskip("diffusers")

    def ctrl_c(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, step, ctrl_c)
    # The long-lived local engine keeps a pipeline an earlier test of this worker loaded: let go of it, so that
    # this run loads (and is interrupted while loading) whatever ran before.
    from imagegen_cli import engines

    held = engines._INSTANCES.get("local")
    if held is not None:
        held.engine.unload()  # type: ignore[attr-defined]
    result = run_cli("generate", "a fox", "-m", "local:tiny", "-o", str(tmp_path / "out"), *(["--json"] * json_out))
    assert result.returncode == 130
    assert result.stderr.splitlines() == ["interrupted"]
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    if json_out:
        assert result.json()["images"] == []
    else:
        assert result.stdout == ""


def test_sigterm_while_torch_imports_says_terminated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from imagegen_cli.local import runner
    from imagegen_cli.signals import StopSignal

    def sigterm() -> None:
        # What the SIGTERM handler (cli.app._on_sigterm) does when Python's default Ctrl-C handler is in place.
        StopSignal.terminated = True
        raise KeyboardInterrupt

    monkeypatch.setattr(StopSignal, "terminated", False)  # restored after the test, whatever the run set
    monkeypatch.setattr(runner, "import_stack", sigterm)
    result = run_cli("generate", "a fox", "-m", "local:tiny", "-o", str(tmp_path))
    assert (result.returncode, result.stderr.splitlines()) == (143, ["terminated"])


@pytest.mark.parametrize("where", ["building the command", "inside the command, before its error handler"])
def test_ctrl_c_before_the_command_runs_says_interrupted(
    where: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Outside report_errors, Typer turns Ctrl-C into exit 130 without a word (or, while it builds the command
    # from the annotations, lets it through): main() says it.
    import typer.main

    from imagegen_cli.cli import app as app_module
    from imagegen_cli.cli import generate as generate_module
    from imagegen_cli.signals import StopSignal

    monkeypatch.setattr(StopSignal, "terminated", False)

    def ctrl_c(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    if where == "building the command":
        monkeypatch.setattr(typer.main, "get_command", ctrl_c)
    else:
        monkeypatch.setattr(generate_module, "Output", ctrl_c)
    monkeypatch.setattr(sys, "argv", ["imagegen", "generate", "a fox", "-m", "openai:gpt-image-1.5", "--dry-run"])
    with pytest.raises(SystemExit) as stopped:
        app_module.main()
    assert stopped.value.code == 130
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "interrupted\n")


def test_ctrl_c_while_imagegen_itself_imports_is_one_line(tmp_path: Path) -> None:
    # The console script imports the CLI before main() runs; a Ctrl-C then (simulated by a sitecustomize hook
    # that interrupts the import of typer) is one line too, not a traceback.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import sys\n"
        "class CtrlC:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'typer':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, CtrlC())\n"
    )
    result = run_cli("generate", "a fox", "--dry-run", env={"PYTHONPATH": str(hook)}, process=True)
    assert result.returncode in (130, -2)  # -2: ended by SIGINT, as Python does after an unhandled Ctrl-C
    assert result.stderr == "interrupted\n"


# ---------------------------------------------------------------- argv that is not UTF-8
def test_a_prompt_that_is_not_utf8_is_a_usage_error_before_anything_is_sent(gateway: FakeGateway) -> None:
    # A Latin-1 terminal sends "été" as the bytes e9 74 e9; Python keeps the invalid bytes as lone surrogates.
    latin1 = b"\xe9t\xe9".decode("utf-8", "surrogateescape")
    result = run_cli("generate", latin1, "-m", "openai:gpt-image-1.5", env=gateway_env(gateway))
    assert result.returncode == 2
    error, hint = result.stderr.splitlines()
    assert error == "error: the prompt is not valid UTF-8 (byte 0xe9 at position 0)"
    assert hint.startswith("hint: ") and "UTF-8" in hint and "--prompt-file" in hint
    assert gateway.requests == [] and result.stdout == ""
    assert _journal_jobs() == []
    negative = run_cli(
        "generate", "a fox", "-m", "openai:gpt-image-1.5", "--negative-prompt", latin1, "--dry-run", "--json"
    )
    assert negative.returncode == 2
    assert negative.stderr.splitlines()[0] == "error: --negative-prompt is not valid UTF-8 (byte 0xe9 at position 0)"
    param = run_cli("generate", "a fox", "-m", "openai:gpt-image-1.5", "--param", f"style={latin1}", "--dry-run")
    assert param.returncode == 2 and "--param is not valid UTF-8" in param.stderr
