"""Another process holding the journal's write lock: commands answer within their own bounds, and say so."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import IMAGEGEN, gateway_env
from tests.fakegateway import FakeGateway


def journal_file() -> Path:
    return Path(os.environ["XDG_DATA_HOME"]) / "imagegen" / "journal.sqlite3"


def wait_for(predicate: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@contextmanager
def write_lock_held() -> Iterator[None]:
    """Hold the journal's write lock the way a stuck writer would (a second connection, BEGIN IMMEDIATE)."""
    conn = sqlite3.connect(journal_file(), isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def test_generate_gives_up_on_a_held_journal_within_its_timeout_and_sends_nothing(
    cli: Any, gateway: FakeGateway
) -> None:
    assert cli("tasks", "list").returncode == 0  # no journal yet: listing creates nothing
    cli("generate", "first", "-m", "openai:gpt-image-2.6-sunburst")  # the journal now exists, with one job
    assert journal_file().exists()
    sent = len(gateway.requests)
    with write_lock_held():
        result = cli("generate", "a fox", "-m", "openai:gpt-image-2.6-sunburst", "--timeout", "1")
    assert result.returncode == 5, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "another imagegen process holds the journal" in errors[0], result.stderr
    assert any(line.startswith("hint:") for line in result.stderr.splitlines()), result.stderr
    assert len(gateway.requests) == sent  # nothing billed: the journal is taken before anything is sent
    assert not list(cli.out.glob("*fox*"))


def test_tasks_list_and_show_answer_while_the_journal_is_held(cli: Any) -> None:
    job_id = cli("generate", "x", "-m", "apimart:z-image-turbo", "--no-wait").lines[0]
    with write_lock_held():
        listed = cli("tasks", "list", "--json")
        shown = cli("tasks", "show", job_id, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [job["id"] for job in listed.json()] == [job_id]
    assert shown.returncode == 0, shown.stderr
    assert shown.json()["id"] == job_id


def test_the_error_names_the_live_imagegen_that_has_jobs_open(cli: Any, gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.task_polls = 10_000  # the other run keeps polling: a live process with an open job
    env = {**os.environ, **gateway_env(gateway)}
    other = subprocess.Popen(
        [str(IMAGEGEN), "generate", "slow", "-m", "apimart:z-image-turbo", "-o", str(tmp_path / "other")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: any("/tasks/" in r.path for r in gateway.requests))
        with write_lock_held():
            result = cli("generate", "a fox", "-m", "openai:gpt-image-2.6-sunburst", "--timeout", "1")
    finally:
        other.kill()
        other.wait(timeout=30)
    assert result.returncode == 5, result.stderr
    assert f"pid {other.pid}" in result.stderr, result.stderr
