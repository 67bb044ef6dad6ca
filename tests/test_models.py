"""``imagegen models`` (list, live, show, pull, rm) and shell completion."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import gateway_env, heavy_imports, run_cli, write_config
from tests.fakegateway import FakeGateway

DESIGN_PROVIDERS = {"openai", "mka1", "kkiai", "modelmax", "token360", "apimart", "local", "imagegen"}


def test_models_json_lists_every_provider_with_capabilities() -> None:
    result = run_cli("models", "--json")
    assert result.returncode == 0, result.stderr
    providers = {p["name"]: p for p in result.json()["providers"]}
    assert set(providers) == DESIGN_PROVIDERS
    for name, provider in providers.items():
        assert provider["models"], name
        for model in provider["models"]:
            assert {"id", "ref", "mode"} <= set(model)
    z = next(m for m in providers["apimart"]["models"] if m["id"] == "z-image-turbo")
    assert z["mode"] == "async" and z["ratios"][:2] == ["1:1", "4:3"] and z["tiers"] == ["1K", "2K"] and z["n"] == "1"
    dalle3 = next(m for m in providers["openai"]["models"] if m["id"] == "dall-e-3")
    assert dalle3["sizes"] == ["1024x1024", "1792x1024", "1024x1792"] and dalle3["n"] == "1"
    assert "style" in dalle3["params"]
    seedream = next(m for m in providers["token360"]["models"] if m["id"] == "seedream-4.5")
    assert "seed" in seedream["params"]
    local = {m["id"]: m for m in providers["local"]["models"]}
    assert local["z-image-turbo"]["repo"] == "Tongyi-MAI/Z-Image-Turbo" and local["z-image-turbo"]["steps"] == 8
    assert local["sdxl-turbo"]["native_size"] == "512x512"


def place_in_cache(cache: Path, repo: str, size: int = 2048) -> None:
    root = cache / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (root / "blobs").mkdir()
    (root / "blobs" / "deadbeef").write_bytes(b"\0" * size)
    (snapshot / "model_index.json").write_text("{}")


def test_downloaded_flag_follows_the_hf_cache(tmp_path: Path) -> None:
    cache = tmp_path / "hf"
    env = {"HF_HUB_CACHE": str(cache)}

    def sd_turbo() -> dict:
        doc = run_cli("models", "list", "--local", "--json", env=env).json()
        return next(m for m in doc["providers"][0]["models"] if m["id"] == "sd-turbo")

    assert sd_turbo()["downloaded"] is False
    place_in_cache(cache, "stabilityai/sd-turbo")
    model = sd_turbo()
    assert model["downloaded"] is True and model["size_on_disk"] == 2048
    assert "downloaded (2.0 KB)" in run_cli("models", "list", "--local", env=env).stdout
    # HF_HOME works as well
    assert run_cli("models", "list", "--local", "--json", env={"HF_HOME": str(tmp_path / "home")}).returncode == 0


def test_models_rm(tmp_path: Path) -> None:
    cache = tmp_path / "hf"
    env = {"HF_HUB_CACHE": str(cache)}
    place_in_cache(cache, "stabilityai/sd-turbo")
    refused = run_cli("models", "rm", "sd-turbo", env=env)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    removed = run_cli("models", "rm", "sd-turbo", "--yes", env=env)
    assert removed.returncode == 0 and removed.stdout.strip() == "stabilityai/sd-turbo"
    assert not (cache / "models--stabilityai--sd-turbo").exists()
    again = run_cli("models", "rm", "sd-turbo", "--yes", env=env)
    assert again.returncode == 2 and "not in the Hugging Face cache" in again.stderr


@pytest.mark.parametrize(
    ("command", "given", "ref"),
    [
        ("pull", "apimart:z-image-turbo", "apimart:z-image-turbo"),
        ("pull", "gpt-image-1.5", "openai:gpt-image-1.5"),  # a bare id only a gateway has
        ("pull", "mka1:meetkai:z-image-turbo", "mka1:meetkai:z-image-turbo"),
        ("rm", "apimart:z-image-turbo", "apimart:z-image-turbo"),
    ],
)
def test_pull_and_rm_of_a_remote_model_say_it_is_remote(command: str, given: str, ref: str) -> None:
    result = run_cli("models", command, given, *(["--yes"] if command == "rm" else []))
    assert result.returncode == 2
    what = "there is nothing to download" if command == "pull" else "there are no local weights to remove"
    assert result.stderr.splitlines() == [
        f"error: {ref} is a remote model: {what}",
        f'hint: use it directly: imagegen generate "a red fox" -m {ref}',
    ]


def test_models_rm_tiny_removes_the_built_pipeline() -> None:
    from imagegen_cli.local.tiny import tiny_dir

    absent = run_cli("models", "rm", "tiny", "--yes")
    assert absent.returncode == 2 and absent.stderr.splitlines()[0] == "error: local:tiny is not built"
    build = tiny_dir()
    (build / "unet").mkdir(parents=True)
    (build / "model_index.json").write_text("{}")
    (build / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"0" * 2048)
    assert run_cli("models", "rm", "tiny").returncode == 2  # asks first; not interactive: refuses without --yes
    assert build.exists()
    removed = run_cli("models", "rm", "local:tiny", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout == f"{build}\n" and not build.exists()
    tiny = next(m for m in run_cli("models", "--local", "--json").json()["providers"][0]["models"] if m["id"] == "tiny")
    assert tiny["state"] == "built on first use"


def test_models_pull_errors() -> None:
    tiny = run_cli("models", "pull", "tiny")
    assert tiny.returncode == 2 and "built on this machine" in tiny.stderr
    unknown = run_cli("models", "pull", "nonsense")
    assert unknown.returncode == 2
    result = run_cli("models", "pull", "sd-turbo", env={"HF_HUB_OFFLINE": "1"})
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        assert result.returncode == 4
        assert "pip install 'imagegen-cli[local]'" in result.stderr
    else:
        assert result.returncode == 1
        assert "offline" in result.stderr
    assert "Traceback" not in result.stderr


def test_models_table_is_human_readable() -> None:
    result = run_cli("models")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["PROVIDER", "MODEL", "MODE", "SIZES", "N/CALL", "NOTES"]
    assert any(line.startswith("apimart") and "async" in line and "z-image-turbo" in line for line in lines)
    assert run_cli("models", "list", "--provider", "kkiai").stdout.count("kkiai") == 3
    assert run_cli("models", "list", "--provider", "nope").returncode == 2


@pytest.mark.parametrize(
    "ref",
    [
        "openai:dall-e-3",
        "openai:gpt-image-2",
        "mka1:meetkai:z-image-turbo",
        "kkiai:flux-kontext-pro",
        "kkiai:grok-3-image",
        "modelmax:imagen-3",
        "token360:seedream-4.5",
        "token360:nano-banana-pro",
        "token360:glm-image",
        "apimart:z-image-turbo",
        "apimart:gpt-4o-image",
        "apimart:qwen-image-2.0",
    ],
)
def test_models_show_example_is_a_working_command(ref: str, gateway: FakeGateway) -> None:
    shown = run_cli("models", "show", ref, "--json")
    assert shown.returncode == 0, shown.stderr
    info = shown.json()
    assert set(info["flags"]) >= {"-n", "--size", "--ratio", "--quality", "--seed", "--response-format"}
    args = shlex.split(info["example"])
    assert args[:2] == ["imagegen", "generate"]
    dry = run_cli(*args[1:], "--dry-run", "--strict", env=gateway_env(gateway))
    assert dry.returncode == 0, (info["example"], dry.stderr)


def test_models_show_human() -> None:
    result = run_cli("models", "show", "dall-e-3")
    assert result.returncode == 0
    assert "How the flags map:" in result.stdout
    assert "--style" in result.stdout and "sent as style" in result.stdout
    assert 'imagegen generate "a red fox in the snow" -m openai:dall-e-3' in result.stdout
    local = run_cli("models", "show", "local:sd-turbo")
    assert "stabilityai/sd-turbo" in local.stdout and "Example:" in local.stdout
    assert run_cli("models", "show", "z-image-turbo").returncode == 2  # apimart and local both have it


def test_models_live(gateway: FakeGateway) -> None:
    env = gateway_env(gateway)
    live = run_cli("models", "list", "--live", "--provider", "openai", "--json", env=env)
    assert live.returncode == 0, live.stderr
    doc = live.json()
    assert doc["live"] is True
    by_id = {m["id"]: m for m in doc["models"]}
    assert "gpt-4o" not in by_id and "whisper-1" not in by_id  # not image models
    assert by_id["dall-e-3"]["live"] is True and by_id["dall-e-3"]["builtin"] is True
    assert by_id["gpt-image-9"]["builtin"] is False
    assert by_id["dall-e-2"]["live"] is False
    mka1 = run_cli("models", "list", "--live", "--provider", "mka1", env=env)
    assert mka1.returncode == 0 and "live model list is not available" in mka1.stderr
    kkiai = run_cli("models", "list", "--live", "--provider", "kkiai", env=env)
    assert kkiai.returncode == 0 and "kkiai has no usable live model list" in kkiai.stderr
    assert "flux-kontext-pro" in kkiai.stdout
    assert run_cli("models", "list", "--live").returncode == 2
    nokey = run_cli("models", "list", "--live", "--provider", "openai", env={**env, "IMAGEGEN_OPENAI_API_KEY": ""})
    assert nokey.returncode == 4


def complete(line: str, env: dict[str, str] | None = None) -> list[str]:
    words = line.split(" ")
    result = run_cli(
        env={
            "_IMAGEGEN_COMPLETE": "complete_bash",
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(words) - 1),
            **(env or {}),
        }
    )
    assert result.returncode == 0
    return result.stdout.split()


def test_completion_offers_models_providers_and_task_ids(cli, gateway: FakeGateway) -> None:
    assert "apimart:z-image-turbo" in complete("imagegen generate -m apim")
    assert "dall-e-3" in complete("imagegen models show dall")
    assert complete("imagegen generate --provider tok") == ["token360"]
    job_id = cli("generate", "x", "-m", "apimart:z-image-turbo", "--no-wait").lines[0]
    assert complete(f"imagegen tasks wait {job_id[:6]}") == [job_id]
    assert complete(f"imagegen tasks show {job_id[:3]}") == [job_id]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("imagegen generate x --format ", ["png", "jpeg", "webp", "gif", "svg"]),
        ("imagegen generate x --quality h", ["hd", "high"]),
        ("imagegen generate x --device c", ["cuda", "cpu"]),
        ("imagegen generate x --dtype ", ["auto", "bf16", "fp16", "fp32"]),
        ("imagegen generate x --resolution ", ["1K", "2K", "4K"]),
        ("imagegen generate x --ratio 16", ["16:9"]),
        ("imagegen generate x --ratio 2", ["2:3", "21:9"]),
        ("imagegen generate x --scheduler dpm", ["dpm++2m", "dpm++2m-karras", "dpm++2m-sde"]),
        ("imagegen generate x --offload ", ["none", "model", "sequential"]),
        ("imagegen generate x --quantize ", ["8bit", "4bit", "fp8"]),
        ("imagegen generate x --style ", ["vivid", "natural"]),
        ("imagegen generate x --response-format ", ["url", "b64_json"]),
        ("imagegen x --format w", ["webp"]),  # the default command completes the same
    ],
)
def test_completion_offers_values_not_file_names(line: str, expected: list[str]) -> None:
    assert complete(line) == expected


def test_every_ratio_a_model_takes_is_offered() -> None:
    from imagegen_cli.providers.profiles import BUILTIN_PROFILES
    from imagegen_cli.request import TIER_TABLE

    offered = complete("imagegen generate x --ratio ")
    catalog = {r for p in BUILTIN_PROFILES.values() for m in p.models.values() for r in m.ratios}
    assert set(offered) == catalog | set(TIER_TABLE) and len(offered) == len(set(offered))
    assert offered[:7] == list(TIER_TABLE)  # the table's ratios first, in its order


def test_install_completion_for_bash_installs_the_colon_aware_script(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Typer's generic bash script loses "-m apimart:z<Tab>" (bash splits the word at ":"); ours does not.
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")  # take the shell as a value
    committed = (Path(__file__).resolve().parent.parent / "completions" / "imagegen.bash").read_text()
    installed = isolated_env / ".bash_completions" / "imagegen.sh"
    for _ in range(2):
        result = run_cli("--install-completion", "bash")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0] == f"bash completion installed in {installed}"
    assert installed.read_text() == committed
    assert (isolated_env / ".bashrc").read_text().count(f"source '{installed}'") == 1
    shown = run_cli("--show-completion", "bash")
    assert shown.returncode == 0 and shown.stdout == committed
    # zsh and fish keep Typer's own scripts.
    zsh = run_cli("--install-completion", "zsh")
    assert zsh.returncode == 0 and (isolated_env / ".zfunc" / "_imagegen").is_file()


COMPLETION_PROBE = """
import os, sys
os.environ.update(_IMAGEGEN_COMPLETE="complete_bash", COMP_WORDS="imagegen generate -m apim", COMP_CWORD="3")
from imagegen_cli.cli.app import main
try:
    main()
except SystemExit:
    pass
sys.stderr.write(",".join(sorted(m for m in ("torch", "diffusers", "httpx") if m in sys.modules)))
"""


def test_completion_and_models_import_nothing_heavy() -> None:
    proc = subprocess.run([sys.executable, "-c", COMPLETION_PROBE], capture_output=True, text=True, check=False)
    assert "apimart:z-image-turbo" in proc.stdout
    assert proc.stderr == ""
    assert heavy_imports(["models", "--json"])[0] == []


def test_completion_scripts_are_fresh() -> None:
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root / "scripts"))
    try:
        import generate_completions
    finally:
        sys.path.pop(0)
    for shell, name in generate_completions.FILES.items():
        committed = (root / "completions" / name).read_text()
        assert committed == generate_completions.render(shell), (
            f"completions/{name} is stale: run python scripts/generate_completions.py"
        )


BASH_COMPLETION = Path("/usr/share/bash-completion/bash_completion")
# (command line, COMP_WORDS exactly as bash 5 splits that line at its COMP_WORDBREAKS, expected COMPREPLY):
# bash replaces only the part of the word after its last ":" or "=", so that is what COMPREPLY must hold.
COLON_CASES = [
    ("imagegen generate -m apimart:z", ["imagegen", "generate", "-m", "apimart", ":", "z"], ["z-image-turbo"]),
    (
        "imagegen generate -m apimart:",
        ["imagegen", "generate", "-m", "apimart", ":"],
        [
            "z-image-turbo",
            "gpt-4o-image",
            "gpt-image-1-official",
            "gemini-3-pro-image-preview",
            "doubao-seedream-5-0-lite",
            "qwen-image-2.0",
        ],
    ),
    (
        "imagegen generate -m mka1:meetkai:z",
        ["imagegen", "generate", "-m", "mka1", ":", "meetkai", ":", "z"],
        ["z-image-turbo"],
    ),
    (
        "imagegen generate --model=apimart:z",
        ["imagegen", "generate", "--model", "=", "apimart", ":", "z"],
        ["z-image-turbo"],
    ),
    ("imagegen generate --provider=tok", ["imagegen", "generate", "--provider", "=", "tok"], ["token360"]),
    ("imagegen models show local:ti", ["imagegen", "models", "show", "local", ":", "ti"], ["tiny"]),
    ("imagegen generate --provider tok", ["imagegen", "generate", "--provider", "tok"], ["token360"]),
    ("imagegen generate x --ratio 16:", ["imagegen", "generate", "x", "--ratio", "16", ":"], ["9"]),
    ("imagegen generate x --format w", ["imagegen", "generate", "x", "--format", "w"], ["webp"]),
]


def bash_complete(line: str, words: list[str], cword: int, *, bash_completion: bool) -> list[str]:
    """COMPREPLY from the committed bash script, run by a real bash with bash's own COMP_* variables."""
    from tests.conftest import IMAGEGEN

    script = "\n".join(
        [
            f"source {BASH_COMPLETION}" if bash_completion else "unset -f _get_comp_words_by_ref",
            "source completions/imagegen.bash",
            f"COMP_LINE={shlex.quote(line)}; COMP_POINT=${{#COMP_LINE}}",
            f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); COMP_CWORD={cword}",
            "_imagegen_completion imagegen imagegen",
            'printf "%s\\n" "${COMPREPLY[@]}"',
        ]
    )
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PATH": f"{IMAGEGEN.parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        check=False,
        capture_output=True,
        text=True,
        cwd=root,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line]


@pytest.mark.parametrize(
    "bash_completion",
    [
        False,
        pytest.param(
            True, marks=pytest.mark.skipif(not BASH_COMPLETION.exists(), reason="bash-completion is not installed")
        ),
    ],
    ids=["plain-bash", "bash-completion"],
)
def test_bash_completion_completes_after_a_colon(bash_completion: bool) -> None:
    for line, words, expected in COLON_CASES:
        assert bash_complete(line, words, len(words) - 1, bash_completion=bash_completion) == expected, line
    # The cursor on the model word of a longer line: the words after it do not change the answer.
    words = ["imagegen", "generate", "-m", "apimart", ":", "z", "-n", "2"]
    assert bash_complete(" ".join(words[:3]) + " apimart:z -n 2", words, 5, bash_completion=bash_completion) == [
        "z-image-turbo"
    ]


def _ids(lines: list[str]) -> list[str]:
    return [line.split()[1] for line in lines[1:]]


def test_models_table_fits_the_width_it_is_given() -> None:
    ids = [m["id"] for p in run_cli("models", "--json").json()["providers"] for m in p["models"]]
    # Piped with no COLUMNS: full rows, nothing shortened (a script or grep sees every note).
    full = run_cli("models", env={"COLUMNS": ""})
    assert max(map(len, full.lines)) > 190 and "…" not in full.stdout
    assert _ids(full.lines) == ids
    fitted = run_cli("models", env={"COLUMNS": "110"})
    assert fitted.returncode == 0
    assert max(map(len, fitted.lines)) <= 110
    assert "…" in fitted.stdout and _ids(fitted.lines) == ids  # sizes and notes shortened, never an id
    # No size is cut mid-word: a shortened SIZES cell ends on whole sizes.
    sizes_at = fitted.lines[0].index("SIZES")
    for line in fitted.lines[1:]:
        cell = line[sizes_at:].split("  ")[0]
        assert all(
            part in ("…", "-") or re.fullmatch(r"(\d+x\d+|auto|any|WxH|\(×\d+\)|\d+:\d+|@[\dK/]+)…?", part)
            for part in cell.split()
        ), cell
    # Narrower than the table can go: the shortened columns stop at their minimum, the ids stay whole.
    narrow = run_cli("models", env={"COLUMNS": "30"})
    assert _ids(narrow.lines) == ids and max(map(len, narrow.lines)) < max(map(len, fitted.lines))
    local = run_cli("models", "--local", env={"COLUMNS": "60"})
    notes_at = local.lines[0].index("NOTES")
    for line in local.lines[1:]:  # the state comes first in a local row's notes, so it survives shortening
        assert line[notes_at:].startswith(("downloaded", "not downloaded", "built")), line


def test_models_table_fits_the_terminal() -> None:
    """On a terminal of 100 columns with no COLUMNS, rows fit the terminal (as ``shutil`` reads its size)."""
    import fcntl
    import pty
    import struct
    import termios

    from tests.conftest import IMAGEGEN

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = subprocess.Popen([str(IMAGEGEN), "models"], stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    lines = [line for line in b"".join(chunks).decode().splitlines() if line]
    assert lines[0].startswith("PROVIDER") and len(lines) > 20
    assert max(map(len, lines)) <= 100 and any(line.endswith("…") for line in lines)


USER_PROVIDERS = """
[providers.mygw]
base_url = "https://gw.example.com/v1"
default_model = "flux-dev"

[providers.other]
base_url = "https://other.example.com/v1"
default_model = "m1"

[providers.other.models.m2]
size_mode = "pixels"
sizes = ["512x512"]
"""


def test_user_defined_providers_list_their_default_and_configured_models(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(USER_PROVIDERS)
    env = {"IMAGEGEN_CONFIG": str(config)}

    def listed(provider: str) -> dict[str, dict]:
        result = run_cli("models", "--provider", provider, "--json", env=env)
        assert result.returncode == 0, result.stderr
        return {m["id"]: m for m in result.json()["providers"][0]["models"]}

    mygw = listed("mygw")
    assert list(mygw) == ["flux-dev"] and mygw["flux-dev"]["default"] is True
    assert mygw["flux-dev"]["ref"] == "mygw:flux-dev" and "default model" in mygw["flux-dev"]["summary"]
    other = listed("other")
    assert sorted(other) == ["m1", "m2"] and other["m1"]["default"] and other["m2"]["sizes"] == ["512x512"]
    table = run_cli("models", "--provider", "mygw", env=env)
    assert [line.split()[:3] for line in table.lines[1:]] == [["mygw", "flux-dev", "sync"]]
    shown = run_cli("models", "show", "flux-dev", env=env)  # a bare id only one provider offers
    assert shown.returncode == 0, shown.stderr
    assert "mygw:flux-dev" in shown.stdout and "not a built-in model" not in shown.stdout
    assert "mygw:flux-dev" in complete("imagegen generate -m myg", env=env)


def test_key_env_is_the_lookup_rule_for_config_providers(tmp_path: Path) -> None:
    # `my-gw` is looked up as IMAGEGEN_MY_GW_API_KEY / MY_GW_API_KEY (providers.registry.profile_key_vars).
    write_config(
        '[providers.my-gw]\nbase_url = "https://gw.example/v1"\ndefault_model = "flux-dev"\n\n'
        '[providers.tok]\nbase_url = "https://tok.example/v1"\ndefault_model = "m"\napi_key_env = "TOK_TOKEN"\n'
    )
    listed = run_cli("models", "--json")
    assert listed.returncode == 0, listed.stderr
    key_env = {p["name"]: p["key_env"] for p in listed.json()["providers"]}
    assert key_env["my-gw"] == ["IMAGEGEN_MY_GW_API_KEY", "MY_GW_API_KEY"]
    assert key_env["tok"] == ["TOK_TOKEN", "IMAGEGEN_TOK_API_KEY", "TOK_API_KEY"]
    assert key_env["openai"] == ["IMAGEGEN_OPENAI_API_KEY", "OPENAI_API_KEY"]
    shown = run_cli("models", "show", "my-gw:flux-dev", "--json")
    assert shown.returncode == 0, shown.stderr
    assert shown.json()["key_env"] == ["IMAGEGEN_MY_GW_API_KEY", "MY_GW_API_KEY"]
    found = run_cli("keys", "list", "--json", env={"MY_GW_API_KEY": "sk-test-0123456789abcdef"})
    assert found.returncode == 0, found.stderr
    assert "MY_GW_API_KEY" in found.stdout  # the variable `models` names is the one the lookup reads
