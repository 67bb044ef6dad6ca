"""Journal rows as dataclasses (jobs, their remote tasks and images), job ids, and process identity.

A process is known by its pid *and* its start time (from /proc where there is one), so a claim held by a
process that died is never mistaken for one held by a new process that reused its pid.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from imagegen_cli.status import JobStatus, job_status_of

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32: sortable, no look-alikes


def new_job_id() -> str:
    """A short id that sorts by creation time: 9 base32 digits of milliseconds, 3 random."""
    import secrets  # here: results import this module, and secrets pulls in hashlib and hmac (start-up)

    millis = int(time.time() * 1000)
    digits = []
    for _ in range(9):
        digits.append(_ALPHABET[millis % 32])
        millis //= 32
    return "".join(reversed(digits)) + "".join(secrets.choice(_ALPHABET) for _ in range(3))


def process_start(pid: int) -> float | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None where that is unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields after its last ")".
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return float(fields[19])
    except (IndexError, ValueError):
        return None


MY_START = process_start(os.getpid())


def process_alive(pid: int | None, start: float | None = None) -> bool:
    """True when ``pid`` runs and, where its start time was recorded, is still that same process."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if start is not None:
        current = process_start(pid)
        if current is not None and current != start:
            return False  # the pid was reused by another process
    return True


class Claim(StrEnum):
    """The outcome of claiming an image before saving it."""

    CLAIMED = "claimed"  # this process saves it
    SAVED = "saved"  # saved already (by an earlier run, or adopted from a file placed before a crash)
    BUSY = "busy"  # another live process is saving it right now


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

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> TaskRow:
        fields = ("remote_id", "call_index", "first_image", "count", "seed", "status", "error", "expires_at")
        return cls(*(r[name] for name in fields))

    @property
    def indices(self) -> range:
        return range(self.first_image, self.first_image + self.count)


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

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> ImageRow:
        fields = ("image_index", "state", "path", "url", "seed", "width", "height", "remote_id")
        return cls(*(r[name] for name in fields))


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

    def saved_indices(self) -> set[int]:
        """Images saved and still on disk."""
        return {i.index for i in self.saved if i.path and Path(i.path).exists()}

    def derived_status(self, *, cancelled: bool = False) -> JobStatus:
        """What the journal's rows say the job is, once no process works on it (``cancelled``: by the user)."""
        tasks = ((t.status, t.indices) for t in self.tasks)
        return job_status_of(self.n, self.saved_indices(), tasks, cancelled=cancelled)

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
