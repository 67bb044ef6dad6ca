"""Putting a finished file in place without ever replacing another, and cleaning up after killed runs.

Every file is written to a hidden ``.imagegen-<pid>-*.part`` file in the output directory, fsynced, and
then linked into place under a name that does not exist yet. A killed run leaves at most a ``.part`` file,
never a half-written image under a real name; the next writer in that directory removes ``.part`` files
that are over an hour old and whose process is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path

from imagegen_cli.store.job_rows import process_alive

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


def remove_stale_parts(directory: Path, *, older_than: float = STALE_PART_SECONDS) -> list[Path]:
    """Remove ``.part`` files a killed run left.

    The owner's pid is in the name (``.imagegen-<pid>-*.part``): when that process is gone, nothing can write
    the file any more, so it goes at once (a resumed batch leaves no hidden leftovers beside its images). A
    name without a pid (older versions) goes when unchanged for ``older_than`` seconds. A file of another
    user, or of a process still running, is never touched.
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
        if owner and (int(owner[1]) == os.getpid() or process_alive(int(owner[1]))):
            continue
        if not owner and now - info.st_mtime < older_than:
            continue
        with contextlib.suppress(OSError):
            Path(entry.path).unlink()
            removed.append(Path(entry.path))
    return removed


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
