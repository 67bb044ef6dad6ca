"""Hostile input: prompts, templates and gateway text that try to escape the output dir or the terminal."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import gateway_env, run_cli
from tests.fakegateway import TEST_KEY, FakeGateway

ESCAPES = ("\x1b", "\x07", "\x00", "\u202e", "\u2066")
HOSTILE_PROMPTS = {
    "newlines": "a fox\nin the\r\nsnow",
    "ansi": "\x1b[2J\x1b[31ma red fox\x1b[0m\x07",
    "rtl": "a fox \u202egpj.exe\u202c and \u2066more\u2069",
    "separators": "../../etc/passwd/..\\windows\\system32",
    "dots": "...",
    "huge": "fox " * 25_000,  # 100k characters
    "unicode only": "狐狸 在雪中 🦊",
}


@pytest.mark.parametrize("name", list(HOSTILE_PROMPTS))
def test_hostile_prompts_make_safe_names(name: str, gateway: FakeGateway, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prompt = HOSTILE_PROMPTS[name]
    result = run_cli(
        "generate",
        "-",
        "-m",
        "modelmax:imagen-3",
        "--size",
        "64x64",
        "-o",
        str(out),
        "--json",
        input=prompt.encode(),
        env=gateway_env(gateway),
    )
    assert result.returncode == 0, result.stderr
    (image,) = result.json()["images"]
    path = Path(image["path"])
    assert path.parent == out.resolve()
    assert len(path.name) <= 180 and path.name.endswith(".png")
    assert not any(ch in path.name for ch in ("/", "\\", *ESCAPES)) and not path.name.startswith(".")
    with Image.open(path) as img:
        parameters = img.text["parameters"]
        record = json.loads(img.text["imagegen"])
    assert "\x00" not in parameters and "\x1b" not in parameters
    assert record["prompt"] == prompt.strip("\r\n")  # the JSON record keeps the exact prompt
    assert not any(ch in result.stderr for ch in ESCAPES)


def test_nul_in_a_prompt_file(gateway: FakeGateway, tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_bytes(b"a fox\x00with a nul\n" + json.dumps({"prompt": "b", "name": "../x\x00y"}).encode() + b"\n")
    result = run_cli(
        "generate",
        "--prompt-file",
        str(prompts),
        "-m",
        "modelmax:imagen-3",
        "--size",
        "64x64",
        "-o",
        str(tmp_path / "out"),
        env=gateway_env(gateway),
    )
    assert result.returncode == 0, result.stderr
    assert len(result.lines) == 2
    for path in result.lines:
        assert "\x00" not in path and Path(path).parent == (tmp_path / "out").resolve()


@pytest.mark.parametrize(
    "template", ["../../{slug}", "/etc/{slug}", "{slug}/../../x", "..", "\x1b[31m{slug}", "{slug}\u202e"]
)
def test_name_templates_cannot_escape(template: str, gateway: FakeGateway, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "out"
    result = run_cli(
        "generate",
        "fox",
        "-m",
        "openai:dall-e-2",
        "--size",
        "256x256",
        "-o",
        str(out),
        "--name",
        template,
        env=gateway_env(gateway),
    )
    assert result.returncode == 0, result.stderr
    (path,) = result.lines
    assert Path(path).parent == out.resolve()
    assert not any(ch in Path(path).name for ch in ESCAPES)
    assert sorted(p.name for p in tmp_path.rglob("*.png")) == [Path(path).name]


def test_gateway_text_is_stripped_of_terminal_escapes(gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.fault("generate", "evil_text")
    result = run_cli(
        "generate",
        "fox",
        "-m",
        "modelmax:imagen-3",
        "--size",
        "64x64",
        "-o",
        str(tmp_path / "o"),
        "--json",
        env=gateway_env(gateway),
    )
    assert result.returncode == 0
    revised = result.json()["images"][0]["revised_prompt"]
    assert not any(ch in revised for ch in ESCAPES) and "red" in revised and len(revised) <= 2000
    evil_error = json.dumps({"error": {"message": "\x1b[2J\x1b[31mboom\x1b[0m\x07\nsecond line " + TEST_KEY}})
    gateway.fault("generate", "status", status=400, body=evil_error.encode())
    failed = run_cli("generate", "fox", "-m", "modelmax:imagen-3", "-o", str(tmp_path / "o"), env=gateway_env(gateway))
    assert failed.returncode == 1
    assert not any(ch in failed.stderr for ch in ESCAPES)
    (line,) = [x for x in failed.stderr.splitlines() if x.startswith("error:")]
    assert "boom second line ***" in line  # one line, escapes gone, the echoed key redacted


def test_keys_in_url_query_strings_are_redacted(gateway: FakeGateway, tmp_path: Path) -> None:
    secret = "qs-SECRET-value-123456"
    result = run_cli(
        "generate",
        "x",
        "-m",
        "openai:dall-e-2",
        "--base-url",
        f"http://127.0.0.1:9/v1?api_key={secret}",
        "-o",
        str(tmp_path),
        env={**gateway_env(gateway), "IMAGEGEN_DEBUG": "1"},
    )
    assert result.returncode == 1
    assert secret not in result.stderr and secret not in result.stdout
    journal = Path(os.environ["XDG_DATA_HOME"]) / "imagegen" / "journal.sqlite3"
    assert secret.encode() not in journal.read_bytes()


def test_internal_error_traceback_is_redacted(gateway: FakeGateway, tmp_path: Path) -> None:
    # A bug inside the process (simulated through a sitecustomize hook) prints a traceback only with
    # IMAGEGEN_DEBUG=1, and even then without the key.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import imagegen_cli.providers.planning as p\n"
        "def boom(request, provider, *a, **k):\n"
        "    raise RuntimeError('bug while holding ' + str(provider.key))\n"
        "p.build_plan = boom\n"
    )
    env = {**gateway_env(gateway), "PYTHONPATH": str(hook)}
    quiet = run_cli("generate", "x", "-m", "openai:dall-e-2", env=env)
    assert quiet.returncode == 1 and "internal error: RuntimeError" in quiet.stderr and "Traceback" not in quiet.stderr
    loud = run_cli("generate", "x", "-m", "openai:dall-e-2", env={**env, "IMAGEGEN_DEBUG": "1"})
    assert "Traceback" in loud.stderr and "bug while holding ***" in loud.stderr


BIG_SEEDS = [str(2**64), str(2**63), "1" + "0" * 400]


@pytest.mark.parametrize("seed", BIG_SEEDS)
@pytest.mark.parametrize("model", ["token360:seedream-4.5", "apimart:z-image-turbo", "local:tiny"])
def test_a_seed_beyond_64_bits_is_refused_before_anything_is_sent(
    cli, gateway: FakeGateway, model: str, seed: str
) -> None:
    for extra in ((), ("--dry-run",)):
        result = cli("generate", "x", "-m", model, "--seed", seed, *extra)
        assert result.returncode == 2, result.stderr
        error, hint = result.stderr.strip().splitlines()
        assert error.startswith("error: --seed") and "out of range" in error
        assert hint.startswith("hint: give a seed from 0 to")
    assert gateway.requests == []
    assert not cli.out.exists()


def test_the_last_image_seed_must_fit_too(cli, gateway: FakeGateway) -> None:
    """Image i gets seed+i: the largest seed that fits depends on -n."""
    top = 2**63 - 1
    assert cli("generate", "x", "-m", "apimart:z-image-turbo", "--seed", str(top), "-n", "2").returncode == 2
    ok = cli("generate", "x", "-m", "token360:seedream-4.5", "--seed", str(top - 1), "-n", "2", "--json")
    assert ok.returncode == 0, ok.stderr
    assert sorted(image["seed"] for image in ok.json()["images"]) == [top - 1, top]
    listed = run_cli("tasks", "list", "--json", env=gateway_env(gateway))
    assert listed.returncode == 0 and "succeeded" in listed.stdout


def test_a_batch_line_seed_beyond_64_bits_names_its_line(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "a"}) + "\n" + json.dumps({"prompt": "b", "seed": 2**64}) + "\n")
    result = cli("generate", "--prompt-file", str(prompts), "-m", "apimart:z-image-turbo")
    assert result.returncode == 2
    assert "line 2" in result.stderr and "out of range" in result.stderr
    assert gateway.requests == []


def test_a_negative_seed_and_zero_steps_say_what_to_do(cli, gateway: FakeGateway) -> None:
    for flags in (("--seed", "-5"), ("--steps", "0")):
        result = cli("generate", "x", "-m", "apimart:z-image-turbo", *flags)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), lines


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("{index:x}-{seed:x}.{ext}", "invalid format {seed:x}"),
        ("{index:q}.{ext}", "invalid format {index:q}"),
        ("{index:>1000000000}.{ext}", "width in {index:>1000000000} is too large"),
        ("{slug:.999999}.{ext}", "precision in {slug:.999999} is too large"),
        ("{index:" + "9" * 5000 + "}.{ext}", "is too large"),
        ("{index:{n}}.{ext}", "invalid format {index:{n}}"),
        ("{index[0]}.{ext}", "unknown field {index[0]}"),
        ("{slug!z}.{ext}", "{slug!z}"),
    ],
)
def test_a_name_template_that_cannot_make_a_name_is_refused_before_the_call(
    cli, gateway: FakeGateway, tmp_path: Path, template: str, says: str
) -> None:
    for where in ("flag", "config", "line"):
        args = ["generate", "x", "-m", "apimart:z-image-turbo"]
        if where == "flag":
            args += ["--name", template]
        elif where == "config":
            (Path(os.environ["XDG_CONFIG_HOME"]) / "imagegen").mkdir(exist_ok=True)
            (Path(os.environ["XDG_CONFIG_HOME"]) / "imagegen" / "config.toml").write_text(
                f"name_template = {json.dumps(template)}\n"
            )
        else:
            prompts = tmp_path / "p.jsonl"
            prompts.write_text(json.dumps({"prompt": "x", "name": template}) + "\n")
            args = ["generate", "--prompt-file", str(prompts), "-m", "apimart:z-image-turbo"]
        result = cli(*args)
        assert result.returncode in (2, 4), (where, result.stderr)
        assert (says if where != "config" else "name_template") in result.stderr, (where, result.stderr)
        assert "hint:" in result.stderr
        assert len(result.stderr) < 600
        if where == "config":
            (Path(os.environ["XDG_CONFIG_HOME"]) / "imagegen" / "config.toml").unlink()
    assert gateway.requests == []


def test_numeric_fields_take_numeric_formats(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "x", "-m", "token360:seedream-4.5", "-n", "2", "--seed", "5",
                 "--name", "{index:03}-{seed:>04}.{ext}", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(Path(i["path"]).name for i in result.json()["images"]) == ["001-0005.png", "002-0006.png"]


@pytest.mark.parametrize("task_id", ["../admin/steal?x=1", "..", "a b#c", "t/../../v2/keys"])
def test_a_task_id_is_one_encoded_path_segment_of_the_poll(cli, gateway: FakeGateway, task_id: str) -> None:
    """A gateway's task id cannot steer the poll (which carries the key) to another path."""
    gateway.fault("generate", "task_id", body=task_id.encode())
    result = cli("generate", "x", "-m", "apimart:z-image-turbo", "--json")
    assert result.returncode == 0, result.stderr
    polls = [r.path for r in gateway.requests if "/tasks/" in r.path]
    assert polls, [r.path for r in gateway.requests]
    for path in polls:
        prefix, _, segment = path.partition("/tasks/")
        assert prefix == "/apimart/v1" and "/" not in segment and "?" not in segment and segment not in (".", "..")


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/x.png", "gopher://127.0.0.1:70/x"])
def test_an_image_redirected_to_another_scheme_is_refused_at_once(cli, gateway: FakeGateway, location: str) -> None:
    gateway.fault("image", "redirect", headers={"Location": location}, times=10)
    result = cli("generate", "x", "-m", "apimart:z-image-turbo", env={"IMAGEGEN_MAX_RETRIES": "3"})
    assert result.returncode != 0
    assert "not http" in result.stderr and "retrying" not in result.stderr, result.stderr
    assert len(gateway.image_requests) == 1


@pytest.mark.parametrize("name", ["X-Api-Key", "X-Trace"])
@pytest.mark.parametrize("bad", ["\r\nInjected: 1", "\n", "\x00", "\x9b31m"])
def test_a_configured_header_with_a_control_character_is_refused_without_showing_it(
    cli, gateway: FakeGateway, tmp_path: Path, name: str, bad: str
) -> None:
    from tests.conftest import write_config

    secret = "hdr-Secret-Value-42"
    write_config(f"[providers.openai]\nheaders = {{ {json.dumps(name)} = {json.dumps(secret + bad)} }}\n")
    for args in (("generate", "x", "-m", "openai:gpt-image-2", "--json"), ("generate", "x", "-m", "openai:gpt-image-2",
                 "--dry-run"), ("config", "show"), ("tasks", "list")):  # fmt: skip
        result = cli(*args)
        if name == "X-Api-Key" or args[0] != "config":  # config show prints a header that is not a secret
            assert secret not in result.stdout + result.stderr, args
        if args[0] == "generate":
            assert result.returncode == 4, result.stderr
            assert name in result.stderr and "hint:" in result.stderr
    assert gateway.requests == []
    for path in Path(os.environ["XDG_DATA_HOME"]).rglob("*"):
        assert not path.is_file() or secret.encode() not in path.read_bytes(), path


def test_a_bad_poll_interval_in_a_provider_table_is_a_config_error(cli, gateway: FakeGateway) -> None:
    from tests.conftest import write_config

    write_config('[providers.apimart]\npoll_interval = "abc"\n')
    result = cli("generate", "x", "-m", "apimart:z-image-turbo")
    assert result.returncode == 4, result.stderr
    assert "poll_interval" in result.stderr and "hint:" in result.stderr


def _config_dir() -> Path:
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "imagegen"
    path.mkdir(parents=True, exist_ok=True)
    return path


HOSTILE_SETTINGS: dict[str, tuple[dict[str, str], str | bytes | None, str]] = {
    "poll interval text": ({"IMAGEGEN_POLL_INTERVAL": "abc"}, None, "IMAGEGEN_POLL_INTERVAL"),
    "retries nan": ({"IMAGEGEN_MAX_RETRIES": "nan"}, None, "IMAGEGEN_MAX_RETRIES"),
    "retries inf": ({"IMAGEGEN_MAX_RETRIES": "inf"}, None, "IMAGEGEN_MAX_RETRIES"),
    "retries negative": ({"IMAGEGEN_MAX_RETRIES": "-1"}, None, "IMAGEGEN_MAX_RETRIES"),
    "retry delay huge": ({"IMAGEGEN_RETRY_BASE_DELAY": "9" * 5000}, None, "IMAGEGEN_RETRY_BASE_DELAY"),
    "base url ipv6": ({"IMAGEGEN_APIMART_BASE_URL": "http://[::1"}, None, "invalid base URL"),
    "config base url number": ({}, "[providers.apimart]\nbase_url = 5\n", "base_url in [providers.apimart]"),
    "config poll interval": ({}, '[providers.apimart]\npoll_interval = "abc"\n', "poll_interval"),
    "config nested": ({}, "x = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    "config 5000 digits": ({}, "timeout = " + "9" * 5000 + "\n", "not valid TOML"),
    "config 4000 digits": ({}, "timeout = " + "9" * 4000 + "\n", "integer beyond 64 bits at timeout"),
    "config 40 levels": ({}, "[providers.apimart]\nheaders = " + "{a = " * 40 + "1" + "}" * 40 + "\n", "levels deep"),
    "config not utf-8": ({}, b'timeout = "\xff\xfe"\n', "not UTF-8"),
    "config /dev/zero": ({"IMAGEGEN_CONFIG": "/dev/zero"}, None, "not a regular file"),
    "config a directory": ({"IMAGEGEN_CONFIG": "/"}, None, "not a regular file"),
}


@pytest.mark.parametrize("case", list(HOSTILE_SETTINGS))
def test_hostile_settings_are_one_clear_config_error(cli, gateway: FakeGateway, case: str) -> None:
    env, config, says = HOSTILE_SETTINGS[case]
    if config is not None:
        target = _config_dir() / "config.toml"
        target.write_bytes(config if isinstance(config, bytes) else config.encode())
    for extra in ((), ("--dry-run",)):
        result = cli("generate", "x", "-m", "apimart:z-image-turbo", *extra, env=env)
        if extra and case.startswith(("retr", "base url ipv6")):
            continue  # a dry run sends nothing: a URL or retry count it does not use may wait for the run
        assert result.returncode == 4, (extra, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), lines
        assert says in lines[0] and "internal error" not in result.stderr
    assert gateway.requests == []


def test_a_keys_file_that_is_a_fifo_never_hangs_a_command(gateway: FakeGateway) -> None:
    keys = _config_dir() / "keys.json"
    os.mkfifo(keys, 0o600)
    env = gateway_env(gateway, key=False)
    for args in (("generate", "x", "-m", "apimart:z-image-turbo"), ("keys", "list")):
        result = run_cli(*args, env=env, process=True, timeout=30)
        assert result.returncode == 4 and "is a FIFO, not a regular file" in result.stderr, result.stderr


@pytest.mark.parametrize("source", ["/dev/zero", "/", "fifo"])
def test_a_prompt_file_that_is_not_a_regular_file_is_refused(
    cli, gateway: FakeGateway, tmp_path: Path, source: str
) -> None:
    if source == "fifo":
        source = str(tmp_path / "fifo")
        os.mkfifo(source)
    result = cli("generate", "--prompt-file", source, "-m", "apimart:z-image-turbo")
    assert result.returncode == 2 and "not a regular file" in result.stderr and "hint:" in result.stderr
    assert gateway.requests == []


def test_a_journal_row_that_is_not_json_reads_as_damaged(cli, gateway: FakeGateway) -> None:
    import sqlite3

    done = cli("generate", "x", "-m", "apimart:z-image-turbo", "--json")
    job = done.json()["job"]
    with sqlite3.connect(Path(os.environ["XDG_DATA_HOME"]) / "imagegen" / "journal.sqlite3") as conn:
        conn.execute("UPDATE jobs SET request = '{not json', calls = 'x', output = '[' WHERE id = ?", (job,))
    for args in (("tasks", "list"), ("tasks", "list", "--json"), ("tasks", "show", job)):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
        assert job in result.stdout and ("damaged" in result.stdout or args == ("tasks", "list")), args
