"""Putting a finished file in place without ever replacing another, and cleaning up after killed runs.

Every file is written to a hidden ``.imagegen-<pid>-*.part`` file in the output directory, locked by its
writer for as long as the writer holds it, fsynced, and then linked into place under a name that does not
exist yet. A killed run leaves at most a ``.part`` file, never a half-written image under a real name; the
next writer in that directory removes ``.part`` files nobody holds the lock of (the lock, unlike the pid in
the name, means the same thing in every PID namespace: containers sharing the folder).

The name a file is about to get is journalled with the identity of the file (:class:`Target`), so a run
killed before or after ``link()`` is resumed by adopting that very file, never another that took the name.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import stat
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from imagegen_cli.store.job_rows import process_alive
from imagegen_cli.store.locks import lock, open_unheld, same_file

STALE_PART_SECONDS = 3600
TEMP_PREFIX = ".imagegen-"
TEMP_SUFFIX = ".part"
_TEMP_PID = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-")


def fsync_file(path: Path) -> None:
    """Flush a file someone else wrote (a download as it arrived) to disk before it gets a real name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    """Make a new name in ``directory`` durable; best effort, as some filesystems cannot fsync a directory."""
    with contextlib.suppress(OSError):
        fsync_file(directory)


def pid_alive_here(pid: int) -> bool:
    """Whether process ``pid`` runs in this PID namespace (this process included); elsewhere it says nothing."""
    return pid == os.getpid() or process_alive(pid)


def create_part(directory: Path, mode: int) -> tuple[int, Path]:
    """A new ``.part`` file in ``directory``, open read-write and locked on the returned descriptor.

    The lock lives as long as any descriptor of this open file (a ``dup`` keeps it past the caller's close).
    A sweep elsewhere may take the file in the moment between its creation and the lock: then another one.
    """
    for _ in range(5):
        fd, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=TEMP_SUFFIX, dir=directory)
        path = Path(name)
        try:
            os.fchmod(fd, mode)
            if lock(fd) is not False and same_file(fd, path):
                return fd, path
            if os.fstat(fd).st_nlink > 0:
                _unlink_moved(fd)  # not swept but moved with its folder: it is ours to remove
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)  # the sweep that holds it removes it
    raise OSError(errno.EAGAIN, "temporary files keep being removed as they are made", str(directory))


class HeldParts:
    """The ``.part`` files one writer holds: each stays locked, through a descriptor of its own, until consumed.

    A download's handle is closed long before the file is checked and placed (the writer may even wait for
    memory first): the lock must outlive it, or a sweep elsewhere could take the file in between.
    """

    def __init__(self) -> None:
        self._fds: dict[Path, int] = {}
        self._guard = threading.Lock()  # the writer places files from worker threads
        weakref.finalize(self, _close_all, self._fds)  # a writer dropped by a failed run lets go of what it held

    def create(self, directory: Path, mode: int) -> tuple[int, Path]:
        """A new locked ``.part`` (:func:`create_part`), held until :meth:`discard` or its removal by the caller."""
        self.count()
        fd, path = create_part(directory, mode)
        try:
            keeper = os.dup(fd)  # the lock belongs to the open file: it lives while either descriptor does
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        with self._guard:
            self._fds[path] = keeper
        return fd, path

    def count(self) -> int:
        """How many are held now; those their caller removed (a failed download) are let go first.

        A part whose folder was moved still has its links: it is kept (its bytes are read through the descriptor).
        """
        with self._guard:
            for path, fd in list(self._fds.items()):
                if os.fstat(fd).st_nlink == 0:
                    os.close(self._fds.pop(path))
            return len(self._fds)

    def moved(self, path: Path) -> bool:
        """Whether the held part no longer lives at ``path`` (its folder was moved or renamed meanwhile)."""
        with self._guard:
            fd = self._fds.get(path)
        return fd is not None and not same_file(fd, path)

    def read(self, path: Path) -> bytes:
        """The part's bytes, through its held descriptor: found wherever its folder went."""
        with self._guard:
            fd = self._fds.get(path)
        if fd is None:
            return path.read_bytes()
        size = os.fstat(fd).st_size
        chunks, offset = [], 0
        while offset < size:
            chunk = os.pread(fd, min(size - offset, 1 << 20), offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    def discard(self, path: Path) -> None:
        """Remove a ``.part`` (if still there, or where its moved folder now is), then let go of its lock."""
        with self._guard:
            fd = self._fds.pop(path, None)
        try:
            if fd is not None and not same_file(fd, path):
                _unlink_moved(fd)
            else:
                path.unlink(missing_ok=True)
        finally:
            if fd is not None:
                os.close(fd)


def _unlink_moved(fd: int) -> None:
    """Remove the file open as ``fd`` from wherever it now is (Linux names it in /proc); elsewhere the sweep will."""
    try:
        where = Path(f"/proc/self/fd/{fd}").readlink()
    except OSError:
        return
    # Renamed into place (filesystems without hard links) it is an image now, no longer a part.
    if where.name.startswith(TEMP_PREFIX) and where.name.endswith(TEMP_SUFFIX) and same_file(fd, where):
        where.unlink(missing_ok=True)


def _close_all(fds: dict[Path, int]) -> None:
    for fd in fds.values():
        os.close(fd)
    fds.clear()


def remove_stale_parts(directory: Path, *, older_than: float = STALE_PART_SECONDS) -> list[Path]:
    """Remove ``.part`` files a killed run left.

    A writer holds a lock on its ``.part`` until the file is placed or removed: a locked file is a live
    run's, whatever namespace it runs in, and is kept. An unlocked one goes at once when the pid in its
    name (``.imagegen-<pid>-*.part``) is gone from this namespace (a resumed batch leaves no hidden leftovers
    beside its images), or when it has been unchanged for ``older_than`` seconds (a name without a pid, from
    older versions). A file of another user is never touched.
    """
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX)):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            continue
        owner = _TEMP_PID.match(entry.name)
        if owner and pid_alive_here(int(owner[1])):
            continue  # also covers a writer of this namespace between creating its file and locking it
        if not owner and now - info.st_mtime < older_than:
            continue
        opened = open_unheld(Path(entry.path))
        if opened is None:
            continue
        fd, taken = opened
        try:
            # Taken: nobody holds it. None: this filesystem cannot lock, the pid decides (as it did before locks).
            if taken is not False and same_file(fd, Path(entry.path)):
                Path(entry.path).unlink(missing_ok=True)
                removed.append(Path(entry.path))
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


# ------------------------------------------------------------------ which file a claim names
class Target(str):
    """A final file name, carrying the identity of the file about to be linked under it (``source``).

    The writer hands this to ``on_target``; the journal records both, and a resume adopts a file under that
    name only if it is that very file (:func:`is_placed`). A plain ``str`` carries no identity: nothing is
    ever adopted on a name alone.
    """

    source: str

    def __new__(cls, path: str, source: str) -> Target:
        target = super().__new__(cls, path)
        target.source = source
        return target


def file_identity(info: os.stat_result) -> str:
    """Who a file is: its inode, size and modification time, which a hard link or a rename keeps.

    Not its device number, which a remount (NFS, another container's view) can change.
    """
    return f"{info.st_ino}:{info.st_size}:{info.st_mtime_ns}"


def is_placed(path: str, identity: str | None) -> bool:
    """Whether the file at ``path`` is the one whose identity was recorded before it was placed."""
    if identity is None:
        return False
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and file_identity(info) == identity


# renameat2(RENAME_NOREPLACE): an atomic "rename only if the target is absent" (Linux 3.15+, glibc 2.28+).
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def _load_renameat2() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function: Callable[..., int] = libc.renameat2
    except (OSError, AttributeError):
        return None
    return function


_renameat2 = _load_renameat2() if sys.platform.startswith("linux") else None


def rename_no_replace(source: Path, target: Path) -> bool:
    """Move ``source`` to ``target`` unless ``target`` exists (then False); never replaces a file.

    For filesystems without hard links. ``renameat2(RENAME_NOREPLACE)`` does it in one step; where the
    kernel or filesystem lacks it, the name is claimed with an exclusive create (``O_EXCL``) and the
    finished file renamed over that empty claim, which only this process can own.
    """
    if _renameat2 is not None:
        result = _renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE)
        if result == 0:
            return True
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            return False
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM):
            raise OSError(code, os.strerror(code), str(target))
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    try:
        os.rename(source, target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return True
