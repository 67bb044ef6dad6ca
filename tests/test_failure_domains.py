"""Each image is its own failure domain; a batch goes on; crashes and interrupts never lose a saved image.

A hostile gateway on 127.0.0.1 answers one call with several images, some of which cannot be fetched in
ways the HTTP layer does not expect (a redirect loop, a broken gzip body, a port out of range, a
malformed IPv6 host): the good images are saved, printed and in the JSON; the run exits 3.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CAPTURED, IMAGEGEN, TEST_KEY, gateway_env, run_cli, write_config
from tests.fakegateway import FakeGateway, png_bytes

Route = Callable[[BaseHTTPRequestHandler], None]


class HostileGateway:
    """An OpenAI-dialect gateway whose answers and image links are whatever a test says."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _dispatch(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                owner.requests.append(self.path)
                route = owner.routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                route(self)

            do_GET = do_POST = _dispatch

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> HostileGateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, urls: list[str] | None = None, body: bytes | None = None) -> None:
        def generate(handler: BaseHTTPRequestHandler) -> None:
            payload = body if body is not None else json.dumps({"data": [{"url": u} for u in urls or []]}).encode()
            send(handler, 200, payload, "application/json")

        self.routes["/v1/images/generations"] = generate


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str, **headers: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def hostile() -> Iterator[HostileGateway]:
    with HostileGateway() as gw:
        gw.routes["/ok.png"] = lambda h: send(h, 200, png_bytes(32, 32), "image/png")
        gw.routes["/ok2.png"] = lambda h: send(h, 200, png_bytes(32, 32, (1, 2, 3)), "image/png")
        gw.routes["/loop"] = lambda h: send(h, 302, b"", "text/plain", Location="/loop")
        gw.routes["/badgzip"] = lambda h: send(h, 200, b"\x1f\x8bnot gzip at all", "image/png", Content_Encoding="gzip")
        yield gw


def env_for(gw: HostileGateway) -> dict[str, str]:
    return {"IMAGEGEN_OPENAI_BASE_URL": f"{gw.base}/v1", "IMAGEGEN_OPENAI_API_KEY": TEST_KEY}


def test_each_image_is_its_own_failure_domain(hostile: HostileGateway, tmp_path: Path) -> None:
    b = hostile.base
    hostile.answer(
        [
            f"{b}/loop",
            f"{b}/ok.png",
            f"{b}/badgzip",
            "http://127.0.0.1:99999/x.png",
            "http://[::1/x.png",
            f"{b}/ok2.png",
        ]
    )
    result = run_cli("generate", "x", "-m", "openai:gpt-image-1.5", "-n", "6", "-o", str(tmp_path), "--json",
                     env=env_for(hostile))  # fmt: skip
    assert result.returncode == 3, result.stderr
    doc = result.json()
    assert doc["status"] == "partial"
    assert sorted(i["index"] for i in doc["images"]) == [2, 6]
    assert all(Path(i["path"]).is_file() for i in doc["images"])
    assert len(doc["errors"]) == 4
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    text = " ".join(e["message"] for e in doc["errors"])
    assert "image 1" in text and "image 3" in text and "image 4" in text and "image 5" in text


def test_json_nested_too_deep_is_one_line(hostile: HostileGateway, tmp_path: Path) -> None:
    hostile.answer(body=b"[" * 200_000 + b"]" * 200_000)
    result = run_cli("generate", "x", "-m", "openai:gpt-image-1.5", "-o", str(tmp_path), env=env_for(hostile))
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") <= 2 and "internal error" not in result.stderr


def test_a_hostile_line_does_not_stop_the_batch(hostile: HostileGateway, tmp_path: Path) -> None:
    calls = {"n": 0}

    def generate(handler: BaseHTTPRequestHandler) -> None:
        calls["n"] += 1
        url = f"{hostile.base}/loop" if calls["n"] == 2 else f"{hostile.base}/ok.png"
        send(handler, 200, json.dumps({"data": [{"url": url}]}).encode(), "application/json")

    hostile.routes["/v1/images/generations"] = generate
    prompts = tmp_path / "p.txt"
    prompts.write_text("a\nb\nc\n")
    out = tmp_path / "out"
    result = run_cli("generate", "--prompt-file", str(prompts), "-m", "openai:gpt-image-1.5", "--concurrency", "1",
                     "-o", str(out), "--json", env=env_for(hostile))  # fmt: skip
    assert result.returncode == 3, result.stderr
    doc = result.json()
    assert [line["status"] for line in doc["lines"]] == ["succeeded", "failed", "succeeded"]
    assert len(list(out.glob("*.png"))) == 2 == len(doc["images"])


def test_a_failing_journal_never_loses_the_images(cli, gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    from imagegen_cli.store.journal import Journal

    def full(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Journal, "record_image", full)
    result = cli("generate", "x", "-m", "openai:gpt-image-1.5", "-n", "3", "--json")
    assert result.returncode == 0, result.stderr
    doc = result.json()
    assert len(doc["images"]) == 3 and all(Path(i["path"]).is_file() for i in doc["images"])
    assert any("journal could not be updated" in note for note in doc["notes"])


@pytest.mark.parametrize("model", ["openai:gpt-image-1.5", "apimart:z-image-turbo"])
def test_a_resume_after_the_journal_failed_sees_the_saved_files_and_bills_nothing_again(
    cli, gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model: str
) -> None:
    """Disk full for the journal mid-run: the images are saved; --resume and tasks wait adopt them from disk."""
    from imagegen_cli.store.journal import Journal

    def full(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    prompts = tmp_path / "p.txt"
    prompts.write_text("a lighthouse\na koi\n")
    args = ["generate", "--prompt-file", str(prompts), "-m", model, "-n", "2", "--json"]
    with monkeypatch.context() as patch:
        patch.setattr(Journal, "record_image", full)
        first = cli(*args)
    assert first.returncode == 0, first.stderr
    assert len(first.json()["images"]) == 4
    billed = len(gateway.calls())
    listed = cli("tasks", "list", "--json").json()
    assert all(job["images"] == [] for job in listed)  # the journal never heard of the files
    again = cli(*args, "--resume")
    assert again.returncode == 0, again.stderr
    assert len(gateway.calls()) == billed  # nothing made (nor billed) twice
    assert sorted(i["path"] for i in again.json()["images"]) == sorted(i["path"] for i in first.json()["images"])
    assert len(list(cli.out.iterdir())) == 4
    jobs = cli("tasks", "list", "--json").json()
    assert [len(job["images"]) for job in jobs] == [2, 2] and {job["status"] for job in jobs} == {"succeeded"}


def test_too_many_task_ids_are_cut_to_what_was_asked(cli, gateway: FakeGateway) -> None:
    gateway.fault("generate", "many_ids", count=50)
    result = cli("generate", "x", "-m", "apimart:z-image-turbo", "--json")
    assert result.returncode == 0, result.stderr
    doc = result.json()
    assert len(doc["images"]) == 1 and len(doc["tasks"]) == 1
    assert any("answered 50 task ids for 1 image" in note for note in doc["notes"])


def test_invalid_utf8_prompt_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("generate", "-", "-m", "openai:gpt-image-1.5", "--dry-run", input=b"caf\xe9\n")
    assert result.returncode == 2 and "not valid UTF-8" in result.stderr
    prompts = tmp_path / "p.txt"
    prompts.write_bytes(b"\xef\xbb\xbfa fox\nb\n")
    dry = run_cli("generate", "--prompt-file", str(prompts), "-m", "openai:gpt-image-1.5", "--dry-run", "--json")
    assert dry.json()["lines"][0]["calls"][0]["body"]["prompt"] == "a fox"  # the BOM is not part of line 1


def test_closing_stdout_early_exits_quietly(gateway: FakeGateway, tmp_path: Path) -> None:
    env = {**os.environ, **gateway_env(gateway)}
    proc = subprocess.run(
        ["bash", "-c", f"'{IMAGEGEN}' generate x -m openai:gpt-image-1.5 -n 4 -o '{tmp_path}' | head -c0; "
         'echo "status ${PIPESTATUS[0]}"'],
        env=env,
        capture_output=True,
        check=False,
    )  # fmt: skip
    CAPTURED.extend([proc.stdout, proc.stderr])
    assert proc.stdout.strip() == b"status 141"  # the reader left before the paths came: quiet, like SIGPIPE
    assert b"internal error" not in proc.stderr and b"Traceback" not in proc.stderr
    assert b"BrokenPipe" not in proc.stderr and b"Exception ignored" not in proc.stderr


# ---------------------------------------------------------------- interrupts and crashes
def interrupt(args: list[str], env: dict[str, str], ready: Any, sig: int, **popen: Any) -> tuple[int, Any, str]:
    """Start imagegen, wait until ``ready()`` (20 s at most), send ``sig``; (exit code, JSON document, stderr).

    The process is killed if it outlives the test, so a regression cannot leave it spinning behind the suite.
    """
    proc = subprocess.Popen([str(IMAGEGEN), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)
    try:
        deadline = time.monotonic() + 20
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    CAPTURED.extend([stdout, stderr])
    return proc.returncode, json.loads(stdout), stderr.decode()


def _journal() -> Path:
    return Path(os.environ["XDG_DATA_HOME"]) / "imagegen" / "journal.sqlite3"


def test_interrupt_with_a_finished_task_not_yet_downloaded_is_pending(gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.task_outcome = "completed"
    gateway.fault("image", "slow_body", delay=30)
    env = {**os.environ, **gateway_env(gateway)}
    args = ["generate", "x", "-m", "apimart:z-image-turbo", "-o", str(tmp_path), "--json"]
    code, doc, stderr = interrupt(args, env, lambda: gateway.image_requests, signal.SIGTERM)
    assert code == 143, stderr
    assert doc["status"] == "submitted" and doc["tasks"][0]["status"] == "succeeded"
    assert f"imagegen tasks wait {doc['job']}" in stderr
    assert "terminated: 0 of 1 image(s) saved" in stderr
    waited = run_cli("tasks", "wait", doc["job"], "--json", env=gateway_env(gateway))
    assert waited.returncode == 0 and len(waited.json()["images"]) == 1


def test_a_file_placed_before_a_crash_is_adopted_not_made_twice(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    """SIGKILL between placing the file and journalling it: the claim names the file, resume adopts it."""
    from imagegen_cli.store.job_rows import Claim
    from imagegen_cli.store.journal import Journal
    from imagegen_cli.store.placement import file_identity

    out = tmp_path / "out"
    done = cli("generate", "x", "-m", "apimart:z-image-turbo", "-n", "2", "--json")
    job = done.json()["job"]
    placed = Path(done.json()["images"][1]["path"])
    # Rewind image 2 to what a killed process leaves: a 'saving' claim by a dead process, naming the placed file
    # (and which file it is: only that very file is adopted, tests/test_shared_output.py).
    with sqlite3.connect(_journal()) as conn:
        conn.execute(
            "UPDATE job_images SET state = 'saving', claimed_by = 999999, claimed_start = 1, claimed_owner = NULL,"
            " target_id = ? WHERE job_id = ? AND image_index = 2",
            (file_identity(placed.stat()), job),
        )
        conn.execute("UPDATE jobs SET status = 'running' WHERE id = ?", (job,))
    with Journal.open() as journal:
        assert journal.claim_image(job, 2) == Claim.SAVED
    before = sorted(p.name for p in out.iterdir())
    waited = run_cli("tasks", "wait", job, "--json", env=gateway_env(gateway))
    assert waited.returncode == 0, waited.stderr
    assert sorted(p.name for p in out.iterdir()) == before  # no "-2" duplicate
    assert placed.is_file() and len(waited.json()["images"]) == 2


_KILLED_AFTER_JOURNALLING_A_TAKEN_NAME = """
import os, signal, sys
from imagegen_cli.store.journal import Journal
journalled = Journal.claim_target
def claim_target(self, job_id, index, path):
    journalled(self, job_id, index, path)
    if os.path.lexists(path):  # SIGKILL before link() finds the name taken
        os.kill(os.getpid(), signal.SIGKILL)
Journal.claim_target = claim_target
from imagegen_cli.cli.app import main
sys.argv[0] = "imagegen"
main()
"""


def test_a_taken_name_is_never_journalled_so_a_crash_cannot_adopt_another_file(
    gateway: FakeGateway, tmp_path: Path
) -> None:
    """A file that was there before is never the image: no claim names it, so no resume adopts it."""
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"someone else's file")
    killer = [sys.executable, "-c", _KILLED_AFTER_JOURNALLING_A_TAKEN_NAME]
    args = ["generate", "x", "-m", "apimart:z-image-turbo", "-o", str(tmp_path), "--name", "taken.png"]
    env = {**os.environ, **gateway_env(gateway)}
    run = subprocess.run([*killer, *args], env=env, capture_output=True, check=False, timeout=60)
    (job,) = run_cli("tasks", "list", "--json").json()
    waited = run_cli("tasks", "wait", job["id"], "--json", env=gateway_env(gateway))  # the resume, had it died
    assert [image["path"] for image in waited.json()["images"]] == [str(tmp_path / "taken-2.png")], waited.stderr
    assert (run.returncode, waited.returncode) == (0, 0), run.stderr
    assert taken.read_bytes() == b"someone else's file"


def test_a_claim_of_a_reused_pid_does_not_block(cli, gateway: FakeGateway) -> None:
    from imagegen_cli.store.job_rows import Claim
    from imagegen_cli.store.journal import Journal

    gateway.fault("generate", "never")
    job = cli("generate", "x", "-m", "apimart:z-image-turbo", "--no-wait", "--json").json()["job"]
    with Journal.open() as journal:
        assert journal.claim_image(job, 1) == Claim.CLAIMED
    # The claim now names a live pid (ours) but another start time: that process is gone, the pid reused. (A row
    # of an older version, without an owner lock: the pid decides.)
    with sqlite3.connect(_journal()) as conn:
        conn.execute(
            "UPDATE job_images SET claimed_by = ?, claimed_start = 1, claimed_owner = NULL WHERE job_id = ?",
            (os.getpid(), job),
        )
    with Journal.open() as journal:
        assert journal.claimed_by(job, 1) is None
        assert journal.claim_image(job, 1) == Claim.CLAIMED


def test_a_waiter_waits_for_the_process_saving_an_image(cli, gateway: FakeGateway) -> None:
    """While another live process holds the claim, tasks wait says so and ends pending (5), not failed."""
    from imagegen_cli.store.job_rows import MY_START
    from imagegen_cli.store.journal import Journal

    job = cli("generate", "x", "-m", "apimart:z-image-turbo", "--no-wait", "--json").json()["job"]
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        from imagegen_cli.store.job_rows import process_start

        start = process_start(sleeper.pid) if MY_START is not None else None
        with Journal.open() as journal:
            journal.claim_image(job, 1)
        with sqlite3.connect(_journal()) as conn:
            conn.execute("UPDATE job_images SET claimed_by = ?, claimed_start = ?, claimed_owner = NULL"
                         " WHERE job_id = ?", (sleeper.pid, start, job))  # fmt: skip
        waited = run_cli("tasks", "wait", job, "--timeout", "1", "--json", env=gateway_env(gateway))
    finally:
        sleeper.kill()
        sleeper.wait()
    assert waited.returncode == 5, waited.stderr
    assert f"being saved by another imagegen process (pid {sleeper.pid})" in waited.stderr


def test_prune_forgets_a_killed_synchronous_job(cli, gateway: FakeGateway) -> None:
    cli("generate", "x", "-m", "openai:gpt-image-1.5")
    with sqlite3.connect(_journal()) as conn:
        conn.execute("UPDATE jobs SET status = 'running', pid = 999999, pid_start = 1")
    (listed,) = run_cli("tasks", "list", "--json").json()
    assert listed["status"] == "succeeded"
    with sqlite3.connect(_journal()) as conn:
        conn.execute("DELETE FROM job_images")
    (listed,) = run_cli("tasks", "list", "--json").json()
    assert listed["status"] == "failed"
    assert run_cli("tasks", "prune", "--older-than", "0s").stdout.strip() == "removed 1 job(s)"


def test_journal_is_private(cli, gateway: FakeGateway) -> None:
    old = os.umask(0)
    try:
        cli("generate", "x", "-m", "openai:gpt-image-1.5")
    finally:
        os.umask(old)
    path = _journal()
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_resume_with_gaps_makes_only_the_missing_images(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("a koi\n")
    args = ("generate", "--prompt-file", str(prompts), "-m", "token360:seedream-4.5", "-n", "4", "--seed", "10",
            "--size", "1024x1024")  # fmt: skip
    first = cli(*args, "--json").json()
    for image in first["images"]:
        if image["index"] in (1, 3):
            Path(image["path"]).unlink()
    before = len(gateway.calls("token360"))
    resumed = cli(*args, "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    sent = gateway.calls("token360")[before:]
    assert sorted(c.body["seed"] for c in sent) == [10, 12]  # images 1 and 3 only, each with its own seed


# ---------------------------------------------------------------- a new user's findings (issue 12)
def test_disk_full_during_local_generation_is_a_save_error_and_keeps_what_was_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from imagegen_cli.store.writer import ImageWriter

    original = ImageWriter.save_pil
    saved: list[int] = []

    def fill_up(self: ImageWriter, img: Any, **kwargs: Any) -> Any:
        if len(saved) >= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        saved.append(kwargs["index"])
        return original(self, img, **kwargs)

    monkeypatch.setattr(ImageWriter, "save_pil", fill_up)
    result = run_cli("generate", "x", "-m", "local:tiny", "-n", "6", "--seed", "1", "-o", str(tmp_path), "--json")
    assert result.returncode == 3, result.stderr
    doc = result.json()
    assert doc["status"] == "partial" and len(doc["images"]) == 3
    assert {e["code"] for e in doc["errors"]} == {"save"}
    assert "No space left on device" in result.stderr and "hint: check free space" in result.stderr
    assert "internal error" not in result.stderr


def test_stdout_output_is_refused_on_a_terminal_and_with_json(
    gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = gateway_env(gateway)
    both = run_cli("generate", "x", "-m", "openai:gpt-image-1.5", "-o", "-", "--json", env=env)
    assert both.returncode == 2 and "where --json would go" in both.stderr
    import sys

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    from imagegen_cli.cli import generate as generate_module

    class TTY:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(generate_module, "sys", type("S", (), {"stdout": TTY(), "stdin": sys.stdin}))
    tty = run_cli("generate", "x", "-m", "openai:gpt-image-1.5", "-o", "-", env=env)
    assert tty.returncode == 2 and "binary image data to the terminal" in tty.stderr
    assert gateway.calls() == []


def test_an_interrupted_batch_counts_lines_never_started_apart(gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.fault("generate", "never", times=99)
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"line {i}\n" for i in range(6)))
    env = {**os.environ, **gateway_env(gateway)}
    args = ["generate", "--prompt-file", str(prompts), "-m", "apimart:z-image-turbo", "--concurrency", "1", "-o",
            str(tmp_path / "out"), "--json"]  # fmt: skip
    ready = lambda: gateway.calls("apimart", route="images/generations")  # noqa: E731
    code, doc, stderr = interrupt(args, env, ready, signal.SIGINT)
    assert code == 130, stderr
    summary = doc["summary"]
    assert summary["not_started"] >= 3 and summary["failed"] == 0
    assert any(e["code"] == "interrupted" for e in doc["errors"])
    assert "interrupted: 0 of 1 image(s) saved" in stderr
    assert "not started" in stderr


def test_every_image_is_journalled_when_many_land_at_once(cli, gateway: FakeGateway) -> None:
    """Files are named in the journal from the writer's threads while the loop records others: no interleaving."""
    for _ in range(3):
        result = cli("generate", "x", "-m", "token360:seedream-4.5", "-n", "10", "--seed", "1", "--json")
        assert result.returncode == 0, result.stderr
        doc = result.json()
        assert not any("journal" in note for note in doc["notes"]), doc["notes"]
        with sqlite3.connect(_journal()) as conn:
            states = conn.execute("SELECT state FROM job_images WHERE job_id = ?", (doc["job"],)).fetchall()
        assert [s for (s,) in states] == ["saved"] * 10


def test_a_key_echoed_as_a_task_id_is_never_stored_or_printed(cli, gateway: FakeGateway) -> None:
    gateway.fault("generate", "task_id", body=TEST_KEY.encode())
    submitted = cli("generate", "x", "-m", "apimart:z-image-turbo", "--no-wait", "--json")
    assert submitted.returncode == 0, submitted.stderr
    (task,) = submitted.json()["tasks"]
    assert task["remote_id"] == "***"
    shown = run_cli("tasks", "show", submitted.json()["job"], "--json")
    assert shown.json()["tasks"][0]["remote_id"] == "***"
    # The journal file itself holds no key either: the autouse leak check reads every file under the test's
    # home, the journal included.
    assert TEST_KEY.encode() not in _journal().read_bytes()


# ---------------------------------------------------------------- found by review
def test_a_task_answering_fewer_images_than_asked_is_partial_not_pending(cli, gateway: FakeGateway) -> None:
    result = cli("generate", "x", "-m", "apimart:gpt-4o-image", "-n", "2", "--json")  # one task, one image back
    assert result.returncode == 3, result.stderr
    doc = result.json()
    assert doc["status"] == "partial" and doc["tasks"][0]["status"] == "failed"
    assert "asked for 2 image(s), got 1" in result.stderr
    polls = len([r for r in gateway.requests if "/tasks/" in r.path])
    waited = run_cli("tasks", "wait", doc["job"], "--json", env=gateway_env(gateway))
    assert waited.returncode == 3 and len(waited.json()["images"]) == 1
    assert len([r for r in gateway.requests if "/tasks/" in r.path]) == polls  # nothing left to poll


def _custom_tasks_config(gateway: FakeGateway) -> Path:
    return write_config(f'[providers.customtasks]\nbase_url = "{gateway.base_url("customtasks")}"\ndialect = "tasks"\n')


def test_one_job_that_cannot_resume_does_not_hide_the_others(gateway: FakeGateway, tmp_path: Path) -> None:
    env = gateway_env(gateway)
    config = _custom_tasks_config(gateway)
    gateway.fault("generate", "never")
    orphan = run_cli("generate", "x", "-m", "customtasks:m", "--no-wait", "-o", str(tmp_path), env=env).lines[0]
    fine = run_cli("generate", "y", "-m", "apimart:z-image-turbo", "--no-wait", "-o", str(tmp_path), env=env).lines[0]
    config.unlink()  # the orphan's provider is gone
    waited = run_cli("tasks", "wait", fine, orphan, env=env)
    assert waited.returncode == 3, waited.stderr
    assert len(waited.lines) == 1 and Path(waited.lines[0]).is_file()  # the other job's image, saved and printed
    assert "customtasks" in waited.stderr and "no longer configured" in waited.stderr
    cancelled = run_cli("tasks", "cancel", orphan, env=env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert run_cli("tasks", "show", orphan, "--json").json()["status"] == "cancelled"


def test_no_wait_prints_the_job_id_even_when_one_call_failed(gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.fault("generate", "status", status=500)
    result = run_cli("generate", "x", "-m", "apimart:z-image-turbo", "-n", "2", "--no-wait", "-o", str(tmp_path),
                     env=gateway_env(gateway))  # fmt: skip
    assert result.returncode == 5, result.stderr
    (job,) = result.lines
    assert f"imagegen tasks wait {job}" in result.stderr and "HTTP 500" in result.stderr


def test_a_queued_batch_line_does_not_spend_its_timeout_waiting_for_a_slot(
    cli, gateway: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each line's --timeout counts from its first call slot, not from when the line was planned and queued.

    Structural, not timed: every deadline is made as if its line had already queued for 1000 s (far beyond its
    --timeout 60). Counted from creation every line would fail at once; counted from the first slot all succeed.
    """
    from imagegen_cli.providers import transport

    made = transport.Deadline.__post_init__
    restarts: list[float] = []

    def made_long_ago(self: transport.Deadline) -> None:
        made(self)
        self.start -= 1000.0

    restart = transport.Deadline.restart

    def restart_counted(self: transport.Deadline) -> None:
        restarts.append(self.start)
        restart(self)

    monkeypatch.setattr(transport.Deadline, "__post_init__", made_long_ago)
    monkeypatch.setattr(transport.Deadline, "restart", restart_counted)
    gateway.task_polls = 3
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"line {i}\n" for i in range(4)))
    result = cli("generate", "--prompt-file", str(prompts), "-m", "apimart:z-image-turbo", "--concurrency", "1",
                 "--timeout", "60", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.json()["summary"]["succeeded"] == 4
    assert len(restarts) == 4  # each line's clock started once, at its first slot


def test_the_api_uses_the_configured_timeout(gateway: FakeGateway) -> None:
    from imagegen_cli.options import RunOptions

    write_config("timeout = 7\n")
    from imagegen_cli.settings import load_settings

    assert RunOptions().timeout is None and load_settings().timeout == 7


def test_config_set_keeps_text_values_as_typed() -> None:
    assert run_cli("config", "set", "output_dir", "2024").returncode == 0
    assert run_cli("config", "get", "output_dir").stdout.strip() == "2024"
    bad = run_cli("config", "set", "name_template", "{nope}.png")
    assert bad.returncode == 2 and "invalid name_template" in bad.stderr and "unknown field {nope}" in bad.stderr


def test_sigterm_stops_a_run_started_with_ctrl_c_ignored(gateway: FakeGateway, tmp_path: Path) -> None:
    """`imagegen ... &` in a script ignores SIGINT (the shell's rule for background jobs): `kill` still works."""
    gateway.fault("generate", "never")
    env = {**os.environ, **gateway_env(gateway)}
    args = ["generate", "x", "-m", "apimart:z-image-turbo", "-o", str(tmp_path), "--json"]
    ready = lambda: any("/tasks/" in r.path for r in gateway.requests)  # noqa: E731
    ignore_ctrl_c = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731
    code, doc, stderr = interrupt(args, env, ready, signal.SIGTERM, preexec_fn=ignore_ctrl_c)
    assert code == 143, stderr
    assert doc["status"] == "submitted" and f"imagegen tasks wait {doc['job']}" in stderr


def test_processes_opening_a_new_journal_at_once_all_succeed(tmp_path: Path) -> None:
    """Switching a fresh journal to WAL takes a lock SQLite's busy timeout does not wait for: opening retries."""
    code = (
        "import sys\nfrom pathlib import Path\nfrom imagegen_cli.store.journal import Journal\n"
        "for _ in range(5):\n"
        "    path = Path(sys.argv[1]) / f'j{_}.sqlite3'\n"
        "    with Journal.open(path) as j:\n"
        "        j.create_job(provider='p', model='m', dialect='openai', base_url='u', request={}, calls=[], n=1,"
        " out_dir='.', output={})\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stderr=subprocess.PIPE) for _ in range(6)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors


def test_an_output_folder_moved_during_a_download_keeps_the_image(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    """The folder is renamed while the image is half downloaded: the image is still saved, where the run said."""
    from PIL import Image

    gate = threading.Event()
    gateway.fault("image", "slow_body", gate=gate)
    out, moved = tmp_path / "out", tmp_path / "moved"
    out.mkdir()

    def move_when_half_downloaded() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(out.glob(".*.part")):
                out.rename(moved)
                break
            time.sleep(0.01)
        gate.set()

    mover = threading.Thread(target=move_when_half_downloaded)
    mover.start()
    result = cli("generate", "x", "-m", "apimart:z-image-turbo", "--json")
    mover.join()
    assert moved.exists(), "the test never saw the download start"
    assert result.returncode == 0, result.stderr
    [image] = result.json()["images"]
    path = Path(image["path"])
    assert path.parent == out and path.exists()
    with Image.open(path) as img:
        img.load()
    assert "moved" in result.stderr  # said once, in a note
    assert not list(moved.glob(".*.part")) and not list(out.glob(".*.part"))


def test_deep_json_is_refused_before_the_decoder_recurses(monkeypatch: pytest.MonkeyPatch) -> None:
    # Was 1 failure in 7 suite runs: the C decoder recursed to the interpreter's limit, a garbage collection fired
    # down there, and an unrelated finalizer (no stack left) failed into sys.unraisablehook. Here a collection is
    # forced at each depth up to the limit, with finalizers waiting: none may fail.
    import gc

    from imagegen_cli.jsontypes import TooDeep, loads

    failed: list[str] = []

    def hook(unraisable: Any) -> None:
        failed.append(type(unraisable.exc_value).__name__)

    monkeypatch.setattr(sys, "unraisablehook", hook)

    class Finalized:
        def __del__(self) -> None:
            [n + 1 for n in range(2)]  # a Python frame, as any real finalizer has

    limit = sys.getrecursionlimit()
    threshold = gc.get_threshold()
    try:
        for extra in range(limit - 300, limit + 5):
            gc.collect()
            gc.set_threshold(10**6)
            for _ in range(20):
                cycle = Finalized()
                cycle.self = cycle  # type: ignore[attr-defined]
            del cycle
            gc.set_threshold(gc.get_count()[0] + extra)  # the next collection comes ``extra`` lists deep
            with pytest.raises(TooDeep):
                loads("[" * 20_000 + "]" * 20_000)
            gc.set_threshold(*threshold)
    finally:
        gc.set_threshold(*threshold)
        gc.collect()
    assert failed == []
    assert loads('{"a": [1, {"b": "[[[[[[[["}]}', max_depth=3) == {"a": [1, {"b": "[[[[[[[["}]}
    with pytest.raises(TooDeep):
        loads("[[[[1]]]]", max_depth=3)
