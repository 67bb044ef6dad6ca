"""Advisory file locks that say "my owner is alive", across PID namespaces: containers sharing a folder.

A pid means something only in its own PID namespace: a run in another container looks dead here, so a
decision taken from a bare pid removes a live run's temporary file or takes over its claim. A lock does
not have that problem: the kernel holds it for the owner's open file (one description, whatever the
namespace) and drops it when the owner ends, however it ends. So a ``.part`` file is locked by its writer
for as long as the writer holds it, and each process that writes journal rows holds a lock on a file of
its own, ``owners/<token>`` beside the journal, whose token the rows name.

Where a filesystem cannot lock (some network filesystems), the callers fall back to the pid, as before.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import threading
import time
from pathlib import Path
from typing import ClassVar

from imagegen_cli.store.job_rows import process_alive

try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks, liveness is decided by pids alone
    fcntl = None  # type: ignore[assignment]

OWNERS = "owners"
_TOKEN = re.compile(r"[0-9a-f]{32}\Z")


def lock(fd: int, *, shared: bool = False) -> bool | None:
    """Lock ``fd`` without waiting: True taken, False held by someone else, None when it cannot lock here."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not removed, nor replaced by another)."""
    try:
        here, there = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def open_unheld(path: Path, *, shared: bool = False) -> tuple[int, bool | None] | None:
    """Open someone's lock file and try its lock: ``(fd, taken)``, the fd for the caller to close; None when
    it cannot be opened (gone, not a regular file, not readable). A look (``shared``) never fails another."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd, lock(fd, shared=shared)


# ------------------------------------------------------------------ the owner lock of this process
class _ThisProcess:
    """This process's token and the owner locks it holds (new ones in a forked child)."""

    token: ClassVar[str] = secrets.token_hex(16)
    held: ClassVar[dict[Path, tuple[int, int]]] = {}  # owners directory -> (locked fd, open journals using it)
    guard: ClassVar[threading.Lock] = threading.Lock()


def _forked() -> None:
    """A forked child is another process: its own token; the parent's locks are the parent's alone."""
    for fd, _ in _ThisProcess.held.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _ThisProcess.token, _ThisProcess.held, _ThisProcess.guard = secrets.token_hex(16), {}, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def acquire_owner(directory: Path) -> str | None:
    """Hold this process's owner lock in ``directory`` (counted: :func:`release_owner` once per call).

    Its token, or None where no lock can be held (the rows then name only the pid).
    """
    with _ThisProcess.guard:
        fd, users = _ThisProcess.held.get(directory, (-1, 0))
        if users == 0:
            created = _create_owner(directory)
            if created is None:
                return None
            fd = created
        _ThisProcess.held[directory] = (fd, users + 1)
        return _ThisProcess.token


def release_owner(directory: Path) -> None:
    """One user of the owner lock is done; the last one removes the file, which says "gone" at once."""
    with _ThisProcess.guard:
        fd, users = _ThisProcess.held.pop(directory, (-1, 0))
        if users > 1:
            _ThisProcess.held[directory] = (fd, users - 1)
        elif users == 1:
            path = directory / _ThisProcess.token
            with contextlib.suppress(OSError):
                if same_file(fd, path):
                    path.unlink()
            os.close(fd)


def _create_owner(directory: Path) -> int | None:
    path = directory / _ThisProcess.token
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
        _sweep_owners(directory)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    for _ in range(3):  # a look at the lock (another process's check) holds it for a moment
        taken = lock(fd)
        if taken is not False:
            break
        time.sleep(0.005)
    if taken is not True or not same_file(fd, path):  # cannot lock here, or swept before it was locked
        os.close(fd)
        return None
    return fd


def _sweep_owners(directory: Path) -> None:
    """Remove the files of owners that ended without removing theirs (killed): their lock is free."""
    for entry in os.scandir(directory):
        if not _TOKEN.match(entry.name) or entry.name == _ThisProcess.token:
            continue
        opened = open_unheld(Path(entry.path))
        if opened is None:
            continue
        fd, taken = opened
        try:
            if taken and same_file(fd, Path(entry.path)):
                Path(entry.path).unlink(missing_ok=True)
        finally:
            os.close(fd)


def owner_alive(directory: Path, token: str) -> bool | None:
    """Whether the process that named itself ``token`` still runs, wherever it runs; None when unknown here."""
    if not _TOKEN.match(token):
        return False
    if token == _ThisProcess.token and directory in _ThisProcess.held:
        return True
    path = directory / token
    opened = open_unheld(path, shared=True)
    if opened is None:
        return False  # its owner removed it on leaving, or a sweep did after it was killed
    fd, taken = opened
    try:
        for _ in range(3):  # a sweep holds a dead owner's lock for a moment, just before removing its file
            if taken is not False or not same_file(fd, path):
                break
            time.sleep(0.002)
            taken = lock(fd, shared=True)
        if taken is None:
            return None
        return not taken and same_file(fd, path)
    finally:
        os.close(fd)


class RowOwner:
    """This process as the owner of the rows it writes in one journal, and the liveness of other owners."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory  # ``owners/`` beside the journal
        self.token: str | None = None
        self._tried = False
        self._guard = threading.Lock()  # the writer's threads journal names too

    def me(self) -> str | None:
        """This process's token for the rows it writes; its lock is held from now until :meth:`release`."""
        with self._guard:
            if not self._tried:
                self._tried = True
                self.token = acquire_owner(self.directory)
            return self.token

    def release(self) -> None:
        with self._guard:
            if self.token is not None:
                release_owner(self.directory)
                self.token = None

    def alive(self, owner: str | None, pid: int | None, start: float | None) -> bool:
        """Whether a row's process runs: by its owner lock, which holds across PID namespaces (containers);
        by pid and start time only for rows of older versions, or where this filesystem cannot lock."""
        alive = owner_alive(self.directory, owner) if owner else None
        return process_alive(pid, start) if alive is None else alive
