"""The task journal: every generation job in SQLite, so no remote image is ever lost.

One row per job (provider, model, the normalised request, output settings, status), one per remote
task, one per image. Several imagegen processes may share the file: WAL mode, a busy timeout and
short transactions keep them apart, and an image is *claimed* before it is saved so that two
``tasks wait`` runs never write it twice. Only the standard library is imported here, so ``tasks
list`` and ``tasks show`` start instantly.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagegen_cli.errors import ConfigError, UsageError, redact

JOB_STATES = ("queued", "submitted", "running", "succeeded", "partial", "failed", "cancelled", "expired")
OPEN_STATES = ("queued", "submitted", "running")
SCHEMA_VERSION = 2
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32: sortable, no look-alikes

MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        dialect TEXT NOT NULL,
        base_url TEXT NOT NULL,
        request TEXT NOT NULL,
        calls TEXT NOT NULL,
        n INTEGER NOT NULL,
        status TEXT NOT NULL,
        out_dir TEXT NOT NULL,
        output TEXT NOT NULL,
        error TEXT,
        pid INTEGER,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX jobs_status ON jobs(status);
    CREATE INDEX jobs_created ON jobs(created_at);
    CREATE TABLE job_tasks (
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        remote_id TEXT NOT NULL,
        call_index INTEGER NOT NULL,
        first_image INTEGER NOT NULL,
        count INTEGER NOT NULL,
        seed INTEGER,
        status TEXT NOT NULL,
        error TEXT,
        expires_at REAL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (job_id, remote_id)
    );
    CREATE INDEX job_tasks_remote ON job_tasks(remote_id);
    CREATE TABLE job_images (
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        image_index INTEGER NOT NULL,
        state TEXT NOT NULL,
        path TEXT,
        url TEXT,
        seed INTEGER,
        width INTEGER,
        height INTEGER,
        remote_id TEXT,
        claimed_by INTEGER,
        updated_at REAL NOT NULL,
        PRIMARY KEY (job_id, image_index)
    );
    """,
    # v2: batch lines carry a key (their normalised request and output) so --resume can find them again.
    2: """
    ALTER TABLE jobs ADD COLUMN batch_key TEXT;
    CREATE INDEX jobs_batch_key ON jobs(batch_key);
    """,
}


def journal_path() -> Path:
    """``journal.sqlite3`` in the user data dir (``$XDG_DATA_HOME/imagegen``)."""
    from imagegen_cli.config import data_dir

    return data_dir() / "journal.sqlite3"


def new_job_id() -> str:
    """A short id that sorts by creation time: 9 base32 digits of milliseconds, 3 random."""
    millis = int(time.time() * 1000)
    digits = []
    for _ in range(9):
        digits.append(_ALPHABET[millis % 32])
        millis //= 32
    return "".join(reversed(digits)) + "".join(secrets.choice(_ALPHABET) for _ in range(3))


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class TaskRow:
    """A remote task of a job."""

    remote_id: str
    call_index: int
    first_image: int
    count: int
    seed: int | None
    status: str
    error: str | None = None
    expires_at: float | None = None


@dataclass
class ImageRow:
    """A saved (or being saved) image of a job."""

    index: int
    state: str
    path: str | None
    url: str | None
    seed: int | None
    width: int | None
    height: int | None
    remote_id: str | None


@dataclass
class Job:
    """One generation job as the journal holds it."""

    id: str
    provider: str
    model: str
    dialect: str
    base_url: str
    request: dict[str, Any]
    calls: list[dict[str, Any]]
    n: int
    status: str
    out_dir: str
    output: dict[str, Any]
    error: str | None
    pid: int | None
    created_at: float
    updated_at: float
    tasks: list[TaskRow] = field(default_factory=list)
    images: list[ImageRow] = field(default_factory=list)

    @property
    def saved(self) -> list[ImageRow]:
        return [i for i in self.images if i.state == "saved"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "provider": self.provider,
            "model": self.model,
            "dialect": self.dialect,
            "status": self.status,
            "n": self.n,
            "request": self.request,
            "out_dir": self.out_dir,
            "name_template": self.output.get("template"),
            "remote_ids": [t.remote_id for t in self.tasks],
            "tasks": [
                {
                    "remote_id": t.remote_id,
                    "status": t.status,
                    "first_image": t.first_image,
                    "count": t.count,
                    **({"error": t.error} if t.error else {}),
                    **({"expires_at": t.expires_at} if t.expires_at else {}),
                }
                for t in self.tasks
            ],
            "paths": [i.path for i in self.saved],
            "images": [
                {
                    "index": i.index,
                    "path": i.path,
                    "seed": i.seed,
                    "width": i.width,
                    "height": i.height,
                    **({"url": i.url} if i.url else {}),
                }
                for i in self.saved
            ],
            "error": self.error,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


def _iso(stamp: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")


class TaskJournal:
    """The SQLite journal; open it with :meth:`open` and close it when done."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: Path | None = None) -> TaskJournal:
        path = path or journal_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")
            journal = cls(conn, path)
            journal._migrate()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"cannot open the task journal {path}: {exc}", hint="move the file away to start a new journal"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot create the task journal in {path.parent}: {exc.strerror}") from None
        return journal

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> TaskJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so read-then-write sequences cannot interleave.
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def _migrate(self) -> None:
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
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO jobs (id, provider, model, dialect, base_url, request, calls, n, status, out_dir, output,"
                " pid, created_at, updated_at, batch_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
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

    def claim_pid(self, job_id: str) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE jobs SET pid = ?, updated_at = ? WHERE id = ?", (os.getpid(), time.time(), job_id))

    def add_task(self, job_id: str, task: TaskRow) -> None:
        now = time.time()
        with self._tx() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO job_tasks (job_id, remote_id, call_index, first_image, count, seed, status,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    task.remote_id,
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

    def update_task(
        self, job_id: str, remote_id: str, status: str, error: str | None = None, expires_at: float | None = None
    ) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE job_tasks SET status = ?, error = ?, expires_at = COALESCE(?, expires_at), updated_at = ?"
                " WHERE job_id = ? AND remote_id = ?",
                (status, redact(error) if error else None, expires_at, time.time(), job_id, remote_id),
            )

    def claim_image(self, job_id: str, index: int) -> bool:
        """Reserve image ``index`` for this process; False when it is saved or another live process has it."""
        now = time.time()
        with self._tx() as conn:
            row = conn.execute(
                "SELECT state, path, claimed_by FROM job_images WHERE job_id = ? AND image_index = ?", (job_id, index)
            ).fetchone()
            if row is not None:
                if row["state"] == "saved" and row["path"] and Path(row["path"]).exists():
                    return False
                if row["state"] == "saving" and row["claimed_by"] != os.getpid() and _pid_alive(row["claimed_by"]):
                    return False
                conn.execute(
                    "UPDATE job_images SET state = 'saving', claimed_by = ?, updated_at = ?"
                    " WHERE job_id = ? AND image_index = ?",
                    (os.getpid(), now, job_id, index),
                )
                return True
            conn.execute(
                "INSERT INTO job_images (job_id, image_index, state, claimed_by, updated_at)"
                " VALUES (?, ?, 'saving', ?, ?)",
                (job_id, index, os.getpid(), now),
            )
            return True

    def release_image(self, job_id: str, index: int) -> None:
        with self._tx() as conn:
            conn.execute(
                "DELETE FROM job_images WHERE job_id = ? AND image_index = ? AND state = 'saving' AND claimed_by = ?",
                (job_id, index, os.getpid()),
            )

    def record_image(
        self,
        job_id: str,
        *,
        index: int,
        path: str,
        url: str | None,
        seed: int | None,
        width: int,
        height: int,
        remote_id: str | None,
    ) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO job_images (job_id, image_index, state, path, url, seed, width, height,"
                " remote_id, claimed_by, updated_at) VALUES (?, ?, 'saved', ?, ?, ?, ?, ?, ?, NULL, ?)",
                (job_id, index, path, redact(url) if url else None, seed, width, height, remote_id, time.time()),
            )
            conn.execute(
                "UPDATE jobs SET status = 'running', updated_at = ? WHERE id = ? AND status IN ('queued', 'submitted')",
                (time.time(), job_id),
            )

    def finish_job(self, job_id: str, error: str | None = None) -> str:
        """Set the final status from what the journal holds: succeeded, partial, failed or expired."""
        job = self.get(job_id)
        saved = len(job.saved)
        if saved >= job.n:
            status = "succeeded"
        elif any(t.status == "pending" for t in job.tasks):
            status = "running" if saved else "submitted"
        elif any(t.status == "expired" for t in job.tasks) and not saved:
            status = "expired"
        elif any(t.status == "cancelled" for t in job.tasks) and not saved:
            status = "cancelled"
        else:
            status = "partial" if saved else "failed"
        self.set_status(job_id, status, error if status != "succeeded" else None)
        return status

    def prune(self, older_than: float) -> int:
        """Forget finished jobs created before ``older_than`` (a timestamp); open jobs are kept."""
        with self._tx() as conn:
            placeholders = ",".join("?" * len(OPEN_STATES))
            cursor = conn.execute(
                f"DELETE FROM jobs WHERE created_at < ? AND status NOT IN ({placeholders})",  # noqa: S608
                (older_than, *OPEN_STATES),
            )
            return cursor.rowcount

    # ------------------------------------------------------------------ reading
    def _job(self, row: sqlite3.Row) -> Job:
        job = Job(
            id=row["id"],
            provider=row["provider"],
            model=row["model"],
            dialect=row["dialect"],
            base_url=row["base_url"],
            request=json.loads(row["request"]),
            calls=json.loads(row["calls"]),
            n=row["n"],
            status=row["status"],
            out_dir=row["out_dir"],
            output=json.loads(row["output"]),
            error=row["error"],
            pid=row["pid"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )
        job.tasks = [
            TaskRow(
                r["remote_id"],
                r["call_index"],
                r["first_image"],
                r["count"],
                r["seed"],
                r["status"],
                r["error"],
                r["expires_at"],
            )
            for r in self.conn.execute(
                "SELECT * FROM job_tasks WHERE job_id = ? ORDER BY call_index, remote_id", (job.id,)
            )
        ]
        job.images = [
            ImageRow(
                r["image_index"], r["state"], r["path"], r["url"], r["seed"], r["width"], r["height"], r["remote_id"]
            )
            for r in self.conn.execute("SELECT * FROM job_images WHERE job_id = ? ORDER BY image_index", (job.id,))
        ]
        if job.status in ("queued", "running") and job.dialect != "tasks" and not _pid_alive(job.pid):
            # A synchronous job whose process died cannot be resumed: say so instead of "running" forever.
            job.status = "partial" if job.saved else "failed"
            job.error = job.error or f"the imagegen process ({job.pid}) ended before the job finished"
        return job

    def get(self, ident: str) -> Job:
        """A job by local id, unique id prefix, or remote task id."""
        row = self.conn.execute("SELECT * FROM jobs WHERE id = ?", (ident,)).fetchone()
        if row is None:
            task = self.conn.execute("SELECT job_id FROM job_tasks WHERE remote_id = ?", (ident,)).fetchall()
            if len(task) == 1:
                row = self.conn.execute("SELECT * FROM jobs WHERE id = ?", (task[0]["job_id"],)).fetchone()
        if row is None and len(ident) >= 4:
            rows = self.conn.execute(
                "SELECT * FROM jobs WHERE id LIKE ? ESCAPE '\\'", (ident.replace("%", "\\%").replace("_", "\\_") + "%",)
            ).fetchall()
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
        jobs = [self._job(row) for row in self.conn.execute(query, args)]
        if status:
            jobs = [job for job in jobs if job.status == status]
        return jobs[:limit] if limit > 0 else jobs

    def by_batch_key(self, key: str) -> Job | None:
        """The newest job of a batch line, for ``--resume``."""
        row = self.conn.execute("SELECT * FROM jobs WHERE batch_key = ? ORDER BY id DESC LIMIT 1", (key,)).fetchone()
        return self._job(row) if row is not None else None

    def task_ids(self, prefix: str = "") -> list[str]:
        """Job ids for shell completion."""
        rows = self.conn.execute("SELECT id FROM jobs WHERE id LIKE ? ORDER BY id DESC LIMIT 50", (prefix + "%",))
        return [r["id"] for r in rows]
