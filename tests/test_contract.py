"""The command-line contract of DESIGN.md: stdout/stderr, JSON, exit codes, files, settings."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import ExifTags, Image

from tests.conftest import CAPTURED, IMAGEGEN, TEST_KEY, gateway_env, heavy_imports, run_cli, write_config
from tests.fakegateway import FakeGateway


# ---------------------------------------------------------------- exit code 2: nothing is sent
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "openai:dall-e-3", "--size", "800x600"], "accepted sizes: 1024x1024, 1792x1024, 1024x1792"),
        (["-m", "apimart:z-image-turbo", "--ratio", "5:4"], "accepted ratios: 1:1 4:3 3:4 16:9 9:16 3:2 2:3"),
        (
            ["-m", "apimart:z-image-turbo", "--resolution", "4K", "--ratio", "1:1"],
            "resolution 4K is not accepted",
        ),
        (["-m", "openai:gpt-image-2", "--size", "1000x1000"], "multiples of 16"),
        (["-m", "openai:dall-e-2", "--quality", "hd"], "quality hd is not accepted"),
        (["-m", "openai:dall-e-2", "--size", "big"], "invalid size 'big'"),
        (["-m", "openai:dall-e-2", "--quality", "ultra"], "invalid --quality 'ultra'"),
        (["-m", "openai:dall-e-2", "-n", "101"], "-n 101 is out of range"),
        (["-m", "nosuch:model"], "unknown provider 'nosuch'"),
        (["--provider", "nosuch"], "unknown provider 'nosuch'"),
        (["-m", "z-image-turbo"], "offered by several providers: apimart, local"),
        (["-m", "openai:dall-e-2", "--size", "512x512", "--ratio", "1:1"], "--size and --ratio both given"),
        (["-m", "openai:dall-e-2", "--param", "novalue"], "invalid --param 'novalue'"),
        (["-m", "openai:dall-e-2", "--name", "{nope}.png"], "unknown field {nope}"),
        (["-m", "openai:dall-e-2", "-n", "2", "-o", "-"], "writes one image to stdout"),
        (["-m", "kkiai:flux-kontext-pro", "--style", "vivid", "--strict"], "--style dropped"),
        (["-m", "openai:gpt-image-1", "--ratio", "16:9", "--strict"], "nearest supported"),
    ],
)
def test_usage_errors_exit_2_and_send_nothing(cli, gateway: FakeGateway, args: list[str], message: str) -> None:
    result = cli("generate", "a prompt", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stdout == ""
    assert gateway.requests == []
    assert "Traceback" not in result.stderr


def test_prompt_too_long(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "x" * 801, "-m", "apimart:z-image-turbo")
    assert result.returncode == 2
    assert "801 characters; apimart:z-image-turbo accepts at most 800" in result.stderr


def test_bad_flag_is_exit_2(cli) -> None:
    assert cli("generate", "x", "--no-such-flag").returncode == 2


# ---------------------------------------------------------------- exit code 4: keys
def test_missing_key_exit_4(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "x", "-m", "openai:dall-e-2", key=False)
    assert result.returncode == 4
    assert "no API key for openai" in result.stderr
    assert "IMAGEGEN_OPENAI_API_KEY" in result.stderr and "imagegen keys set openai" in result.stderr
    assert gateway.requests == []


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_key_exit_4(cli, gateway: FakeGateway, status: int) -> None:
    gateway.fault(
        "generate",
        "status",
        status=status,
        body=b'{"error": {"message": "bad key", "type": "invalid_api_key", "code": "401"}}',
    )
    result = cli("generate", "x", "-m", "token360:seedream-4.5", "--json")
    assert result.returncode == 4
    assert result.json()["errors"][0]["code"] == "auth"
    assert "imagegen keys set token360" in result.stderr
    assert len(gateway.calls("token360")) == 1


def test_key_refused_over_plain_http_to_remote_host(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "x", "-m", "openai:dall-e-2", "--base-url", "http://example.com/v1")
    assert result.returncode == 4
    assert "refusing to send the openai API key over plain http to example.com" in result.stderr


def test_fallback_env_var_and_keys_file(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    env = {"IMAGEGEN_OPENAI_API_KEY": "", "OPENAI_API_KEY": TEST_KEY}
    assert cli("generate", "x", "-m", "openai:dall-e-2", env=env).returncode == 0
    stored = run_cli("keys", "set", "modelmax", input=(TEST_KEY + "\n").encode())
    assert stored.returncode == 0, stored.stderr
    keys_file = Path(os.environ["XDG_CONFIG_HOME"]) / "imagegen" / "keys.json"
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    assert cli("generate", "x", "-m", "modelmax:imagen-3", key=False).returncode == 0
    assert gateway.calls("modelmax")[0].headers["Authorization"] == f"Bearer {TEST_KEY}"
    listing = run_cli("keys", "list", "--json").json()
    assert {"provider": "modelmax", "source": "file", "where": str(keys_file)} in listing
    assert run_cli("keys", "rm", "modelmax").returncode == 0
    assert cli("generate", "x", "-m", "modelmax:imagen-3", key=False).returncode == 4


def test_world_readable_keys_file_is_refused(cli, gateway: FakeGateway) -> None:
    run_cli("keys", "set", "openai", input=TEST_KEY.encode())
    keys_file = Path(os.environ["XDG_CONFIG_HOME"]) / "imagegen" / "keys.json"
    keys_file.chmod(0o644)
    result = cli("generate", "x", "-m", "openai:dall-e-2", key=False)
    assert result.returncode == 4
    assert "readable by other users" in result.stderr and "chmod 600" in result.stderr


def test_keys_set_never_takes_the_key_from_argv() -> None:
    result = run_cli("keys", "set", "openai", TEST_KEY)
    assert result.returncode == 2
    assert "never taken from the command line" in result.stderr


# ---------------------------------------------------------------- exit code 130
def test_ctrl_c_exits_130_and_keeps_finished_images(gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.task_outcome = "completed"
    gateway.fault("generate", "never")
    out = tmp_path / "out"
    env = {**os.environ, **gateway_env(gateway)}
    proc = subprocess.Popen(
        [str(IMAGEGEN), "generate", "x", "-m", "apimart:z-image-turbo", "-n", "2", "-o", str(out), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while not list(out.glob("*.png")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=20)
    CAPTURED.extend([stdout, stderr])
    assert proc.returncode == 130, stderr
    doc = json.loads(stdout)
    assert len(doc["images"]) == 1 and Path(doc["images"][0]["path"]).exists()
    assert [t["status"] for t in doc["tasks"]].count("pending") == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert f"resume with: imagegen tasks wait {doc['job']}" in stderr.decode()
    (job,) = run_cli("tasks", "list", "--json").json()
    assert job["status"] == "running" and len(job["paths"]) == 1
    assert [t["status"] for t in job["tasks"]].count("pending") == 1


# ---------------------------------------------------------------- stdout and stdin
def test_stdout_carries_only_paths_and_stdin_prompt(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "-", "-m", "openai:dall-e-2", "-n", "2", input=b"a fox from stdin\n")
    assert result.returncode == 0
    assert len(result.lines) == 2 and all(Path(p).is_file() for p in result.lines)
    assert gateway.calls("openai")[0].body["prompt"] == "a fox from stdin"


def test_out_dash_writes_image_bytes(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "x", "-m", "openai:dall-e-2", "--size", "256x256", "-o", "-")
    assert result.returncode == 0, result.stderr
    with Image.open(io.BytesIO(result.stdout_bytes)) as img:
        assert img.size == (256, 256) and img.format == "PNG"


def test_quiet_prints_no_notes(cli, gateway: FakeGateway) -> None:
    loud = cli("generate", "x", "-m", "kkiai:flux-kontext-pro", "--style", "vivid")
    assert "note: --style dropped" in loud.stderr
    quiet = cli("generate", "x", "-m", "kkiai:flux-kontext-pro", "--style", "vivid", "-q")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_json_document_shape(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "x", "-m", "openai:dall-e-2", "-n", "2", "--json")
    doc = result.json()
    assert set(doc) >= {"status", "provider", "model", "images", "tasks", "notes", "errors"}
    assert doc["status"] == "succeeded" and doc["provider"] == "openai" and doc["model"] == "dall-e-2"
    for image in doc["images"]:
        assert set(image) >= {"path", "index", "width", "height"}


def test_dry_run_redacts_key_and_sends_nothing(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "x", "-m", "mka1:meetkai:z-image-turbo", "--on-behalf-of", "u1", "--dry-run")
    assert result.returncode == 0
    assert gateway.requests == []
    assert "Authorization: Bearer ***" in result.stdout
    assert "X-On-Behalf-Of: u1" in result.stdout
    assert f"POST {gateway.base_url('mka1')}/images/generations" in result.stdout
    doc = cli("generate", "x", "-m", "openai:dall-e-3", "-n", "2", "--dry-run", "--json").json()
    assert len(doc["calls"]) == 2 and doc["calls"][0]["headers"]["Authorization"] == "Bearer ***"


def test_no_wait_prints_task_ids(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "x", "-m", "apimart:z-image-turbo", "-n", "2", "--no-wait", "--json")
    assert result.returncode == 0
    doc = result.json()
    assert doc["status"] == "submitted" and doc["images"] == []
    assert [t["status"] for t in doc["tasks"]] == ["pending", "pending"]
    assert not [r for r in gateway.requests if "/tasks/" in r.path]
    plain = cli("generate", "x", "-m", "apimart:z-image-turbo", "--no-wait")
    assert plain.returncode == 0 and plain.lines == [run_cli("tasks", "list", "--json").json()[0]["id"]]


# ---------------------------------------------------------------- files: names, formats, metadata, overwrite
def test_default_names_are_readable_and_unique(cli, gateway: FakeGateway) -> None:
    first = cli("generate", "A Red Fox!", "-m", "token360:seedream-4.5", "--seed", "7")
    second = cli("generate", "A Red Fox!", "-m", "token360:seedream-4.5", "--seed", "7")
    names = [Path(p).name for p in first.lines + second.lines]
    assert len(set(names)) == 2
    assert all("-a-red-fox-7-1" in name for name in names)


def test_name_template_and_file_output(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    result = cli("generate", "cat", "-m", "openai:dall-e-2", "-n", "2", "--name", "{provider}-{slug}-{index}")
    assert sorted(Path(p).name for p in result.lines) == ["openai-cat-1.png", "openai-cat-2.png"]
    target = tmp_path / "named" / "hero.png"
    target.parent.mkdir()  # -o FILE writes into a folder that exists (tests/test_cli_surface.py)
    result = cli("generate", "cat", "-m", "openai:dall-e-2", "-o", str(target))
    assert result.lines == [str(target)]
    again = cli("generate", "cat", "-m", "openai:dall-e-2", "-o", str(target))
    assert again.returncode == 2 and "already exists" in again.stderr
    before = target.read_bytes()
    replaced = cli("generate", "a dog", "-m", "openai:dall-e-2", "-o", str(target), "--overwrite")
    assert replaced.returncode == 0 and replaced.lines == [str(target)]
    assert before != target.read_bytes()
    with Image.open(target) as img:
        assert img.text["parameters"].startswith("a dog")  # the second run's image replaced the first


def test_png_metadata_a1111_and_json(cli, gateway: FakeGateway) -> None:
    result = cli(
        "generate",
        "a koi pond",
        "-m",
        "token360:seedream-4.5",
        "--seed",
        "5",
        "--size",
        "640x640",
        "--negative-prompt",
        "blur",
    )
    with Image.open(result.lines[0]) as img:
        parameters = img.text["parameters"]
        record = json.loads(img.text["imagegen"])
    assert parameters.startswith("a koi pond\n")
    assert "Seed: 5" in parameters and "Size: 640x640" in parameters and "Model: seedream-4.5" in parameters
    assert record["prompt"] == "a koi pond" and record["seed"] == 5 and record["provider"] == "token360"
    bare = cli("generate", "a koi pond", "-m", "token360:seedream-4.5", "--no-metadata")
    with Image.open(bare.lines[0]) as img:
        assert "parameters" not in img.text


@pytest.mark.parametrize(("fmt", "pil"), [("jpeg", "JPEG"), ("webp", "WEBP")])
def test_format_conversion_with_exif_and_xmp(cli, gateway: FakeGateway, fmt: str, pil: str) -> None:
    result = cli("generate", "a koi", "-m", "openai:dall-e-2", "--format", fmt)
    assert result.returncode == 0, result.stderr
    path = Path(result.lines[0])
    assert path.suffix == (".jpg" if fmt == "jpeg" else ".webp")
    with Image.open(path) as img:
        assert img.format == pil
        exif = img.getexif()
        assert json.loads(exif[ExifTags.Base.ImageDescription])["prompt"] == "a koi"
        comment = exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment]
        assert comment.startswith(b"UNICODE\0") and "a koi" in comment[8:].decode("utf-16-be")
        assert b"imagegen:parameters" in img.info["xmp"]


def test_saved_files_follow_the_umask(cli, gateway: FakeGateway) -> None:
    for args in (["-m", "openai:dall-e-2"], ["-m", "kkiai:flux-kontext-pro", "--format", "jpeg"]):
        result = cli("generate", "x", *args)
        mode = stat.S_IMODE(Path(result.lines[0]).stat().st_mode)
        umask = os.umask(0o022)
        os.umask(umask)
        assert mode == 0o666 & ~umask


def test_existing_files_are_never_replaced(cli, gateway: FakeGateway) -> None:
    cli.out.mkdir(parents=True)
    result = cli("generate", "cat", "-m", "openai:dall-e-2", "--name", "fixed")
    first = Path(result.lines[0])
    first.write_bytes(b"precious")
    second = cli("generate", "cat", "-m", "openai:dall-e-2", "--name", "fixed")
    assert second.returncode == 0
    assert Path(second.lines[0]).name == "fixed-2.png"
    assert first.read_bytes() == b"precious"


def test_output_dir_that_is_a_file(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    result = cli("generate", "x", "-m", "openai:dall-e-2", "-o", str(blocker / "sub"))
    assert result.returncode == 2 and gateway.requests == []


# ---------------------------------------------------------------- settings and custom providers
def test_user_defined_openai_and_tasks_providers(gateway: FakeGateway, tmp_path: Path) -> None:
    write_config(f"""
default_model = "custom:my-model"
output_dir = "{tmp_path / "cfg-out"}"

[providers.custom]
base_url = "{gateway.base_url("custom")}"
dialect = "openai"
api_key_env = "CUSTOM_GW_TOKEN"

[providers.custom.models.my-model]
size_mode = "pixels"
sizes = ["512x512", "768x768"]
n_max = 2

[providers.customtasks]
base_url = "{gateway.base_url("customtasks")}"
dialect = "tasks"
api_key_env = "TASKS_GW_TOKEN"
capabilities = {{ size_mode = "ratio_size", ratios = ["1:1", "16:9"], tiers = ["1K", "2K"], send_n = false }}
""")
    env = {"CUSTOM_GW_TOKEN": TEST_KEY, "TASKS_GW_TOKEN": TEST_KEY}
    result = run_cli("generate", "x", "-n", "3", "--ratio", "1:1", "--json", env=env)
    assert result.returncode == 0, result.stderr
    calls = gateway.calls("custom")
    assert sorted(c.body["n"] for c in calls) == [1, 2] and calls[0].body["size"] == "768x768"
    assert all(Path(i["path"]).parent == tmp_path / "cfg-out" for i in result.json()["images"])
    result = run_cli("generate", "x", "-m", "customtasks:anything", "--ratio", "16:9", env=env)
    assert result.returncode == 0, result.stderr
    assert gateway.calls("customtasks")[0].body["size"] == "16:9"
    bad = run_cli("generate", "x", "-m", "custom:my-model", "--size", "1024x1024", env=env)
    assert bad.returncode == 2 and "accepted sizes: 512x512, 768x768" in bad.stderr


def test_config_commands(tmp_path: Path) -> None:
    assert run_cli("config", "path").stdout.strip().endswith("imagegen/config.toml")
    assert run_cli("config", "set", "default_model", "apimart:z-image-turbo").returncode == 0
    assert run_cli("config", "set", "timeout", "60").returncode == 0
    assert run_cli("config", "set", "providers.openai.base_url", "https://proxy.example/v1").returncode == 0
    assert run_cli("config", "get", "timeout").stdout.strip() == "60"
    assert run_cli("config", "get", "providers.openai.base_url").stdout.strip() == "https://proxy.example/v1"
    shown = run_cli("config", "show", "--json").json()
    assert shown["default_model"] == "apimart:z-image-turbo"
    assert run_cli("config", "set", "providers.openai.api_key", "x").returncode == 2
    assert run_cli("config", "set", "bogus", "1").returncode == 2
    assert run_cli("config", "set", "providers.x.dialect", "soap").returncode == 4
    assert run_cli("config", "unset", "timeout").returncode == 0
    assert run_cli("config", "get", "timeout").returncode == 2


def test_config_show_redacts_secrets() -> None:
    write_config('[providers.openai]\nbase_url = "https://x/v1"\nheaders = { "X-Api-Key" = "hunter2-secret" }\n')
    shown = run_cli("config", "show")
    assert shown.returncode == 0, shown.stderr
    assert "hunter2-secret" not in shown.stdout and 'X-Api-Key = "***"' in shown.stdout


@pytest.mark.parametrize("header", ["X-Signature", "X-Auth", "X-Key-Id", "X-Api-Key", "Cookie"])
def test_config_show_and_dry_run_redact_the_same_headers(header: str) -> None:
    write_config(f'[providers.openai]\nbase_url = "https://x/v1"\nheaders = {{ "{header}" = "hunter2-secret" }}\n')
    shown = run_cli("config", "show")
    assert shown.returncode == 0, shown.stderr
    assert "hunter2-secret" not in shown.stdout and f'{header} = "***"' in shown.stdout
    planned = run_cli("generate", "x", "-m", "openai:dall-e-3", "--dry-run", "--json")
    assert planned.returncode == 0, planned.stderr
    assert "hunter2-secret" not in planned.stdout
    assert planned.json()["calls"][0]["headers"][header] == "***"


def test_broken_config_is_exit_4() -> None:
    write_config("default_model = [unclosed")
    result = run_cli("generate", "x", "--dry-run")
    assert result.returncode == 4 and "not valid TOML" in result.stderr


def test_imagegen_config_env_var(tmp_path: Path, gateway: FakeGateway) -> None:
    other = tmp_path / "elsewhere.toml"
    other.write_text('default_model = "openai:gpt-image-1.5"\n')
    result = run_cli("generate", "x", "--dry-run", "--json", env={"IMAGEGEN_CONFIG": str(other)})
    assert result.json()["model"] == "gpt-image-1.5"


def test_bare_model_id_finds_its_provider(gateway: FakeGateway) -> None:
    assert run_cli("generate", "x", "-m", "gpt-image-2.5-flare", "--dry-run", "--json").json()["provider"] == "openai"


def test_model_precedence_env_over_config(gateway: FakeGateway) -> None:
    write_config('default_model = "openai:dall-e-2"\n')
    result = run_cli("generate", "x", "--dry-run", "--json", env={"IMAGEGEN_MODEL": "kkiai:grok-3-image"})
    assert result.json()["provider"] == "kkiai"


def test_python_dash_m_works() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "imagegen_cli", "--version"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and proc.stdout.startswith("imagegen ")


# ---------------------------------------------------------------- start-up stays light
def test_help_and_dry_run_import_no_heavy_modules() -> None:
    heavy, _ = heavy_imports(
        ["--help"],
        ["generate", "--help"],
        ["generate", "x", "-m", "apimart:z-image-turbo", "--dry-run"],
        ["keys", "list"],
        ["config", "show"],
    )
    assert heavy == []


def test_a_remote_generate_skips_httpx_own_command_line(
    gateway: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # httpx imports click, pygments and rich.syntax for its own CLI when they are installed: ~50 ms of nothing.
    for name, value in gateway_env(gateway).items():
        monkeypatch.setenv(name, value)  # the probe's interpreter inherits them
    heavy, (out,) = heavy_imports(
        ["generate", "x", "-m", "openai:dall-e-2", "-o", str(tmp_path)], modules=("httpx", "click", "pygments")
    )
    assert heavy == ["httpx"] and out.strip().endswith(".png")


_EXIT_PROBE = """
import atexit, sys, tempfile, threading, time
from pathlib import Path
from imagegen_cli.cli.app import console_main
out = Path(sys.argv[1])
kept = tempfile.TemporaryDirectory(dir=out)  # removed by its finalizer, an atexit handler
(out / "folder").write_text(kept.name)
atexit.register(lambda: (out / "atexit").write_text("ran"))
if sys.argv[2] == "thread":  # work still going on in another thread: Python's own exit waits for it
    threading.Thread(target=lambda: (time.sleep(0.3), (out / "thread").write_text("done"))).start()
sys.stdout.write("buffered, not yet flushed")
sys.argv = ["imagegen", *sys.argv[3:]]
console_main()
"""


@pytest.mark.parametrize("mode", ["alone", "thread"])
def test_the_quick_exit_still_flushes_cleans_up_and_waits(tmp_path: Path, mode: str) -> None:
    # The imagegen command skips Python's tear-down of modules (~40 ms); what an exit must do still happens.
    for args, code in ((["--version"], 0), (["generate", "x", "--no-such-flag"], 2)):
        proc = subprocess.run([sys.executable, "-c", _EXIT_PROBE, str(tmp_path), mode, *args],
                              capture_output=True, text=True, check=False)  # fmt: skip
        assert proc.returncode == code, proc.stderr
        assert proc.stdout.startswith("buffered, not yet flushed")
        assert (tmp_path / "atexit").read_text() == "ran"
        assert not Path((tmp_path / "folder").read_text()).exists()
        assert (tmp_path / "thread").exists() == (mode == "thread")
        (tmp_path / "atexit").unlink()


def test_common_commands_skip_importlib_metadata() -> None:
    # importlib.metadata drags in email, zipfile and csv (a fifth of `imagegen --help`'s start-up); only
    # doctor needs it, for package versions.
    heavy, _ = heavy_imports(
        ["--help"],
        ["models"],
        ["tasks", "list"],
        ["generate", "x", "-m", "apimart:z-image-turbo", "--dry-run"],
        modules=("importlib.metadata", "email", "zipfile"),
    )
    assert heavy == []


def all_command_paths() -> list[list[str]]:
    """Every command and group of the app, walked from Typer's own command tree (so it cannot drift)."""
    import typer.main

    from imagegen_cli.cli.app import app

    paths: list[list[str]] = []

    def walk(command, prefix: list[str]) -> None:
        paths.append(prefix)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, [*prefix, name])

    walk(typer.main.get_command(app), [])
    return paths


def test_every_command_help_shows_an_example() -> None:
    paths = all_command_paths()
    assert ["tasks", "records", "get"] in paths and ["keys", "set"] in paths
    for path in paths:
        result = run_cli(*path, "--help")
        assert result.returncode == 0, path
        assert "Example" in result.stdout, path


def test_debug_traceback_is_redacted(cli, gateway: FakeGateway) -> None:
    gateway.fault(
        "generate", "status", status=400, body=('{"error": {"message": "bad key ' + TEST_KEY + '"}}').encode()
    )
    result = cli("generate", "x", "-m", "openai:dall-e-2", env={"IMAGEGEN_DEBUG": "1"})
    assert result.returncode == 1
    assert "bad key ***" in result.stderr
