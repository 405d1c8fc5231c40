"""WAL checkpoints off the write path (SQLite).

In WAL mode a commit appends pages to the `-wal` file, and by default the commit that takes the
WAL past 1 000 pages also copies them back into the database file (a checkpoint) before it
returns: the writer that happens to cross the line pays for everyone's pages. Measured on the
engine's write path, that was about a third of its time.

Here each writing connection checkpoints by itself only past `BACKSTOP_PAGES` (a bound on the
WAL's size should nothing else run), and one thread per process copies the WAL back every
`INTERVAL` seconds, for every database file this process has opened whose WAL has changed since
its last look. It runs a PASSIVE checkpoint on a connection of its own: it never blocks a
writer or a reader and never waits for one; pages that readers still need are left for a later
round. The thread is a daemon, starts with the first file and looks at a file only while an
engine on that file is alive. A connection that closes last still checkpoints the whole WAL,
as SQLite always does.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

INTERVAL = 0.5
BACKSTOP_PAGES = 10_000  # about 40 MB of WAL with 4 KiB pages


class Checkpointer:
    """The process's checkpoint thread and the database files it looks after."""

    def __init__(self, interval: float = INTERVAL):
        self.interval = interval
        self._files: dict[str, int] = {}  # path -> number of live engines on it
        self._seen: dict[str, tuple[int, int]] = {}  # path -> WAL (size, mtime) at its last checkpoint
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, owner: Any, path: str) -> None:
        """Look after `path` for as long as `owner` (an Engine) lives."""
        path = str(Path(path).resolve())
        with self._lock:
            self._files[path] = self._files.get(path, 0) + 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
                self._thread.start()
        weakref.finalize(owner, self._forget, path)

    def _forget(self, path: str) -> None:
        with self._lock:
            left = self._files.get(path, 0) - 1
            if left > 0:
                self._files[path] = left
            else:
                self._files.pop(path, None)
                self._seen.pop(path, None)

    def _run(self) -> None:
        from ..health import Trouble

        trouble = Trouble("WAL checkpoints", log)
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            with self._lock:
                paths = list(self._files)
            try:
                for path in paths:
                    self.checkpoint_if_changed(path)
            except Exception as exc:  # noqa: BLE001 - a thread that died would leave the WAL to the writers
                self._wake.wait(trouble.failed(exc))
                continue
            trouble.ok()

    def checkpoint_if_changed(self, path: str) -> bool:
        """Checkpoint `path` if its WAL changed since the last time; True if it ran."""
        try:
            st = os.stat(path + "-wal")
        except OSError:  # no WAL (nothing written, or the last connection closed it)
            return False
        mark = (st.st_size, st.st_mtime_ns)
        if self._seen.get(path) == mark:
            return False
        try:
            # mode=rw: a database file removed meanwhile is not created anew
            conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=0, isolation_level=None)
        except sqlite3.Error:
            return False
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:  # busy with another checkpoint, or the file went away
            log.debug("checkpoint of %s skipped: %s", path, exc)
            return False
        finally:
            conn.close()
        with self._lock:
            if path in self._files:
                self._seen[path] = mark
        return True


CHECKPOINTER = Checkpointer()
