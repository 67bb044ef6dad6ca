"""The journal: every generation job in SQLite, so no remote image is ever lost.

One row per job (provider, model, the normalised request, output settings, status), one per remote
task, one per image. Several imagegen processes may share the file: WAL mode, a busy timeout and
short transactions keep them apart, and an image is *claimed* before it is saved so that two
``tasks wait`` runs never write it twice. Only the standard library is imported here, so ``tasks
list`` and ``tasks show`` start instantly.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from imagegen_cli.errors import ConfigError, JournalBusy, UsageError, redact
from imagegen_cli.plans import JournalEntry
from imagegen_cli.status import OPEN_STATUSES, JobStatus
from imagegen_cli.store.job_rows import (
    MY_START,
    Claim,
    ImageRow,
    Job,
    TaskRow,
    new_job_id,
)
from imagegen_cli.store.journal_images import ImageClaims
from imagegen_cli.store.journal_schema import MIGRATIONS, SCHEMA_VERSION
from imagegen_cli.store.locks import OWNERS, RowOwner

__all__ = ["Claim", "ImageRow", "Job", "Journal", "JournalEntry", "TaskRow", "journal_path"]

JOB_STATES = tuple(status.value for status in JobStatus)
OPEN_STATES = tuple(status.value for status in OPEN_STATUSES)
LOCK_WAIT = 30.0  # seconds a command waits for another process's write lock unless it says less (its --timeout)


def journal_path() -> Path:
    """``journal.sqlite3`` in the user data dir (``$XDG_DATA_HOME/imagegen``)."""
    from imagegen_cli.config import data_dir

    return data_dir() / "journal.sqlite3"


class Journal(ImageClaims):
    """The SQLite journal; open it with :meth:`open` and close it when done."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        # One connection serves the event loop and the writer's worker threads (a file's name is journalled
        # from the thread that places it): a transaction must never interleave with another thread's statement.
        self._lock = threading.RLock()
        self.owner = RowOwner(path.parent / OWNERS)  # who writes rows; liveness that holds across containers

    @classmethod
    def open(cls, path: Path | None = None, *, wait: float | None = None) -> Journal:
        """Open (creating and migrating) the journal; ``wait`` bounds, in seconds, every wait for another
        process's write lock (default :data:`LOCK_WAIT`), after which :class:`JournalBusy` says who holds it."""
        path = path or journal_path()
        wait = LOCK_WAIT if wait is None else max(2.0, min(float(wait), LOCK_WAIT))
        try:
            # The journal holds prompts and gateway answers: only its owner may read it.
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                os.chmod(path.parent, 0o700)
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600))
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(f"{path}{suffix}", 0o600)
            journal = cls._connect(path, wait)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"cannot open the task journal {path}: {exc}", hint="move the file away to start a new journal"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot create the task journal in {path.parent}: {exc.strerror}") from None
        return journal

    @classmethod
    def _connect(cls, path: Path, wait: float) -> Journal:
        """Connect, switch to WAL and migrate; retried while another process does the same, for ``wait`` s.

        Switching a fresh file to WAL takes an exclusive lock for which SQLite's busy timeout does not wait,
        so two processes opening a new journal at once could see "database is locked" (seen in the suite).
        """
        delay = 0.02
        ends = time.monotonic() + wait
        while True:
            conn = sqlite3.connect(path, timeout=wait, isolation_level=None, check_same_thread=False)
            try:
                conn.row_factory = sqlite3.Row
                conn.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA synchronous = NORMAL")
                journal = cls(conn, path)
                journal._migrate()
                return journal
            except sqlite3.OperationalError as exc:
                if not _locked(exc):
                    conn.close()
                    raise
                if time.monotonic() + delay >= ends:
                    busy = _busy(conn, path)
                    conn.close()
                    raise busy from None
                conn.close()
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def close(self) -> None:
        self.conn.close()
        self.owner.release()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so read-then-write sequences cannot interleave.
        with self._lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if _locked(exc):
                    raise _busy(self.conn, self.path) from None
                raise
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def _rows(self, sql: str, args: tuple[object, ...] | list[object] = ()) -> list[sqlite3.Row]:
        """A read, whole, under the same lock as the writes."""
        with self._lock:
            return list(self.conn.execute(sql, args).fetchall())

    def _row(self, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Row | None:
        rows = self._rows(sql, args)
        return rows[0] if rows else None

    def _migrate(self) -> None:
        # A journal already up to date needs no write lock: readers (``tasks list``) pass a held one (WAL).
        if self.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        with self._tx() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"the task journal {self.path} was written by a newer imagegen (schema {version})",
                    hint="upgrade imagegen",
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target}")

    # ------------------------------------------------------------------ writing
    def create_job(
        self,
        *,
        provider: str,
        model: str,
        dialect: str,
        base_url: str,
        request: dict[str, Any],
        calls: list[dict[str, Any]],
        n: int,
        out_dir: str,
        output: dict[str, Any],
        batch_key: str | None = None,
    ) -> str:
        job_id = new_job_id()
        now = time.time()
        me = self.owner.me()
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO jobs (id, provider, model, dialect, base_url, request, calls, n, status, out_dir, output,"
                " pid, pid_start, owner, created_at, updated_at, batch_key)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    provider,
                    model,
                    dialect,
                    redact(base_url),
                    redact(json.dumps(request)),
                    redact(json.dumps(calls)),
                    n,
                    out_dir,
                    json.dumps(output),
                    os.getpid(),
                    MY_START,
                    me,
                    now,
                    now,
                    batch_key,
                ),
            )
        return job_id

    def set_status(self, job_id: str, status: str, error: str | None = None) -> None:
        assert status in JOB_STATES
        with self._tx() as conn:
            conn.execute(
                "UPDATE jobs SET status = ?, error = ?, updated_at = ? WHERE id = ?",
                (status, redact(error) if error else None, time.time(), job_id),
            )

    def take_over(self, job_id: str) -> int | None:
        """This process now runs the job, unless another live process still does: then its pid (nothing changed).

        Atomic (one write transaction), so two ``--resume`` runs of one batch never both take a line.
        """
        me = self.owner.me()
        with self._tx() as conn:
            row = conn.execute("SELECT pid, pid_start, owner, status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            pid = row["pid"]
            theirs = (row["owner"], pid) != (me, os.getpid())
            if (
                pid
                and theirs
                and row["status"] in OPEN_STATES
                and self.owner.alive(row["owner"], pid, row["pid_start"])
            ):
                return int(pid)
            conn.execute(
                "UPDATE jobs SET pid = ?, pid_start = ?, owner = ?, updated_at = ? WHERE id = ?",
                (os.getpid(), MY_START, me, time.time(), job_id),
            )
        return None

    def claim_pid(self, job_id: str) -> None:
        """This process now runs the job (``tasks wait``, ``--resume``)."""
        me = self.owner.me()
        with self._tx() as conn:
            conn.execute(
                "UPDATE jobs SET pid = ?, pid_start = ?, owner = ?, updated_at = ? WHERE id = ?",
                (os.getpid(), MY_START, me, time.time(), job_id),
            )

    def add_task(self, job_id: str, task: TaskRow) -> None:
        now = time.time()
        with self._tx() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO job_tasks (job_id, remote_id, call_index, first_image, count, seed, status,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    redact(task.remote_id),
                    task.call_index,
                    task.first_image,
                    task.count,
                    task.seed,
                    task.status,
                    now,
                    now,
                ),
            )
            conn.execute(
                "UPDATE jobs SET status = 'submitted', updated_at = ? WHERE id = ? AND status = 'queued'", (now, job_id)
            )

    def remove_task(self, job_id: str, remote_id: str) -> None:
        """Forget a task row (a submission placeholder once its answer arrived)."""
        with self._tx() as conn:
            conn.execute("DELETE FROM job_tasks WHERE job_id = ? AND remote_id = ?", (job_id, remote_id))

    def update_task(
        self, job_id: str, remote_id: str, status: str, error: str | None = None, expires_at: float | None = None
    ) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE job_tasks SET status = ?, error = ?, expires_at = COALESCE(?, expires_at), updated_at = ?"
                " WHERE job_id = ? AND remote_id = ?",
                (status, redact(error) if error else None, expires_at, time.time(), job_id, redact(remote_id)),
            )

    def finish_job(self, job_id: str, error: str | None = None, *, cancelled: bool = False) -> JobStatus:
        """Set the final status from what the journal holds (:func:`status.job_status`, the one rule)."""
        job = self.get(job_id)
        status = job.derived_status(cancelled=cancelled)
        self.set_status(job_id, status, error if status != JobStatus.SUCCEEDED else None)
        return status

    def delete_job(self, job_id: str) -> None:
        """Forget a job that never sent anything (interrupted while waiting for its turn)."""
        with self._tx() as conn:
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def prune(self, older_than: float) -> int:
        """Forget finished jobs created before ``older_than`` (a timestamp); open jobs are kept.

        A job whose process died and that cannot be resumed counts as finished (:meth:`_job`: only an open one can).
        """
        with self._tx() as conn:
            rows = conn.execute("SELECT * FROM jobs WHERE created_at < ?", (older_than,)).fetchall()
            done = [r["id"] for r in rows if r["status"] not in OPEN_STATES or self._job(r).status not in OPEN_STATES]
            conn.executemany("DELETE FROM jobs WHERE id = ?", [(job_id,) for job_id in done])
        return len(done)

    # ------------------------------------------------------------------ reading
    def _job(self, row: sqlite3.Row) -> Job:
        damaged: list[str] = []

        def column(name: str, empty: Any) -> Any:
            # A row written by another tool (or a disk error) must not break every listing: it reads as damaged.
            try:
                value = json.loads(row[name])
            except (TypeError, ValueError, RecursionError):
                damaged.append(name)
                return empty
            if not isinstance(value, type(empty)):
                damaged.append(name)
                return empty
            return value

        job = Job(
            id=row["id"],
            provider=row["provider"],
            model=row["model"],
            dialect=row["dialect"],
            base_url=row["base_url"],
            request=column("request", {}),
            calls=column("calls", []),
            n=row["n"],
            status=row["status"],
            out_dir=row["out_dir"],
            output=column("output", {}),
            error=row["error"],
            pid=row["pid"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )
        if damaged:
            job.error = f"the journal's record of this job is damaged ({', '.join(damaged)} not readable)"
        tasks = self._rows("SELECT * FROM job_tasks WHERE job_id = ? ORDER BY call_index, remote_id", (job.id,))
        job.tasks = [TaskRow.from_row(r) for r in tasks]
        job.images = [
            ImageRow.from_row(r)
            for r in self._rows("SELECT * FROM job_images WHERE job_id = ? ORDER BY image_index", (job.id,))
        ]
        if job.status in OPEN_STATES and not self.owner.alive(row["owner"], job.pid, row["pid_start"]):
            # The process died (killed): say what the job is now instead of "running" forever. A remote task
            # still pending or fetched-but-not-saved keeps it open for ``tasks wait``.
            status = job.derived_status()
            if status not in OPEN_STATES:
                job.status = status
                job.error = job.error or f"the imagegen process ({job.pid}) ended before the job finished"
        return job

    def get(self, ident: str) -> Job:
        """A job by local id, unique id prefix, or remote task id."""
        row = self._row("SELECT * FROM jobs WHERE id = ?", (ident,))
        if row is None:
            task = self._rows("SELECT job_id FROM job_tasks WHERE remote_id = ?", (ident,))
            if len(task) == 1:
                row = self._row("SELECT * FROM jobs WHERE id = ?", (task[0]["job_id"],))
        if row is None and len(ident) >= 4:
            rows = self._rows(
                "SELECT * FROM jobs WHERE id LIKE ? ESCAPE '\\'", (ident.replace("%", "\\%").replace("_", "\\_") + "%",)
            )
            if len(rows) > 1:
                raise UsageError(f"task id {ident!r} is ambiguous", hint="give more of it")
            row = rows[0] if rows else None
        if row is None:
            raise UsageError(f"no task {ident!r} in the journal", hint="see: imagegen tasks list")
        return self._job(row)

    def jobs(self, *, status: str | None = None, provider: str | None = None, limit: int = 20) -> list[Job]:
        query = "SELECT * FROM jobs"
        clauses: list[str] = []
        args: list[Any] = []
        if provider:
            clauses.append("provider = ?")
            args.append(provider)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY id DESC"
        jobs = [self._job(row) for row in self._rows(query, args)]
        if status:
            jobs = [job for job in jobs if job.status == status]
        return jobs[:limit] if limit > 0 else jobs

    def record_upload(self, job_id: str, sha256: str, url: str, expires_at: float) -> None:
        """An input uploaded for ``job_id``: its URL (redacted of secrets) and when it expires."""
        with self._tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO job_uploads (job_id, sha256, url, expires_at, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (job_id, sha256, redact(url), expires_at, time.time()),
            )

    def uploads(self, job_id: str) -> dict[str, tuple[str, float]]:
        """SHA-256 → (URL, expiry) of the inputs uploaded for ``job_id``."""
        rows = self._rows("SELECT sha256, url, expires_at FROM job_uploads WHERE job_id = ?", (job_id,))
        return {str(row["sha256"]): (str(row["url"]), float(row["expires_at"])) for row in rows}

    def by_batch_key(self, key: str) -> Job | None:
        """The newest job of a batch line, for ``--resume``."""
        row = self._row("SELECT * FROM jobs WHERE batch_key = ? ORDER BY id DESC LIMIT 1", (key,))
        return self._job(row) if row is not None else None

    def task_ids(self, prefix: str = "") -> list[str]:
        """Job ids for shell completion."""
        rows = self._rows("SELECT id FROM jobs WHERE id LIKE ? ORDER BY id DESC LIMIT 50", (prefix + "%",))
        return [r["id"] for r in rows]


def _locked(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _busy(conn: sqlite3.Connection, path: Path) -> JournalBusy:
    """The error for a write lock held too long, naming the live processes that own open jobs (WAL lets us
    read them while the lock is held); SQLite itself cannot say which process holds its lock."""
    pids: list[int] = []
    with contextlib.suppress(sqlite3.Error):
        owners = RowOwner(path.parent / OWNERS)
        for pid, start, owner, status in conn.execute("SELECT DISTINCT pid, pid_start, owner, status FROM jobs"):
            mine = pid == os.getpid() or pid in pids
            if pid and status in OPEN_STATES and not mine and owners.alive(owner, pid, start):
                pids.append(pid)
    who = f" (pid {', '.join(map(str, pids))} has jobs open in it)" if pids else ""
    return JournalBusy(
        f"another imagegen process holds the journal {path}{who}; gave up waiting for it",
        hint="run again when it is done (`imagegen tasks list` shows its jobs), or give a longer --timeout",
    )
