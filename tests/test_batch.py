"""Batch generation from a prompt file: overrides, validation, concurrency, rate limits, resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from imagegen_cli.store.journal_schema import SCHEMA_VERSION
from tests.conftest import CAPTURED, IMAGEGEN, gateway_env, run_cli
from tests.fakegateway import FakeGateway


def write(tmp_path: Path, text: str, name: str = "prompts.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_plain_and_json_lines_with_overrides(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    prompts = write(
        tmp_path,
        "\n".join(
            [
                "a red fox",
                "# a comment, then a blank line",
                "",
                json.dumps({"prompt": "a blue fox", "n": 2, "size": "512x512", "name": "blue-{index}"}),
                json.dumps(
                    {"prompt": "a koi", "model": "token360:seedream-4.5", "seed": 9, "params": {"watermark": False}}
                ),
                "a green fox",
            ]
        ),
    )
    result = cli("generate", "--prompt-file", str(prompts), "-m", "openai:dall-e-2", "--size", "256x256")
    assert result.returncode == 0, result.stderr
    names = sorted(Path(p).name for p in result.lines)
    assert len(names) == 5 and "blue-1.png" in names and "blue-2.png" in names
    openai = gateway.calls("openai")
    by_prompt = {c.body["prompt"]: c.body for c in openai}
    assert by_prompt["a red fox"]["size"] == "256x256" and by_prompt["a blue fox"]["size"] == "512x512"
    assert by_prompt["a blue fox"]["n"] == 2
    (koi,) = gateway.calls("token360")
    assert koi.body["seed"] == 9 and koi.body["watermark"] is False and koi.body["size"] == "256x256"
    # not a terminal: one stderr line per finished image, then a summary
    assert result.stderr.count(": saved ") == 5
    assert "line 4: saved" in result.stderr
    assert "batch: 4 lines · 4 succeeded · 0 failed" in result.stderr
    jobs = run_cli("tasks", "list", "--json").json()
    assert len(jobs) == 4  # each line is a job in the journal


def test_prompt_file_from_stdin_and_json_document(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "--prompt-file", "-", "-m", "openai:dall-e-2", "--json", input=b"one fox\ntwo foxes\n")
    assert result.returncode == 0, result.stderr
    doc = result.json()
    assert doc["status"] == "succeeded"
    assert [line["status"] for line in doc["lines"]] == ["succeeded", "succeeded"]
    assert sorted(i["line"] for i in doc["images"]) == [1, 2]
    assert all(Path(i["path"]).exists() for i in doc["images"])


def test_validation_errors_name_the_line_and_send_nothing(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    cases = [
        ('ok\n{"prompt": "x", "colour": "red"}\n', "line 2: unknown key 'colour'"),
        ('ok\n{"prompt": "x", "size": "800x600"}\n', "line 2: size 800x600 is not accepted by openai:dall-e-3"),
        ("ok\n\nfine\n{not json\n", "line 4: invalid JSON"),
        ('ok\n{"prompt": "x", "n": "two"}\n', 'line 2: "n" must be an integer'),
        ("# only a comment\n", "has no prompts"),
    ]
    for text, message in cases:
        result = cli("generate", "--prompt-file", str(write(tmp_path, text)), "-m", "openai:dall-e-3")
        assert result.returncode == 2, (text, result.stderr)
        assert message in result.stderr, result.stderr
    assert gateway.requests == []
    assert cli("generate", "x", "--prompt-file", "p.txt").returncode == 2
    assert cli("generate", "x", "--resume").returncode == 2


def test_concurrency_bounds_calls_in_flight(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.latency = 0.3
    prompts = write(tmp_path, "\n".join(f"fox number {i}" for i in range(12)))
    start = time.monotonic()
    result = cli(
        "generate", "--prompt-file", str(prompts), "-m", "modelmax:imagen-3", "--size", "64x64", "--concurrency", "3"
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    assert len(result.lines) == 12
    assert gateway.max_in_flight == 3
    assert elapsed >= 4 * 0.3  # 12 calls, 3 at a time


def test_rate_limits_slow_the_batch_instead_of_failing_it(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.fault(
        "generate",
        "status",
        status=429,
        headers={"Retry-After": "0.3"},
        times=6,
        body=json.dumps({"error": {"message": "Rate limit reached", "type": "rate_limit_error"}}).encode(),
    )
    prompts = write(tmp_path, "\n".join(f"fox {i}" for i in range(8)))
    result = cli("generate", "--prompt-file", str(prompts), "-m", "kkiai:flux-kontext-pro", "--concurrency", "4")
    assert result.returncode == 0, result.stderr
    assert len(result.lines) == 8
    assert len(gateway.calls("kkiai")) == 8 + 6


def test_a_failing_line_makes_the_batch_partial(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.fault("generate", "status", status=500)
    prompts = write(tmp_path, "a\nb\nc\n")
    result = cli("generate", "--prompt-file", str(prompts), "-m", "openai:dall-e-2", "--concurrency", "1", "--json")
    assert result.returncode == 3
    doc = result.json()
    assert doc["status"] == "partial"
    assert [line["status"] for line in doc["lines"]] == ["failed", "succeeded", "succeeded"]
    assert doc["errors"][0]["line"] == 1 and "HTTP 500" in doc["errors"][0]["message"]
    assert "line 1: error: openai: HTTP 500" in result.stderr


def test_killed_batch_resumes_with_exactly_one_image_per_line(gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.latency = 0.15
    out = tmp_path / "out"
    prompts = write(tmp_path, "\n".join(f"lighthouse {i:02d}" for i in range(20)))
    env = {**os.environ, **gateway_env(gateway)}
    args = [
        str(IMAGEGEN),
        "generate",
        "--prompt-file",
        str(prompts),
        "-m",
        "openai:dall-e-2",
        "--size",
        "256x256",
        "--concurrency",
        "2",
        "-o",
        str(out),
        "--name",
        "{slug}-{index}",
    ]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while len(list(out.glob("*.png"))) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=10)
    CAPTURED.extend([stdout, stderr])
    before = len(list(out.glob("*.png")))
    assert 6 <= before < 20

    resumed = run_cli(*[str(a) for a in args[1:]], "--resume", env=gateway_env(gateway))
    assert resumed.returncode == 0, resumed.stderr
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(f"lighthouse-{i:02d}-1.png" for i in range(20))  # one per line, no -2 duplicates
    assert f"{before} skipped (already saved)" in resumed.stderr
    calls = len(gateway.calls("openai"))
    again = run_cli(*[str(a) for a in args[1:]], "--resume", "--json", env=gateway_env(gateway))
    assert again.returncode == 0
    assert len(gateway.calls("openai")) == calls  # nothing sent the second time
    assert {line["status"] for line in again.json()["lines"]} == {"skipped"}


def test_resume_picks_up_pending_tasks(gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.task_polls = 10_000
    out = tmp_path / "out"
    prompts = write(tmp_path, "slow one\nslow two\n")
    args = ["generate", "--prompt-file", str(prompts), "-m", "apimart:z-image-turbo", "-o", str(out)]
    first = run_cli(*args, "--timeout", "1", env=gateway_env(gateway))
    assert first.returncode == 5
    submitted = len(gateway.calls("apimart"))
    assert submitted == 2
    for task in gateway.tasks.values():
        task.polls_left = 0
    resumed = run_cli(*args, "--resume", env=gateway_env(gateway))
    assert resumed.returncode == 0, resumed.stderr
    assert len(resumed.lines) == 2
    assert len(gateway.calls("apimart")) == submitted  # polled the old tasks, submitted nothing new


def test_journal_migrates_from_schema_1(cli, gateway: FakeGateway) -> None:
    from imagegen_cli.store.journal_schema import MIGRATIONS

    path = Path(os.environ["XDG_DATA_HOME"]) / "imagegen" / "journal.sqlite3"
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as conn:
        conn.executescript(MIGRATIONS[1])
        conn.execute("PRAGMA user_version = 1")
    assert cli("generate", "x", "-m", "openai:dall-e-2").returncode == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
        columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    assert {"batch_key", "owner"} <= columns


def test_every_bad_line_of_a_prompt_file_is_reported_then_nothing_is_sent(
    cli, gateway: FakeGateway, tmp_path: Path
) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "a good line\n"
        '{"prompt": "x", "seed": 1\n'  # invalid JSON
        '{"prompt": "y", "colour": "red"}\n'  # unknown key
        "another good line\n"
        '{"seed": 4}\n'  # no prompt
    )
    result = cli("generate", "--prompt-file", str(prompts), "-m", "apimart:z-image-turbo")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert [e.split(":")[1].strip() for e in errors] == ["line 2", "line 3", "line 5"], result.stderr
    assert result.stderr.count("hint: ") == 1 and "nothing was sent" in result.stderr
    planned = tmp_path / "q.jsonl"
    planned.write_text('{"prompt": "a", "size": "0x0"}\n{"prompt": "b"}\n{"prompt": "c", "n": 500}\n')
    result = cli("generate", "--prompt-file", str(planned), "-m", "apimart:z-image-turbo")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert [e.split(":")[1].strip() for e in errors] == ["line 1", "line 3"], result.stderr
    assert gateway.requests == []
