"""Fixtures: an isolated user world, a fake gateway, the installed CLI, and a secret-leak check."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakegateway import PREFIXES, TEST_KEY, FakeGateway

IMAGEGEN = Path(sys.executable).with_name("imagegen")
PROVIDERS = ("openai", "mka1", "kkiai", "modelmax", "token360", "apimart")
CAPTURED: list[bytes] = []


def pytest_configure(config: pytest.Config) -> None:
    """Tests send Ctrl-C to the processes they start: run from a script's background job (where SIGINT is
    ignored, and children inherit that), give those children back the default Ctrl-C."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # With -n, tests spread a file at a time: a module that shares one Ray instance (or one server) runs on one
    # worker. ("loadgroup" would say it per module, but xdist 3.8 cannot rename pytest 9's node ids.) Set here
    # rather than in addopts, where --dist would break a run without xdist (-p no:xdist).
    _build_the_command_once()
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadfile"
        config.option.loadscopereorder = False  # files in collection order (the slowest first), not by test count


def _build_the_command_once() -> None:
    """Typer's test runner builds the whole command tree from its annotations on every invoke (~60 ms): several
    hundred in-process runs spent a minute of CPU there. Built once per test process instead; the tree holds no
    state of a run (each invoke parses into a fresh context), and the real command builds it once per process too.
    """
    import typer.testing

    build = typer.testing._get_command
    built: dict[tuple[int, str | None], tuple[Any, Any]] = {}

    def once(app: Any) -> Any:
        # Typer reads this one variable while building (its completion options take the shell as a value).
        key = (id(app), os.environ.get("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION"))
        if key not in built:
            built[key] = (app, build(app))  # the app is kept: its id stays its own
        return built[key][1]

    typer.testing._get_command = once  # type: ignore[attr-defined]


# The slowest modules (tens of seconds each, measured), run first: with -n, a worker that takes one late would
# still be at it after the others had finished everything else.
SLOWEST_FIRST = ("test_cluster.py", "test_matrix.py", "test_gateway_http.py", "test_local.py", "test_images_in.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: the order within a module, and of the other modules, is kept


ROOT = Path(__file__).resolve().parent.parent


def _untracked() -> set[str] | None:
    """Files in the checkout that git neither tracks nor ignores (None: not a git checkout, or no git)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return set(listed.stdout.splitlines())


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the controller, with or without xdist
        session.config.stash[_BEFORE] = _untracked()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A test that leaves a file in the checkout fails the run (tests write under their tmp_path only)."""
    if hasattr(session.config, "workerinput"):
        return
    before, after = session.config.stash.get(_BEFORE, None), _untracked()
    if before is None or after is None:
        return
    left = sorted(after - before)
    if left:
        sys.stderr.write(f"\nerror: the tests left {len(left)} file(s) in the checkout: {', '.join(left[:10])}\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_BEFORE = pytest.StashKey[set[str] | None]()


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point XDG dirs at a temp dir, drop the user's keys and settings, make output plain."""
    for name in list(os.environ):
        if name.startswith("IMAGEGEN_") or name.endswith("_API_KEY") or name.endswith("_BASE_URL"):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"), ("XDG_CACHE_HOME", "cache")):
        (home / sub).mkdir(parents=True)
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("IMAGEGEN_POLL_INTERVAL", "0.02")
    monkeypatch.setenv("IMAGEGEN_RETRY_BASE_DELAY", "0.01")
    # Local runs try an `imagegen serve` first: never a developer's own server on the default port.
    monkeypatch.setenv("IMAGEGEN_SERVER", "off")
    monkeypatch.delenv("CI", raising=False)
    # A command run without -o writes into the working directory: never the checkout's (pytest_sessionfinish).
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return home


@pytest.fixture(autouse=True)
def no_secret_leaks(tmp_path: Path) -> Iterator[None]:
    """After every test: the test key is in no captured output and no file the test wrote."""
    CAPTURED.clear()
    yield
    needle = TEST_KEY.encode()
    for blob in CAPTURED:
        assert needle not in blob, "the test API key leaked into command output"
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "keys.json":
            assert needle not in path.read_bytes(), f"the test API key leaked into {path}"


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread for a module of tiny tensors (more threads only spin against the other test worker),
    given back after it: CPU sums depend on the thread count, and later modules compare pixels with servers and
    workers of their own."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    with FakeGateway() as gw:
        yield gw


@dataclass
class Result:
    """A finished CLI run."""

    returncode: int
    stdout: str
    stderr: str
    stdout_bytes: bytes

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line]

    def json(self) -> Any:
        import json

        return json.loads(self.stdout)


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
    process: bool = False,
) -> Result:
    """Run imagegen; output is kept for the leak check.

    In-process (Typer's runner, milliseconds) unless ``process`` asks for the installed console script in a
    real process: signals, start-up, stdout bytes, crashes and concurrent processes need one.
    """
    if not process and "PYTHONPATH" not in (env or {}):  # a sitecustomize hook needs a fresh interpreter
        return _run_in_process(list(args), env=env, input=input, cwd=cwd)
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(
        [str(IMAGEGEN), *args],
        env=full_env,
        input=input,
        capture_output=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )
    CAPTURED.extend([proc.stdout, proc.stderr])
    return Result(
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
        proc.stdout,
    )


def _run_in_process(args: list[str], *, env: dict[str, str] | None, input: bytes | None, cwd: Path | None) -> Result:
    from typer.testing import CliRunner

    from imagegen_cli.cli.app import app
    from imagegen_cli.signals import StopSignal

    StopSignal.terminated = False
    previous = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        # catch_exceptions=False: a bug surfaces as the test's own traceback, never as a swallowed exit code.
        result = CliRunner().invoke(app, args, input=input, env=env, catch_exceptions=False, prog_name="imagegen")
    finally:
        os.chdir(previous)
    stdout, stderr = result.stdout_bytes, result.stderr_bytes or b""
    CAPTURED.extend([stdout, stderr])
    return Result(result.exit_code, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace"), stdout)


def config_path() -> Path:
    """The user's config file in the isolated world."""
    return Path(os.environ["XDG_CONFIG_HOME"]) / "imagegen" / "config.toml"


def write_config(text: str) -> Path:
    """Write the user's config file (creating its directory) and return its path."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


HEAVY_MODULES = ("torch", "diffusers", "transformers", "huggingface_hub", "httpx", "ray")
_IMPORT_PROBE = """
import json, sys
from typer.testing import CliRunner
from imagegen_cli.cli.app import app
outputs = []
for args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
    outputs.append(result.stdout)
heavy = sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)
print(json.dumps({"heavy": heavy, "outputs": outputs}))
"""


def rounding_apart(a: bytes, b: bytes) -> tuple[int, float]:
    """How far two 8-bit images of one size are: the largest difference of a value, and the share that differ.

    The same seed in another pipeline-call batch (or on another thread count) sums in another order: a few values
    may land one step apart. Another seed, or another prompt, changes nearly every value by much more.
    """
    assert len(a) == len(b), "the images differ in size"
    diffs = [abs(x - y) for x, y in zip(a, b, strict=True) if x != y]
    return max(diffs, default=0), len(diffs) / max(1, len(a))


def heavy_imports(*commands: list[str], modules: tuple[str, ...] = HEAVY_MODULES) -> tuple[list[str], list[str]]:
    """Run ``commands`` in order in a fresh interpreter (each must exit 0); return which of ``modules``
    they imported, and each command's stdout. Start-up cost is a feature: this is how a test guards it."""
    import json

    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, json.dumps(commands), json.dumps(modules)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    return answer["heavy"], answer["outputs"]


def gateway_env(gw: FakeGateway, *, key: bool = True) -> dict[str, str]:
    env: dict[str, str] = {}
    for name in PREFIXES:
        env[f"IMAGEGEN_{name.upper()}_BASE_URL"] = gw.base_url(name)
        if key:
            env[f"IMAGEGEN_{name.upper()}_API_KEY"] = TEST_KEY
    return env


@pytest.fixture
def cli(gateway: FakeGateway, tmp_path: Path) -> Any:
    """``cli(*args)`` runs imagegen against the fake gateway with output in tmp_path/out."""
    out = tmp_path / "out"

    def run(
        *args: str,
        env: dict[str, str] | None = None,
        key: bool = True,
        input: bytes | None = None,
        timeout: float = 60,
        out_dir: bool = True,
        process: bool = False,
    ) -> Result:
        extra = ["-o", str(out)] if out_dir and args and args[0] == "generate" and "-o" not in args else []
        return run_cli(
            *args,
            *extra,
            env={**gateway_env(gateway, key=key), **(env or {})},
            input=input,
            timeout=timeout,
            process=process,
        )

    run.out = out  # type: ignore[attr-defined]
    return run
