"""Runs that share an output folder or a journal: nothing is decided from a file's name or a bare pid.

A killed run's claim names the file it was about to create; a resume adopts the file under that name only
if it is the very file the run placed (the same inode, size and modification time), never another job's
file that took the name since. A run in another PID namespace (another container sharing the folder or
the journal) is known to be alive by the locks it holds, not by its pid, which means nothing here.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import imagegen_cli.store.placement as placement
from imagegen_cli.meta import ImageMeta
from imagegen_cli.store.job_rows import Claim
from imagegen_cli.store.journal import Journal
from imagegen_cli.store.placement import remove_stale_parts
from tests.conftest import gateway_env, run_cli
from tests.fakegateway import FakeGateway, png_bytes
from tests.test_writer import META, make_writer

MODEL = "apimart:z-image-turbo"  # a task gateway: `tasks wait` can fetch a finished image again

# The journal hears the name, then the process dies before link(): what a SIGKILL in that window leaves.
_KILLED_BEFORE_LINK = """
import os, signal, sys
from imagegen_cli.store.journal import Journal
journalled = Journal.claim_target
def claim_target(self, *args, **kwargs):
    journalled(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
Journal.claim_target = claim_target
from imagegen_cli.cli.app import main
sys.argv[0] = "imagegen"
main()
"""

# The file is linked into place, then the process dies before the journal hears it was saved.
_KILLED_AFTER_LINK = """
import os, signal, sys
link = os.link
def link_then_die(source, target, *args, **kwargs):
    link(source, target, *args, **kwargs)
    if not os.path.basename(target).startswith("."):
        os.kill(os.getpid(), signal.SIGKILL)
os.link = link_then_die
from imagegen_cli.cli.app import main
sys.argv[0] = "imagegen"
main()
"""


def _killed(script: str, gateway: FakeGateway, *args: str) -> str:
    """Run ``generate`` in a process that SIGKILLs itself at the scripted point; the job id it left."""
    env = {**os.environ, **gateway_env(gateway)}
    run = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, check=False, timeout=60)
    assert run.returncode == -signal.SIGKILL, run.stderr
    (job,) = run_cli("tasks", "list", "--json").json()
    return str(job["id"])


def _journal_file() -> Path:
    return Path(os.environ["XDG_DATA_HOME"]) / "imagegen" / "journal.sqlite3"


# ------------------------------------------------------------------ 8: adopting only the file placed
def test_a_name_taken_by_another_job_after_a_crash_is_never_adopted(gateway: FakeGateway, tmp_path: Path) -> None:
    """Killed between journalling its name and link(); another job then links its own image there."""
    out = tmp_path / "out"
    job = _killed(_KILLED_BEFORE_LINK, gateway, "generate", "x", "-m", MODEL, "-o", str(out), "--name", "img.png")
    assert not (out / "img.png").exists()
    other = run_cli("generate", "y", "-m", MODEL, "-o", str(out), "--name", "img.png", env=gateway_env(gateway))
    assert other.lines == [str(out / "img.png")], other.stderr
    theirs = (out / "img.png").read_bytes()

    waited = run_cli("tasks", "wait", job, "--json", env=gateway_env(gateway))
    assert waited.returncode == 0, waited.stderr
    # Made again under a free name; the other job's file is neither adopted nor touched.
    assert [image["path"] for image in waited.json()["images"]] == [str(out / "img-2.png")]
    assert (out / "img.png").read_bytes() == theirs
    assert sorted(p.name for p in out.iterdir()) == ["img-2.png", "img.png"]
    with Journal.open() as journal:
        assert [i.path for i in journal.get(job).saved] == [str(out / "img-2.png")]


def test_the_file_a_killed_run_placed_is_adopted_once(gateway: FakeGateway, tmp_path: Path) -> None:
    """Killed right after link(), before the journal heard: the claim's file is that very file, adopted."""
    out = tmp_path / "out"
    job = _killed(_KILLED_AFTER_LINK, gateway, "generate", "x", "-m", MODEL, "-o", str(out), "--name", "img.png")
    placed = (out / "img.png").read_bytes()
    waited = run_cli("tasks", "wait", job, "--json", env=gateway_env(gateway))
    assert waited.returncode == 0, waited.stderr
    assert [image["path"] for image in waited.json()["images"]] == [str(out / "img.png")]
    assert [p.name for p in out.iterdir()] == ["img.png"]  # no duplicate, and the killed run's .part swept
    assert (out / "img.png").read_bytes() == placed


def test_a_claim_without_the_files_identity_adopts_nothing(cli, gateway: FakeGateway, tmp_path: Path) -> None:
    """A claim naming a file but not which file (written by an older version): the image is made again."""
    gateway.fault("generate", "never")
    job = cli("generate", "x", "-m", MODEL, "--no-wait", "--json").json()["job"]
    squatter = tmp_path / "out" / "someone-elses.png"
    squatter.parent.mkdir(exist_ok=True)
    squatter.write_bytes(png_bytes(8, 8))
    with Journal.open() as journal:
        assert journal.claim_image(job, 1) == Claim.CLAIMED
        journal.claim_target(job, 1, str(squatter))  # a plain name: no identity
    with sqlite3.connect(_journal_file()) as conn:
        conn.execute("UPDATE job_images SET claimed_by = 999999, claimed_start = 1, claimed_owner = NULL")
    with Journal.open() as journal:
        assert journal.claim_image(job, 1) == Claim.CLAIMED
        assert journal.get(job).saved == []


# ------------------------------------------------------------------ 9: liveness that crosses namespaces
@pytest.fixture
def ghost_pid() -> int:
    """A pid no process has here: what a live run's pid in another PID namespace looks like from this one."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sweep as a process in another PID namespace would: no pid named in a file is alive there."""
    monkeypatch.setattr(placement, "pid_alive_here", lambda pid: False)


def test_a_part_locked_by_a_run_in_another_namespace_is_kept(tmp_path: Path, ghost_pid: int) -> None:
    out = tmp_path / "out"
    out.mkdir()
    live = out / f".imagegen-{ghost_pid}-live.part"
    dead = out / f".imagegen-{ghost_pid}-dead.part"
    for path in (live, dead):
        path.write_bytes(b"partial")
    fd = os.open(live, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as its writer holds it, whatever namespace that writer runs in
        assert remove_stale_parts(out) == [dead]
        assert live.read_bytes() == b"partial"
    finally:
        os.close(fd)
    assert remove_stale_parts(out) == [live]  # its owner let go: gone like any other


def test_the_writer_holds_its_part_until_the_image_is_placed(tmp_path: Path, elsewhere: None) -> None:
    """From creation to placement, including after the download handle is closed, a sweep elsewhere keeps it."""
    out = tmp_path / "out"
    writer = make_writer(out)
    handle, part = writer.temp_file()
    with handle:
        handle.write(png_bytes(16, 16))
        assert remove_stale_parts(out) == []
    assert remove_stale_parts(out) == []  # closed, waiting for finish(): still the writer's
    saved = writer.finish(part, index=1, seed=1, meta=ImageMeta.from_record(META))
    assert [p.name for p in out.iterdir()] == [Path(saved.path).name]
    assert writer.parts.count() == 0


def test_a_part_its_caller_removed_is_let_go(tmp_path: Path) -> None:
    """A download that failed is unlinked by its caller: the writer's lock on it goes with the next part."""
    writer = make_writer(tmp_path / "out")
    handle, part = writer.temp_file()
    handle.close()
    part.unlink()
    handle, part = writer.temp_file()
    handle.close()
    assert writer.parts.count() == 1
    part.write_bytes(png_bytes(8, 8))
    writer.finish(part, index=1, seed=1, meta=ImageMeta.from_record(META))
    assert writer.parts.count() == 0


def test_an_unlocked_part_of_a_dead_owner_still_goes_at_once(tmp_path: Path, ghost_pid: int) -> None:
    out = tmp_path / "out"
    out.mkdir()
    part = out / f".imagegen-{ghost_pid}-abc.part"
    part.write_bytes(b"partial")
    assert remove_stale_parts(out) == [part]


UNSHARE = shutil.which("unshare")


def _in_new_pid_namespace(code: str) -> subprocess.CompletedProcess[str]:
    """Run Python in a fresh user and PID namespace (as root there, mapped to this user): a container."""
    assert UNSHARE is not None
    command = [UNSHARE, "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", sys.executable, "-c", code]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)


@pytest.fixture
def namespaces() -> Iterator[None]:
    if UNSHARE is None or _in_new_pid_namespace("pass").returncode != 0:
        pytest.skip("unprivileged user and PID namespaces are not available here")
    yield


def test_a_sweep_from_another_container_keeps_a_live_runs_part(tmp_path: Path, namespaces: None) -> None:
    out = tmp_path / "out"
    writer = make_writer(out)
    handle, part = writer.temp_file()
    handle.close()
    sweep = (
        "from pathlib import Path; from imagegen_cli.store.placement import remove_stale_parts as sweep; "
        f"print(sweep(Path({str(out)!r})))"
    )
    swept = _in_new_pid_namespace(sweep)
    assert swept.returncode == 0, swept.stderr
    assert swept.stdout.strip() == "[]" and part.exists()
    part.unlink()


# ------------------------------------------------------------------ 9: the journal's claims and jobs
def _hold_owner(journal: Journal, token: str) -> int:
    """Hold the owner lock of another process (``token``): as that process would, from anywhere."""
    path = journal.owner.directory / token
    path.parent.mkdir(exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


OTHER = "0123456789abcdef0123456789abcdef"


def test_a_claim_held_by_a_process_in_another_namespace_is_busy(cli, gateway: FakeGateway) -> None:
    gateway.fault("generate", "never")
    job = cli("generate", "x", "-m", MODEL, "--no-wait", "--json").json()["job"]
    with Journal.open() as journal:
        assert journal.claim_image(job, 1) == Claim.CLAIMED
        fd = _hold_owner(journal, OTHER)
        # Its pid means nothing here (another PID namespace); its lock says it is alive.
        journal.conn.execute(
            "UPDATE job_images SET claimed_by = 999999, claimed_start = 1, claimed_owner = ? WHERE job_id = ?",
            (OTHER, job),
        )
        try:
            assert journal.claimed_by(job, 1) == 999999
            assert journal.claim_image(job, 1) == Claim.BUSY
        finally:
            os.close(fd)
        assert journal.claimed_by(job, 1) is None  # the lock went with its process: the claim is free
        assert journal.claim_image(job, 1) == Claim.CLAIMED


def test_a_job_running_in_another_namespace_is_not_reported_dead_or_pruned(cli, gateway: FakeGateway) -> None:
    job = cli("generate", "x", "-m", "openai:gpt-image-1.5", "--json").json()["job"]
    with Journal.open() as journal:
        fd = _hold_owner(journal, OTHER)
        journal.conn.execute(
            "UPDATE jobs SET status = 'running', pid = 999999, pid_start = 1, owner = ?, created_at = 0 WHERE id = ?",
            (OTHER, job),
        )
        try:
            assert journal.get(job).status == "running"
            assert journal.prune(older_than=1) == 0
        finally:
            os.close(fd)
        assert journal.get(job).status == "succeeded"  # its process ended: what the rows say now
        assert journal.prune(older_than=1) == 1


def test_a_claim_from_another_container_is_busy_there(cli, gateway: FakeGateway, namespaces: None) -> None:
    """This process claims image 1; a process in a new PID namespace, sharing the journal, must not take it."""
    gateway.fault("generate", "never")
    job = cli("generate", "x", "-m", MODEL, "--no-wait", "--json").json()["job"]
    code = (
        "from pathlib import Path; from imagegen_cli.store.journal import Journal; "
        f"j = Journal.open(Path({str(_journal_file())!r})); print(j.claim_image({job!r}, 1))"
    )
    with Journal.open() as journal:  # open for as long as this process saves, as a run keeps it
        assert journal.claim_image(job, 1) == Claim.CLAIMED
        other = _in_new_pid_namespace(code)
        assert other.returncode == 0, other.stderr
        assert other.stdout.strip() == Claim.BUSY
    other = _in_new_pid_namespace(code)  # this process let go (a run that ended): the claim is free
    assert other.stdout.strip() == Claim.CLAIMED, other.stderr


def test_owner_files_go_with_their_owners(tmp_path: Path) -> None:
    """This process's lock file lives while its journal is open; one a killed process left is swept."""
    with Journal.open(tmp_path / "journal.sqlite3") as journal:
        journal.owner.directory.mkdir()
        (journal.owner.directory / OTHER).touch()  # killed: nobody holds its lock
        journal.create_job(
            provider="p", model="m", dialect="d", base_url="http://127.0.0.1", request={}, calls=[], n=1,
            out_dir=str(tmp_path), output={},
        )  # fmt: skip
        mine = journal.owner.token
        assert mine is not None and [p.name for p in journal.owner.directory.iterdir()] == [mine]
    assert list((tmp_path / "owners").iterdir()) == []
