"""Reading the user's local files (config, keys, prompt files) with a size bound, never blocking on a FIFO.

A config path set to ``/dev/zero``, a keys file replaced by a FIFO or a prompt file that never ends must each be
one clear error, not a hang or gigabytes of memory: the file is opened without blocking, must be a regular file
(stdin, for ``-``, is read with the same bound), and is read up to its bound and no further.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["MAX_CONFIG_BYTES", "MAX_KEYS_BYTES", "MAX_PROMPT_FILE_BYTES", "read_bounded", "read_stream_bounded"]

MAX_CONFIG_BYTES = 1 << 20  # a config of a megabyte is already absurd
MAX_KEYS_BYTES = 1 << 16
MAX_PROMPT_FILE_BYTES = 64 << 20  # hundreds of thousands of prompts

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


def human_bytes(count: int) -> str:
    return f"{count >> 20} MiB" if count >= 1 << 20 else f"{count >> 10} KiB"


def read_bounded(path: Path, limit: int, fail: Callable[[str], Exception]) -> bytes:
    """The bytes of regular file ``path``, at most ``limit``; else ``fail(reason)`` is raised.

    ``FileNotFoundError`` (and other ``OSError``) propagate for the caller to word.
    """
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise fail(f"is {_KINDS.get(stat.S_IFMT(info.st_mode), 'not a regular file')}, not a regular file")
        if info.st_size > limit:
            raise fail(f"is larger than {human_bytes(limit)}")
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # it grew while being read
                raise fail(f"is larger than {human_bytes(limit)}")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_stream_bounded(stream: BinaryIO, limit: int, fail: Callable[[str], Exception]) -> bytes:
    """Standard input (``--prompt-file -``), read up to ``limit`` bytes."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise fail(f"is larger than {human_bytes(limit)}")
    return data
