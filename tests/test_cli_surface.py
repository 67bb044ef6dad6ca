"""What a new user meets first: the default command, help that agrees with the README, one-line usage errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_KEY, gateway_env, run_cli, write_config
from tests.fakegateway import FakeGateway, FakeProxy

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def assert_one_line_usage_error(result, message: str) -> None:
    """Exit 2 with the tool's own error and hint: no Click usage block."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: {message}", result.stderr
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), result.stderr
    assert "Usage:" not in result.stderr and result.stdout == ""


# ---------------------------------------------------------------- imagegen "a cat" runs generate
def test_a_prompt_without_a_command_runs_generate(gateway: FakeGateway) -> None:
    env = gateway_env(gateway)
    explicit = run_cli("generate", "a cat", "-m", "apimart:z-image-turbo", "--dry-run", "--json", env=env)
    assert explicit.returncode == 0, explicit.stderr
    for args in (
        ["a cat", "-m", "apimart:z-image-turbo", "--dry-run", "--json"],
        ["-m", "apimart:z-image-turbo", "a cat", "--dry-run", "--json"],  # options first, as with llm
        ["--model=apimart:z-image-turbo", "--dry-run", "--json", "a cat"],
    ):
        result = run_cli(*args, env=env)
        assert result.returncode == 0, (args, result.stderr)
        assert result.json() == explicit.json(), args
    assert gateway.requests == []


def test_the_default_command_really_generates(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    out = tmp_path / "cats"
    result = cli("a cat", "-m", "openai:gpt-image-1.5", "-n", "2", "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr
    paths = [Path(image["path"]) for image in result.json()["images"]]
    assert len(paths) == 2 and all(p.parent == out and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    assert gateway.calls("openai")[0].body["prompt"] == "a cat"


def test_commands_and_root_options_still_win() -> None:
    bare = run_cli()
    assert bare.returncode == 0 and "Usage: imagegen [OPTIONS] PROMPT|COMMAND" in bare.stdout  # the help
    helped = run_cli("--help")
    assert helped.returncode == 0 and "Commands:" in helped.stdout
    assert 'imagegen "a cat" is imagegen generate "a cat"' in " ".join(helped.stdout.split())
    assert re.fullmatch(r"imagegen \S+\n", run_cli("--version").stdout)
    assert run_cli("models", "--provider", "kkiai").lines[0].startswith("PROVIDER")
    assert run_cli("-h").returncode == 0
    assert run_cli("generate", "--help").stdout.startswith("Usage: imagegen generate")
    # A near miss of a command's name is that mistake, not a one-word prompt sent to a model.
    typo = run_cli("modles")
    assert typo.returncode == 2 and "No such command 'modles'. Did you mean 'models'?" in typo.stderr


def test_the_default_command_completes_like_generate() -> None:
    result = run_cli(
        env={"_IMAGEGEN_COMPLETE": "complete_bash", "COMP_WORDS": "imagegen 'a cat' -m apimart:z", "COMP_CWORD": "3"}
    )
    assert result.returncode == 0 and result.stdout.split() == ["apimart:z-image-turbo"]
    commands = run_cli(env={"_IMAGEGEN_COMPLETE": "complete_bash", "COMP_WORDS": "imagegen mo", "COMP_CWORD": "1"})
    assert commands.stdout.split() == ["models"]


def test_the_default_command_works_from_the_console_script(gateway: FakeGateway) -> None:
    result = run_cli("a cat", "-m", "kkiai:flux-kontext-pro", "--dry-run", env=gateway_env(gateway), process=True)
    assert result.returncode == 0, result.stderr
    assert result.lines[0] == f"POST {gateway.base_url('kkiai')}/images/generations"


def test_readme_documents_the_default_command() -> None:
    assert 'imagegen "a red fox in the snow"' in README and "runs `generate`" in README


# ---------------------------------------------------------------- help and README agree
def test_offload_help_and_readme_agree() -> None:
    help_text = " ".join(run_cli("generate", "--help").stdout.split())
    assert "--offload none|model|sequential" in help_text
    assert "| `--offload none\\|model\\|sequential` |" in README


@pytest.mark.parametrize("n", ["0", "101", "-3"])
def test_n_out_of_range_is_the_tools_own_one_line_error(n: str, gateway: FakeGateway) -> None:
    result = run_cli("generate", "x", "-m", "openai:gpt-image-1.5", "-n", n, env=gateway_env(gateway))
    assert_one_line_usage_error(result, f"-n {n} is out of range")
    assert "hint: ask for 1 to 100 images" in result.stderr
    assert gateway.requests == []


def test_n_range_in_help_and_readme() -> None:
    help_text = " ".join(run_cli("generate", "--help").stdout.split())
    assert "-n, --n N Number of images, 1-100 [default: 1]." in help_text and "x>=1" not in help_text
    assert "| `-n`, `--n` `N` | Number of images, 1-100 [default: 1]. |" in README  # the generated table: the help
    assert "- `-n`: 1–100." in README


def test_concurrency_out_of_range_is_the_tools_own_error() -> None:
    result = run_cli("generate", "--prompt-file", "-", "--concurrency", "0", input=b"a\n")
    assert_one_line_usage_error(result, "--concurrency 0 is out of range")


def test_keys_set_help_shows_no_hidden_argument() -> None:
    usage = run_cli("keys", "set", "--help").stdout.splitlines()[0]
    assert usage == "Usage: imagegen keys set [OPTIONS] {PROVIDER}"
    refused = run_cli("keys", "set", "openai", TEST_KEY)  # still refused, and never echoed (the leak check)
    assert_one_line_usage_error(refused, "keys are never taken from the command line")
    unknown = run_cli("keys", "set", "openai", "--frobnicate")
    assert_one_line_usage_error(unknown, "no such option: --frobnicate")
    stored = run_cli("keys", "set", "openai", input=f"{TEST_KEY}\n".encode())
    assert stored.returncode == 0 and "saved the openai key" in stored.stderr


# ---------------------------------------------------------------- models show local:*
def test_models_show_local_explains_how_the_flags_map() -> None:
    result = run_cli("models", "show", "local:tiny")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "How the flags map:" in text
    flags = dict(re.findall(r"^  (-\S+)\s+(.+)$", text.split("How the flags map:")[1], re.MULTILINE))
    assert flags["--steps"] == "num_inference_steps (default 4)"
    assert flags["--guidance"] == "guidance_scale (default 0)"
    assert flags["--size"] == "width and height, rounded to multiples of 8 (default 64x64)"
    assert flags["--quality"].startswith("scales the default 4 steps: low → 2, high → 6")
    assert flags["--style"] == flags["--user"] == "dropped (with a note)"
    assert "--offload" in flags and "--device" in flags and "--seed" in flags
    doc = run_cli("models", "show", "local:z-image-turbo", "--json").json()
    assert doc["flags"]["--negative-prompt"] == "dropped (with a note)"  # z-image-turbo takes none
    assert doc["flags"]["--steps"] == "num_inference_steps (default 8)"


def test_tiny_is_not_reported_as_downloaded_before_it_is_built() -> None:
    from imagegen_cli.local.tiny import tiny_dir

    def tiny() -> dict:
        return run_cli("models", "show", "local:tiny", "--json").json()

    before = tiny()
    assert before["downloaded"] is False and before["state"] == "built on first use"
    assert before["cache_dir"] == str(tiny_dir())
    assert "built on first use" in run_cli("models", "show", "local:tiny").stdout
    row = next(line for line in run_cli("models", "--local", env={"COLUMNS": ""}).lines if " tiny " in line)
    assert "built on first use" in row and "downloaded" not in row
    # What the first run leaves behind (a save_pretrained directory) makes it built.
    tiny_dir().mkdir(parents=True)
    (tiny_dir() / "model_index.json").write_text("{}")
    after = tiny()
    assert after["downloaded"] is True and after["state"] == "built" and after["size_on_disk"] == 2


# ---------------------------------------------------------------- hints name only what the command takes
def test_records_hint_names_where_the_base_url_came_from() -> None:
    env = {
        "IMAGEGEN_TOKEN360_API_KEY": TEST_KEY,
        "IMAGEGEN_TOKEN360_BASE_URL": "http://127.0.0.1:9/v1",  # nothing listens on the discard port
        "IMAGEGEN_MAX_RETRIES": "0",
    }
    result = run_cli("tasks", "records", "list", env=env)
    assert result.returncode == 1, result.stderr
    assert "cannot reach 127.0.0.1:9" in result.stderr
    assert "--base-url" not in result.stderr  # tasks records list takes no --base-url
    assert "it is http://127.0.0.1:9/v1 (from IMAGEGEN_TOKEN360_BASE_URL)" in result.stderr
    live = run_cli("models", "list", "--live", "--provider", "token360", env=env)
    assert "--base-url" not in live.stderr
    flagged = run_cli(
        "generate", "x", "-m", "token360:seedream-4.5", "--base-url", "http://127.0.0.1:9/v1", "-o", "-", env=env
    )
    assert flagged.returncode == 1 and "it is http://127.0.0.1:9/v1 (from --base-url)" in flagged.stderr


def test_a_404_hint_on_the_default_base_url_says_how_to_change_it(gateway: FakeGateway) -> None:
    write_config(f'[providers.openai]\nbase_url = "{gateway.origin}/openai"\n')  # forgot the /v1
    result = run_cli(
        "generate", "x", "-m", "openai:gpt-image-1.5", "-o", "-", env={"IMAGEGEN_OPENAI_API_KEY": TEST_KEY}
    )
    assert result.returncode == 1
    assert f"it is {gateway.origin}/openai (from [providers.openai] base_url)" in result.stderr


# ---------------------------------------------------------------- tasks list --limit
def test_tasks_list_refuses_a_negative_limit_and_0_means_all(cli, gateway: FakeGateway) -> None:
    for i in range(3):
        assert cli("generate", f"cat {i}", "-m", "apimart:z-image-turbo", "--no-wait").returncode == 0
    assert_one_line_usage_error(run_cli("tasks", "list", "--limit", "-1"), "--limit -1 is negative")
    assert len(run_cli("tasks", "list", "--limit", "1").lines) == 1 + 1  # a header row, one job
    assert len(run_cli("tasks", "list", "--limit", "0").lines) == 1 + 3
    assert "(0: all)" in run_cli("tasks", "list", "--help").stdout


# ---------------------------------------------------------------- the README's set-up
def test_readme_says_how_to_run_the_installed_command() -> None:
    assert "source .venv/bin/activate" in README and "`.venv/bin/imagegen`" in README
    assert "sudo ifconfig lo0 alias 127.0.0.2 up" in README


def test_the_fake_cdn_falls_back_when_127_0_0_2_is_missing(tmp_path: Path) -> None:
    """macOS has no 127.0.0.2 by default: the image host then listens on 127.0.0.1, on a port of its own."""
    with FakeGateway(image_host="192.0.2.1") as gateway:  # TEST-NET-1: never a local address
        assert gateway.image_origin.startswith("http://127.0.0.1:") and gateway.image_origin != gateway.origin
        out = tmp_path / "out"
        result = run_cli("generate", "x", "-m", "modelmax:imagen-3", "-o", str(out), env=gateway_env(gateway))
        assert result.returncode == 0, result.stderr
        assert len(gateway.image_requests) == 1
        # Another port is another origin: the key still never reaches the CDN stand-in.
        assert "authorization" not in {k.lower() for k in gateway.image_requests[0].headers}
    with FakeProxy("192.0.2.1") as proxy:  # 127.0.0.3 is missing on macOS too
        assert proxy.url.startswith("http://127.0.0.1:")


# ---------------------------------------------------------------- issue 21.5: tests never write into the checkout


# ---------------------------------------------------------------- issue 21.6: every usage error has a hint


@pytest.mark.parametrize(
    "flags",
    [
        ["--size", "0x0"],
        ["--steps", "0"],
        ["--seed", "-5"],
        ["--prompt-file", "missing.txt"],
        ["-o", "/proc/imagegen-test/x.png"],
        ["--size", "99999x99999"],
        ["--size", "100000x100000"],
        ["--size", "1x100000"],
    ],
)
def test_every_usage_error_has_one_error_and_one_hint_line(cli, gateway: FakeGateway, flags: list[str]) -> None:
    prompt = [] if "--prompt-file" in flags else ["x"]
    # A folder is only checked by a real run: that one goes to the fake gateway (and must send nothing).
    run = ["-m", "openai:gpt-image-2"] if "-o" in flags else ["-m", "local:tiny", "--dry-run"]
    result = cli("generate", *prompt, *run, *flags, out_dir="-o" not in flags)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("note:")]
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), result.stderr
    assert "write it as WIDTHxHEIGHT" not in result.stderr  # a size written WxH is never told to be written so
    assert gateway.requests == []


def test_every_usage_error_raised_in_the_code_carries_a_hint() -> None:
    """A scan: each ``UsageError(...)`` gives ``hint=``; the few older ones are counted and may only go down,
    and the renderer gives any usage error without one a generic hint (so none is ever printed bare)."""
    import ast

    from tests.conftest import ROOT

    bare = []
    for path in sorted((ROOT / "imagegen_cli").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("UsageError", "SettingError"):
                if not any(k.arg == "hint" for k in node.keywords):
                    bare.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert len(bare) <= 29, "a new UsageError without hint=: " + ", ".join(bare)
    result = run_cli("generate", "x", "--prompt-file", "p.txt", "--dry-run")  # one of the older hintless raises
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: ")


# ---------------------------------------------------------------- issue 21.14: what a new user meets


def test_imagegen_alone_prints_the_help_on_stdout_and_exits_0() -> None:
    result = run_cli()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: imagegen") and "Commands:" in result.stdout
    assert result.stderr == ""


def test_tasks_list_has_a_header_and_says_when_the_journal_is_empty(cli) -> None:
    empty = run_cli("tasks", "list")
    assert empty.returncode == 0 and empty.stdout == "" and "no jobs yet" in empty.stderr
    job = cli("generate", "x", "-m", "openai:gpt-image-2", "--json").json()["job"]
    header, row = run_cli("tasks", "list").lines
    assert header.split() == ["JOB", "CREATED", "STATUS", "SAVED", "MODEL", "PROMPT"]
    assert row.startswith(job) and row.index("succeeded") == header.index("STATUS")


def test_models_show_prints_readable_fields_and_help_examples_name_current_models() -> None:
    shown = run_cli("models", "show", "openai:gpt-image-2")
    assert shown.returncode == 0 and "{'" not in shown.stdout and "False" not in shown.stdout
    assert "max side 3840" in shown.stdout
    assert run_cli("models", "show", "openai:gpt-image-2", "--json").json()["size_limits"]["max_side"] == 3840
    examples = re.findall(r"Example: imagegen models show (\S+)", run_cli("models", "show", "--help").stdout)
    assert examples
    for ref in examples:
        info = run_cli("models", "show", ref, "--json").json()
        assert not info.get("retired"), f"the help's example {ref} is a retired model"


def test_config_set_help_keeps_its_example_url_whole() -> None:
    helped = run_cli("config", "set", "--help").stdout
    assert "https://my-proxy.example/v1" in helped and "https://my-\n" not in helped


# ---------------------------------------------------------------- issue 21.3: the batch row on a terminal
def test_the_batch_row_has_a_total_the_lines_counts_and_per_line_bars(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    from imagegen_cli.cli.render import CliSink, Output
    from imagegen_cli.errors import GatewayError
    from imagegen_cli.result import JobResult
    from imagegen_cli.store.saved_image import SavedImage

    output = Output()
    output._console = Console(file=io.StringIO(), force_terminal=True, width=160)
    sink = CliSink(output, batch=True, live=True)
    lines = [JobResult("apimart", "z-image-turbo", 2, line=n) for n in (1, 2, 3)]
    sink.batch_planned(lines)
    assert sink.progress is not None
    [row] = sink.progress.tasks
    assert row.total == 6 and row.completed == 0  # every image of every line: an ETA can be computed
    assert row.description == "batch: 0/3 lines · 0 running · 0 failed · 0 skipped"
    lines[0].started = lines[1].started = True
    sink.start("line-1-call", "line 1: image 1", None)
    sink.start("line-2-call", "line 2: image 1", None)
    assert [t.description for t in sink.progress.tasks][1:] == ["line 1: image 1", "line 2: image 1"]
    for index in (1, 2):
        image = SavedImage(str(tmp_path / f"{index}.png"), index, 8, 8, "png")
        lines[0].images.append(image)
        sink.image_saved(lines[0], image)
    sink.job_finished(lines[0])
    lines[1].errors.append(GatewayError("apimart: HTTP 500"))
    sink.job_finished(lines[1])
    row = sink.progress.tasks[0]
    assert row.completed == 2 and row.total == 6
    assert row.description == "batch: 2/3 lines · 0 running · 1 failed · 0 skipped"
    lines[2].started = True
    lines[2].reused = {1, 2}
    lines[2].images = [SavedImage(str(tmp_path / "r.png"), i, 8, 8, "png") for i in (1, 2)]
    sink.job_finished(lines[2])
    assert sink.progress.tasks[0].description == "batch: 3/3 lines · 0 running · 1 failed · 1 skipped"
    sink.close()


def test_o_file_in_a_folder_that_does_not_exist_is_refused_and_o_dir_is_created(cli, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "parent"
    result = cli("generate", "x", "-m", "apimart:z-image-turbo", "-o", str(missing / "x.png"))
    assert result.returncode == 2 and "does not exist" in result.stderr and "hint: create it first" in result.stderr
    assert not (tmp_path / "nonexistent").exists()
    made = cli("generate", "x", "-m", "apimart:z-image-turbo", "-o", f"{missing}/", "--json")
    assert made.returncode == 0, made.stderr
    assert Path(made.json()["images"][0]["path"]).parent == missing


def test_every_help_example_names_a_model_that_exists_and_is_not_retired() -> None:
    import re

    import typer.main

    from imagegen_cli.cli.app import app
    from imagegen_cli.local.catalog import LOCAL_MODELS
    from imagegen_cli.providers.profiles import BUILTIN_PROFILES

    def commands(group: Any, path: str = "") -> list[tuple[str, Any]]:
        found = [(path, group)]
        for name, sub in getattr(group, "commands", {}).items():
            found += commands(sub, f"{path} {name}".strip())
        return found

    named: list[tuple[str, str]] = []
    for path, command in commands(typer.main.get_command(app)):
        text = f"{command.help or ''}\n{command.epilog or ''}"
        named += [(path, ref) for ref in re.findall(r"(?:-m |models show |--model )([a-z0-9]+:[\w.\-]+)", text)]
    assert len(named) >= 5, named
    for path, ref in named:
        provider, model = ref.split(":", 1)
        if provider == "local":
            assert model in LOCAL_MODELS or model in ("auto", "tiny"), (path, ref)
            continue
        caps = BUILTIN_PROFILES[provider].models.get(model)
        assert caps is not None and caps.retired is None, (path, ref)
