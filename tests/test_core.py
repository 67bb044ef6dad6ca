"""The one core: a single prompt and a batch line take the same path; settings are checked once; layering."""

from __future__ import annotations

import ast
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_KEY, config_path, gateway_env, heavy_imports, run_cli, write_config
from tests.fakegateway import FakeGateway

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "imagegen_cli"


def prompt_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text(text)
    return path


# ---------------------------------------------------------------- single run == batch of one line
def test_local_only_flag_on_a_remote_model_is_noted_in_a_batch_as_in_a_single_run(
    cli, gateway: FakeGateway, tmp_path: Path
) -> None:
    single = cli("generate", "x", "-m", "openai:gpt-image-1.5", "--device", "cuda")
    batch = cli(
        "generate", "--prompt-file", str(prompt_file(tmp_path, "x\n")), "-m", "openai:gpt-image-1.5", "--device", "cuda"
    )
    assert single.returncode == batch.returncode == 0, batch.stderr
    assert "--device dropped: local only" in single.stderr
    assert "line 1: --device dropped: local only" in batch.stderr
    strict = cli("generate", "--prompt-file", str(tmp_path / "prompts.txt"), "-m", "openai:gpt-image-1.5", "--device",
                 "cuda", "--strict")  # fmt: skip
    assert strict.returncode == 2 and "line 1: --device dropped" in strict.stderr


def test_dry_run_creates_no_directory_single_or_batch(gateway: FakeGateway, tmp_path: Path) -> None:
    env = gateway_env(gateway)
    single_out, batch_out = tmp_path / "single", tmp_path / "batch"
    single = run_cli("generate", "x", "-m", "openai:gpt-image-1.5", "-o", str(single_out), "--dry-run", env=env)
    prompts = prompt_file(tmp_path, "x\ny\n")
    batch = run_cli("generate", "--prompt-file", str(prompts), "-m", "openai:gpt-image-1.5", "-o", str(batch_out),
                    "--dry-run", env=env)  # fmt: skip
    assert single.returncode == batch.returncode == 0, batch.stderr
    assert not single_out.exists() and not batch_out.exists()
    assert gateway.calls() == []


def test_tasks_wait_takes_its_timeout_from_the_config(cli, gateway: FakeGateway) -> None:
    gateway.fault("generate", "never")
    submitted = cli("generate", "x", "-m", "apimart:z-image-turbo", "--no-wait", "--json")
    job = submitted.json()["job"]
    write_config("timeout = 1\n")
    waited = cli("tasks", "wait", job, "--json")
    assert waited.returncode == 5, waited.stderr
    assert "timed out; still pending on apimart" in waited.stderr
    assert f"imagegen tasks wait {job}" in waited.stderr


def test_the_dry_run_prints_exactly_the_headers_and_body_that_are_sent(cli, gateway: FakeGateway) -> None:
    args = ("generate", "a koi", "-m", "mka1:meetkai:z-image-turbo", "--on-behalf-of", "user-7", "--size", "1024x1024")
    dry = cli(*args, "--dry-run", "--json").json()
    sent = cli(*args)
    assert sent.returncode == 0, sent.stderr
    (call,) = dry["calls"]
    (received,) = gateway.calls("mka1")
    assert call["body"] == received.body
    received_headers = {k.lower(): v for k, v in received.headers.items()}
    for name, value in call["headers"].items():
        expected = f"Bearer {TEST_KEY}" if name == "Authorization" else value
        assert received_headers[name.lower()] == expected, name
    assert {"accept", "content-type", "user-agent", "authorization", "x-on-behalf-of"} <= {
        name.lower() for name in call["headers"]
    }


def test_secret_header_values_from_the_config_are_redacted_in_the_dry_run(gateway: FakeGateway) -> None:
    write_config('[providers.openai]\nheaders = { "X-Api-Key" = "hunter2-secret", "X-Team" = "blue" }\n')
    dry = run_cli("generate", "x", "-m", "openai:gpt-image-1.5", "--dry-run", "--json", env=gateway_env(gateway))
    headers = dry.json()["calls"][0]["headers"]
    assert headers["X-Api-Key"] == "***" and headers["X-Team"] == "blue"
    assert "hunter2-secret" not in dry.stdout


def test_single_run_and_one_line_batch_journal_the_same_job(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    flags = ("-m", "token360:seedream-4.5", "--seed", "5", "--size", "1024x1024", "--json")
    single = cli("generate", "a koi", *flags).json()
    batch = cli("generate", "--prompt-file", str(prompt_file(tmp_path, "a koi\n")), *flags).json()
    assert single["status"] == batch["status"] == "succeeded"
    assert [i["seed"] for i in single["images"]] == [i["seed"] for i in batch["images"]] == [5]
    journal = Path(os.environ["XDG_DATA_HOME"]) / "imagegen" / "journal.sqlite3"
    with sqlite3.connect(journal) as conn:
        rows = conn.execute("SELECT request, calls, n, status, provider, model FROM jobs ORDER BY id").fetchall()
    assert len(rows) == 2 and rows[0] == rows[1]
    first, second = (c.body for c in gateway.calls("token360"))
    assert first == second


def test_usage_errors_journal_nothing(cli, gateway: FakeGateway) -> None:
    assert cli("generate", "x", "-m", "openai:gpt-image-1.5", "--size", "7x7").returncode == 2
    listed = run_cli("tasks", "list", "--json")
    assert listed.returncode == 0 and listed.json() == []


def test_size_maps_to_ratio_and_tier_on_a_ratio_provider(cli, gateway: FakeGateway) -> None:
    dry = cli("generate", "x", "-m", "apimart:z-image-turbo", "--size", "2048x1152", "--dry-run", "--json").json()
    body = dry["calls"][0]["body"]
    assert body["size"] == "16:9" and body["resolution"] == "2K"
    assert any("--size 2048x1152 → ratio 16:9, resolution 2K" in note for note in dry["notes"])


def test_batch_dry_run_describes_every_line_as_a_single_dry_run_would(
    cli, gateway: FakeGateway, tmp_path: Path
) -> None:
    prompts = prompt_file(tmp_path, 'a\n{"prompt": "b", "model": "local:tiny", "n": 2, "seed": 3}\n')
    dry = cli("generate", "--prompt-file", str(prompts), "-m", "openai:gpt-image-1.5", "--dry-run", "--json").json()
    first, second = dry["lines"]
    single = cli("generate", "a", "-m", "openai:gpt-image-1.5", "--dry-run", "--json").json()
    assert first["calls"] == single["calls"] and first["line"] == 1
    assert second["provider"] == "local" and second["calls"][0]["seeds"] == [3, 4]


# ---------------------------------------------------------------- settings
@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("timeout", "abc", "invalid timeout 'abc'"),
        ("timeout", "-5", "invalid timeout -5"),
        ("concurrency", "-1", "invalid concurrency -1"),
        ("concurrency", "0", "invalid concurrency 0"),
        ("format", "tiff", "invalid format 'tiff'"),
        ("metadata", "maybe", "invalid metadata 'maybe'"),
        ("name_template", "{nope}.png", "unknown field {nope}"),
        ("bogus", "1", "unknown setting 'bogus'"),
    ],
)
def test_config_set_checks_the_value_before_writing(key: str, value: str, message: str) -> None:
    result = run_cli("config", "set", key, value)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "\n" == result.stderr[-1] and result.stderr.count("error:") == 1
    assert not config_path().exists()


def test_config_set_accepts_negative_looking_values_and_quoted_numbers() -> None:
    assert run_cli("config", "set", "concurrency", '"8"').returncode == 0
    assert run_cli("config", "get", "concurrency").stdout.strip() == "8"
    assert run_cli("config", "set", "timeout", "2.5").returncode == 0
    shown = run_cli("config", "show", "--json").json()
    assert shown["concurrency"] == 8 and shown["timeout"] == 2.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('timeout = "abc"\n', "invalid timeout 'abc'"),
        ("concurrency = -1\n", "invalid concurrency -1"),
        ('concurrency = "8"\n', None),
        ('format = "gif2"\n', "invalid format 'gif2'"),
        ("metadata = 3\n", "invalid metadata 3"),
    ],
)
def test_a_bad_value_in_the_file_is_exit_2_naming_key_and_file(text: str, message: str | None) -> None:
    path = write_config(text)
    result = run_cli("generate", "x", "-m", "openai:gpt-image-1.5", "--dry-run")
    if message is None:
        assert result.returncode == 0, result.stderr  # "8" is read as 8
        return
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and str(path) in result.stderr
    assert "internal error" not in result.stderr


def test_config_set_and_unset_keep_comments_and_layout() -> None:
    path = write_config(
        "# my settings\ntimeout = 60  # seconds\n\n[providers.openai]\n# proxy\nbase_url = 'https://p/v1'\n"
    )
    assert run_cli("config", "set", "concurrency", "3").returncode == 0
    assert run_cli("config", "set", "providers.openai.default_model", "gpt-image-1.5").returncode == 0
    assert run_cli("config", "unset", "timeout").returncode == 0
    text = path.read_text()
    assert "# my settings" in text and "# proxy" in text and "base_url = 'https://p/v1'" in text
    assert "concurrency = 3" in text and 'default_model = "gpt-image-1.5"' in text and "timeout" not in text


# ---------------------------------------------------------------- local lines in a batch
def test_local_lines_of_a_batch_load_the_model_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import diffusers

    from imagegen_cli import api
    from imagegen_cli.options import GenerateOptions, OutputOptions, PromptLine, RequestOptions
    from tests.zoo import local_engine

    loads: list[str] = []
    original = diffusers.DiffusionPipeline.from_pretrained

    def counting(location: str, **kwargs: Any) -> Any:
        loads.append(location)
        return original(location, **kwargs)

    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", counting)
    local_engine().unload()
    options = GenerateOptions(
        model="local:tiny", request=RequestOptions(seed=1), output=OutputOptions(out=str(tmp_path))
    )
    run = api.run_batch([PromptLine(1, "a"), PromptLine(2, "b"), PromptLine(3, "c", {"seed": 9})], options)
    assert run.exit_code() == 0, [e.message for j in run.jobs for e in j.errors]
    assert len(loads) == 1
    assert [image.seed for image in run.images] == [1, 1, 9]
    assert all(Path(image.path).is_file() for image in run.images)


# ---------------------------------------------------------------- start-up and layering
def test_dry_run_of_the_default_model_never_imports_torch() -> None:
    heavy, (plan,) = heavy_imports(["generate", "x", "--dry-run", "--json"])
    assert json.loads(plan)["provider"] == "local"
    assert heavy == []


def test_a_remote_dry_run_imports_no_run_machinery(monkeypatch: pytest.MonkeyPatch) -> None:
    """A remote --dry-run plans and prints: no event loop, no writer or image containers, no journal."""
    monkeypatch.setenv("IMAGEGEN_APIMART_API_KEY", "sk-dry-run-0000")
    run_only = ("asyncio", "sqlite3", "httpx", "PIL", "imagegen_cli.store.writer", "imagegen_cli.store.containers",
                "imagegen_cli.store.journal", "imagegen_cli.saving", "imagegen_cli.backends.driver")  # fmt: skip
    heavy, (plan,) = heavy_imports(
        ["generate", "x", "-m", "apimart:z-image-turbo", "--dry-run", "--json"], modules=run_only
    )
    assert json.loads(plan)["provider"] == "apimart"
    assert heavy == []


REMOTE_DRY_RUN = ["generate", "a red fox", "-m", "openai:gpt-image-1.5", "--dry-run", "--json"]


def test_a_remote_dry_run_loads_neither_the_journal_nor_the_local_planner() -> None:
    # Start-up is a feature (bench/dry_run_startup.py: a remote dry run within 1.5x of --help): planning a
    # gateway call needs neither the SQLite journal nor the local planner.
    unwanted = ("sqlite3", "imagegen_cli.store.journal", "imagegen_cli.local.planning")
    loaded, (plan,) = heavy_imports(REMOTE_DRY_RUN, modules=unwanted)
    assert json.loads(plan)["calls"][0]["body"]["model"] == "gpt-image-1.5"
    assert loaded == []


def test_a_remote_dry_run_loads_neither_asyncio_nor_the_image_writer() -> None:
    unwanted = ("asyncio", "imagegen_cli.store.writer", "imagegen_cli.store.containers", "secrets")
    loaded, _ = heavy_imports(REMOTE_DRY_RUN, modules=unwanted)
    assert loaded == []


def _imports(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def _module_graph() -> dict[str, set[str]]:
    """Every module of the package → the package modules it imports, lazy imports inside functions included."""
    graph: dict[str, set[str]] = {}
    names = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in PACKAGE.rglob("*.py")
    }
    for name, path in names.items():
        edges = set()
        for module in _imports(path):
            # "from imagegen_cli.store import writer" names a module too: keep the longest known prefix.
            parts = module.split(".")
            while parts and ".".join(parts) not in names:
                parts.pop()
            if parts and ".".join(parts) != name:
                edges.add(".".join(parts))
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_in_the_package() -> None:
    """Imports inside functions count: a lazy import still makes a circle between the rooms of the house."""
    assert _cycles(_module_graph()) == []


def test_the_cycle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


FLOORS = {  # the spine, top to bottom: a module imports only its own floor, lower floors, and the shared types
    "imagegen_cli.cli": 0,
    "imagegen_cli.__main__": 0,
    "imagegen_cli.api": 1,
    "imagegen_cli.batch": 2,
    "imagegen_cli.backends": 2,
    "imagegen_cli.saving": 2,
    "imagegen_cli.local": 3,
    "imagegen_cli.providers": 3,
    "imagegen_cli.store": 4,
}
ENGINES = ("imagegen_cli.local", "imagegen_cli.providers")
NEVER_FROM_ENGINES = (
    "imagegen_cli.store.journal",
    "imagegen_cli.store.writer",
    "imagegen_cli.store.job_rows",
    "imagegen_cli.saving",
    "imagegen_cli.backends",
    "imagegen_cli.batch",
    "imagegen_cli.api",
)


def _floor(module: str) -> int | None:
    return next(
        (floor for prefix, floor in FLOORS.items() if module == prefix or module.startswith(prefix + ".")), None
    )


def test_no_upward_import_and_engines_never_reach_the_store_or_the_driver() -> None:
    graph = _module_graph()
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if (mine := _floor(module)) is not None and (theirs := _floor(target)) is not None and theirs < mine
    )
    assert upward == []
    reaching = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if module.startswith(ENGINES)
        for target in targets
        if target.startswith(NEVER_FROM_ENGINES)
    )
    assert reaching == []
    # The core options (every run builds them) never reach into an engine package: LocalOptions is a shared type.
    assert sorted(t for t in graph["imagegen_cli.options"] if t.startswith(tuple(e + "." for e in ENGINES))) == []
    # The store is below the run and its settings: it is handed what it needs (only where the data dir is).
    assert sorted(t for m, ts in graph.items() if m.startswith("imagegen_cli.store") for t in ts
                  if t == "imagegen_cli.settings") == []  # fmt: skip


def test_engines_never_print() -> None:
    """An engine says what it does as events: no print(), no sys.stdout/sys.stderr, no rich console."""
    offenders = []
    for path in [*(PACKAGE / "local").rglob("*.py"), *(PACKAGE / "providers").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{path.name}:{node.lineno} print")
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("stdout", "stderr")
                and isinstance(node.value, ast.Name)
            ):
                if node.value.id == "sys":
                    offenders.append(f"{path.name}:{node.lineno} sys.{node.attr}")
        offenders.extend(f"{path.name} imports {m}" for m in _imports(path) if m.split(".")[0] in ("rich", "typer"))
    assert offenders == []


def test_core_never_imports_the_cli() -> None:
    core = [p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts]
    for path in core:
        bad = {m for m in _imports(path) if m.startswith("imagegen_cli.cli") or m.split(".")[0] in ("typer", "rich")}
        if path.name == "__main__.py":
            continue
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_no_module_is_over_450_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 460}
    assert not long


# ---------------------------------------------------------------- the Python API, as the README shows it
def test_the_readme_python_example_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- api-example -->")
    block = readme[start:].split("```python\n", 1)[1].split("```", 1)[0]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, cwd=tmp_path, env=env,
                          check=False, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    paths = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert len(paths) == 2 and all((tmp_path / p).is_file() or Path(p).is_file() for p in paths)


def test_status_rule_is_the_only_one() -> None:
    """No module but status.py spells out how a job's status is decided."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "status.py":
            continue
        text = path.read_text()
        if '"partial" if' in text or "'partial' if" in text or 'status = "succeeded"' in text:
            offenders.append(str(path.relative_to(ROOT)))
        # A job's status is written once, by Journal.finish_job from the rule: no other caller sets one by hand.
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "set_status":
                if not (path.name == "journal.py" and _enclosing(text, node.lineno) == "finish_job"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} set_status")
    assert not offenders


def _enclosing(text: str, line: int) -> str | None:
    """The name of the function that holds ``line``."""
    holder = None
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef) and node.lineno <= line <= (node.end_lineno or node.lineno):
            if holder is None or node.lineno > holder.lineno:
                holder = node
    return holder.name if holder else None


def test_json_dry_run_is_valid_json_with_no_nan(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "x", "-m", "local:tiny", "--guidance", "nan", "--dry-run", "--json")
    assert result.returncode == 2 and "--guidance nan is not a number" in result.stderr
    ok = cli("generate", "x", "-m", "local:tiny", "--guidance", "2.5", "--dry-run", "--json")
    assert json.loads(ok.stdout)["calls"][0]["guidance_scale"] == 2.5


def test_readme_tables_are_generated_from_the_code() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import generate_docs
    finally:
        sys.path.pop(0)
    readme = (ROOT / "README.md").read_text()
    assert readme == generate_docs.render(readme), "README tables are stale: run python scripts/generate_docs.py"


@pytest.mark.parametrize("key", ["flag_fields", "params"])  # "params" is the name before 0.2, still read
def test_a_user_gateway_maps_flags_to_its_own_body_fields(key: str, gateway: FakeGateway) -> None:
    write_config(
        "[providers.mygw]\nbase_url = 'http://127.0.0.1:9/v1'\ndefault_model = 'm'\n"
        f"[providers.mygw.models.m]\n{key} = {{ seed = 'random_seed' }}\n"
    )
    dry = run_cli("generate", "x", "-m", "mygw:m", "--seed", "5", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert dry.json()["calls"][0]["body"]["random_seed"] == 5


# ---------------------------------------------------------------- zero is a value
def test_seed_0_and_guidance_0_survive_the_journal_and_tell_lines_apart(cli, gateway: FakeGateway) -> None:
    from imagegen_cli.request import GenerationRequest

    request = GenerationRequest(prompt="x", provider="openai", model="m", seed=0, guidance=0.0)
    data = request.to_dict()
    assert data["seed"] == 0 and data["guidance"] == 0.0
    assert GenerationRequest.from_dict(data) == request
    job = cli("generate", "x", "-m", "token360:seedream-4.5", "--seed", "0", "--json").json()["job"]
    shown = run_cli("tasks", "show", job, "--json").json()
    assert shown["request"]["seed"] == 0
    # A line with seed 0 is not the line without a seed: --resume must not take one for the other.
    lines = b'{"prompt": "koi", "seed": 0}\nkoi\n'
    args = ("generate", "--prompt-file", "-", "-m", "token360:seedream-4.5", "--json")
    assert cli(*args, input=lines).returncode == 0
    assert [call.body.get("seed") for call in gateway.calls("token360")][-2:] in ([0, None], [None, 0])
    again = cli(*args, "--resume", input=lines)
    assert again.returncode == 0, again.stderr
    assert [line["status"] for line in again.json()["lines"]] == ["skipped", "skipped"]


def test_a_run_without_o_writes_in_the_tests_own_directory_never_the_checkout(cli, tmp_path: Path) -> None:
    """Every test runs in its own working directory (tests/conftest.py), so no artefact lands in the checkout."""
    result = cli("generate", "x", "-m", "apimart:z-image-turbo", "--json", out_dir=False)
    assert result.returncode == 0, result.stderr
    [image] = result.json()["images"]
    assert Path(image["path"]).resolve().is_relative_to(tmp_path.resolve())
    assert Path.cwd().resolve().is_relative_to(tmp_path.resolve())


def test_capabilities_are_typed_once_and_a_malformed_entry_fails_where_it_is_defined(cli, gateway: Any) -> None:
    from imagegen_cli.providers.profile_types import ModelCaps
    from imagegen_cli.providers.profiles import BUILTIN_PROFILES
    from imagegen_cli.request import Ratio, Size
    from tests.conftest import write_config

    caps = ModelCaps("m", size_mode="pixels", sizes=("auto", "1024x1024", "1536x1024"), ratios=("16:9",), tiers=("2K",))
    assert caps.pixel_sizes == (Size(1024, 1024), Size(1536, 1024)) and caps.ratio_values == (Ratio(16, 9),)
    for bad in ({"sizes": ("1024by1024",)}, {"ratios": ("wide",)}, {"tiers": ("8K",)}):
        with pytest.raises(ValueError, match="model m"):
            ModelCaps("m", **bad)  # type: ignore[arg-type]
    every = [m for p in BUILTIN_PROFILES.values() for m in p.models.values()]
    assert every and all(len(m.pixel_sizes) == len([s for s in m.sizes if s != "auto"]) for m in every)
    write_config('[providers.apimart.models.z-image-turbo]\nratios = ["16:9", "wide"]\n')
    result = cli("generate", "x", "-m", "apimart:z-image-turbo", "--dry-run")
    assert result.returncode == 4 and "invalid capabilities" in result.stderr and "'wide'" in result.stderr
