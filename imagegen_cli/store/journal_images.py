"""The journal's image claims: an image is claimed before it is written, its target named before it is placed,
and recorded once saved, so two processes never write one image twice and a killed run's file is adopted once."""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from imagegen_cli.errors import redact
from imagegen_cli.store.job_rows import MY_START, Claim
from imagegen_cli.store.placement import Target, is_placed

if TYPE_CHECKING:
    from imagegen_cli.store.locks import RowOwner


class ImageClaims:
    """The claim methods of :class:`~imagegen_cli.store.journal.Journal` (which provides the connection)."""

    owner: RowOwner

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _row(self, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Row | None:
        raise NotImplementedError

    def claim_image(self, job_id: str, index: int) -> Claim:
        """Reserve image ``index`` for this process before it is written.

        A claim left by a dead process is taken over; if that process had already placed its file (killed
        between placing and journalling it), that file is adopted as saved instead of being made again: the very
        file it placed (:func:`placement.is_placed`), never another that took the name after it died.
        """
        now, me = time.time(), self.owner.me()
        with self._tx() as conn:
            row = conn.execute(
                "SELECT state, path, claimed_by, claimed_start, claimed_owner, target_id FROM job_images"
                " WHERE job_id = ? AND image_index = ?",
                (job_id, index),
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO job_images (job_id, image_index, state, claimed_by, claimed_start, claimed_owner,"
                    " updated_at) VALUES (?, ?, 'saving', ?, ?, ?, ?)",
                    (job_id, index, os.getpid(), MY_START, me, now),
                )
                return Claim.CLAIMED
            path = row["path"]
            if row["state"] == "saved" and path and Path(path).exists():
                return Claim.SAVED
            mine = (row["claimed_owner"], row["claimed_by"], row["claimed_start"]) == (me, os.getpid(), MY_START)
            if row["state"] == "saving" and not mine:
                if self.owner.alive(row["claimed_owner"], row["claimed_by"], row["claimed_start"]):
                    return Claim.BUSY
                if path and is_placed(path, row["target_id"]):
                    conn.execute(
                        "UPDATE job_images SET state = 'saved', claimed_by = NULL, claimed_owner = NULL, updated_at = ?"
                        " WHERE job_id = ? AND image_index = ?",
                        (now, job_id, index),
                    )
                    return Claim.SAVED
            conn.execute(
                "UPDATE job_images SET state = 'saving', path = NULL, target_id = NULL, claimed_by = ?,"
                " claimed_start = ?, claimed_owner = ?, updated_at = ? WHERE job_id = ? AND image_index = ?",
                (os.getpid(), MY_START, me, now, job_id, index),
            )
            return Claim.CLAIMED

    def claim_target(self, job_id: str, index: int, path: str) -> None:
        """Record the file name a claimed image is about to be placed under (before it is placed).

        ``path`` is the writer's :class:`placement.Target`, which also says which file goes there; a plain name
        records none, and then nothing under it is ever adopted.
        """
        identity = path.source if isinstance(path, Target) else None
        with self._tx() as conn:
            conn.execute(
                "UPDATE job_images SET path = ?, target_id = ?, updated_at = ?"
                " WHERE job_id = ? AND image_index = ? AND state = 'saving'",
                (str(path), identity, time.time(), job_id, index),
            )

    def claimed_by(self, job_id: str, index: int) -> int | None:
        """The pid of the live process saving image ``index``, if another one is."""
        row = self._row(
            "SELECT state, claimed_by, claimed_start, claimed_owner FROM job_images"
            " WHERE job_id = ? AND image_index = ?",
            (job_id, index),
        )
        if row is None or row["state"] != "saving":
            return None
        if not self.owner.alive(row["claimed_owner"], row["claimed_by"], row["claimed_start"]):
            return None
        return int(row["claimed_by"])

    def release_image(self, job_id: str, index: int) -> None:
        with self._tx() as conn:
            conn.execute(
                "DELETE FROM job_images WHERE job_id = ? AND image_index = ? AND state = 'saving' AND claimed_by = ?"
                " AND claimed_owner IS ?",  # a pid alone could be another namespace's process
                (job_id, index, os.getpid(), self.owner.me()),
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
                (
                    job_id,
                    index,
                    path,
                    redact(url) if url else None,
                    seed,
                    width,
                    height,
                    redact(remote_id) if remote_id else None,
                    time.time(),
                ),
            )
            conn.execute(
                "UPDATE jobs SET status = 'running', updated_at = ? WHERE id = ? AND status IN ('queued', 'submitted')",
                (time.time(), job_id),
            )
