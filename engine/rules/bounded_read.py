"""Reading a configuration file, bounded: a regular file only (never a FIFO that blocks or a
device that never ends), at most MAX_FILE_BYTES."""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

# The largest file read: a rule file of 500 notifications is about 700 KB.
MAX_FILE_BYTES = 2 * 1024 * 1024


class Unreadable(Exception):
    """The file cannot be read as a configuration file; the message says why."""


def read_bounded(path: str) -> bytes | None:
    """The bytes of the regular file at `path`, None when it holds more than MAX_FILE_BYTES;
    Unreadable for anything else (a folder, a FIFO, a device, a missing file)."""
    fd, size = _open_regular(path)
    with os.fdopen(fd, "rb") as fh:
        if size > MAX_FILE_BYTES:
            return None
        raw = _read(fh)
    return None if len(raw) > MAX_FILE_BYTES else raw


def _open_regular(path: str) -> tuple[int, int]:
    """(a descriptor of the regular file at `path`, its size as the file system says); Unreadable
    for anything else."""
    try:
        # O_NONBLOCK: a FIFO opens at once instead of waiting for a writer, and is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise Unreadable(f"cannot read file: {exc.strerror}") from None
    info = os.fstat(fd)  # of what was opened, whatever the path names by now
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise Unreadable(f"cannot read file: it is {file_kind(info.st_mode)}, not a regular file")
    return fd, info.st_size


def _read(fh: BinaryIO) -> bytes:
    try:
        return fh.read(MAX_FILE_BYTES + 1)  # a file of /proc says it has 0 bytes, and may not
    except OSError as exc:
        raise Unreadable(f"cannot read file: {exc.strerror}") from None


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for a message."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "not a file"
