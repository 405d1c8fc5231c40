"""Readiness (does this process have what it needs to do its work?) and the failures of its loops.

`Readiness` answers `GET /readyz` in `engine serve` and on `engine worker --metrics-port`: the store
answers a trivial query, its schema is at the migrations' head (checked now and then, not on every
call), the queue answers, and on SQLite the data files are the very files the process opened and
can still be written. A file removed or replaced under a running process is the fault that loses
every send scheduled afterwards without a word, so a watch thread looks at the files every second
and says so loudly. A `-shm` file that cannot be written (made immutable, say) is worse: SQLite
maps it in memory, and the next read or write of the database kills the process with SIGBUS,
before any Python code can run. The watch names it when it sees it first, and
`report_fatal_signals` makes the death itself print where it happened.

`Trouble` is what every loop (sweep, queue reads, checkpoints, intake) does on an error: keep
going, back off (bounded exponential), and log once per state change with a count instead of a
traceback per turn (with Redis down, that was 31 588 lines in 35 s).
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

log = logging.getLogger("engine.health")

CHECK_TIMEOUT_S = 2.0  # a check that has not answered by then fails: a probe must not hang
SCHEMA_EVERY_S = 60.0  # the schema changes only with a deploy: look again this often
WATCH_EVERY_S = 1.0  # how often the watch thread looks at the data files
REMIND_EVERY_S = 300.0  # a failure that lasts is logged again this often, with its count


def report_fatal_signals() -> None:
    """On SIGSEGV, SIGBUS, SIGFPE, SIGABRT or SIGILL, print the signal and every thread's Python
    stack to stderr before the process dies: such a death runs no Python code, and without this it
    leaves nothing in the log."""
    faulthandler.enable(file=sys.stderr, all_threads=True)


def brief(exc: BaseException) -> str:
    """An error in one line, without the statement or its values."""
    first = (str(exc).splitlines() or [""])[0].strip()
    return f"{type(exc).__name__}: {first}"[:300] if first else type(exc).__name__


class Trouble:
    """The failures of one loop: `failed(exc)` logs the first failure (and a change of error, and a
    reminder every `REMIND_EVERY_S`) and returns how long to wait before the next try; `ok()` logs
    the recovery with the number of failures. Threads of one loop may share one (Huey's workers)."""

    def __init__(self, what: str, logger: logging.Logger = log, *, base_s: float = 0.2, cap_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.what, self.log, self.base_s, self.cap_s, self.clock = what, logger, base_s, cap_s, clock
        self.count = 0
        self._last = ""
        self._logged_at = 0.0
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> float:
        with self._lock:
            self.count += 1
            why, now = brief(exc), self.clock()
            if self.count == 1 or why != self._last or now - self._logged_at >= REMIND_EVERY_S:
                self._log_failing(why)
                self._last, self._logged_at = why, now
            return self.delay()

    def _log_failing(self, why: str) -> None:
        times = "1 time" if self.count == 1 else f"{self.count} times"
        # the traceback once, at DEBUG: the line above it is what an operator needs
        self.log.error("%s failing: %s (%s)", self.what, why, times, exc_info=self.log.isEnabledFor(logging.DEBUG))

    def delay(self) -> float:
        return min(self.cap_s, self.base_s * float(2 ** min(self.count - 1, 30)))

    def ok(self) -> None:
        if not self.count:  # the common case: no lock, no log
            return
        with self._lock:
            if self.count:
                plural = "" if self.count == 1 else "s"
                self.log.warning("%s recovered after %d failure%s", self.what, self.count, plural)
                self.count, self._last = 0, ""


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str

    def json(self) -> dict[str, object]:
        return {"ok": self.ok, "detail": self.detail}


class Alarms:
    """Conditions raised by a part of this process that stop it doing its work although the store
    and the queue answer (Courier rejecting the credentials): each is a failing readiness check
    while raised, and gone once cleared. One board per process: the process has one set of
    credentials."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self._lock = threading.Lock()

    def set(self, name: str, ok: bool, detail: str) -> bool:
        """Raise (ok=False) or clear an alarm; True when that changed its state."""
        with self._lock:
            raised = name in self._checks
            if ok:
                self._checks.pop(name, None)
            else:
                self._checks[name] = Check(False, detail)
            return raised == ok

    def checks(self) -> dict[str, Check]:
        with self._lock:
            return dict(self._checks)


ALARMS = Alarms()
COURIER_CREDENTIALS = "courier"  # the alarm raised while Courier rejects the credentials


FileId = tuple[int, int]  # (device, inode)


def _identity(path: str) -> FileId | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def sqlite_path(url: str) -> str | None:
    """The file a `sqlite:///...` URL names (resolved), or None (another database, or in memory)."""
    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return str(Path(database).resolve())


def queue_path(url: str) -> str | None:
    """The file of a SQLite queue URL (as `queue.make_huey` reads it), or None."""
    if not url.startswith("sqlite:"):
        return None
    path = url.split("sqlite:///", 1)[1] if url.startswith("sqlite:///") else urlparse(url).path
    return str(Path(path).resolve()) if path else None


SIDE_FILES = ("-wal", "-shm")  # SQLite's write-ahead log and its shared-memory index, beside the database


def unwritable(path: str) -> list[str]:
    """Which of a SQLite database's files (the file, its -wal and -shm when they exist, and its
    folder, where SQLite creates them) this process cannot write: read-only, immutable, or on a
    file system mounted read-only."""
    files = (path, *(path + side for side in SIDE_FILES))
    found = [p for p in files if os.path.exists(p) and not os.access(p, os.W_OK)]
    folder = os.path.dirname(path) or "."
    if not os.access(folder, os.W_OK):
        found.append(f"{folder} (its folder)")
    return found


class DataFiles:
    """The SQLite files of this process: whether they are still the ones it opened, and writable."""

    def __init__(self, paths: dict[str, str]):
        self.paths = paths  # label ("database", "queue") -> path
        self.opened = {label: _identity(path) for label, path in paths.items()}

    def check(self) -> Check:
        problems = [problem for label, path in self.paths.items() if (problem := self._moved(label, path))]
        if problems:
            return Check(False, "; ".join(problems) + ": what is written now is lost at the next restart; "
                                                      "restore the file and restart the engine")
        return self._writable()

    def _moved(self, label: str, path: str) -> str | None:
        """What happened to a file since the process opened it (removed, replaced), or None."""
        now = _identity(path)
        if self.opened[label] is None:  # not there at start (a queue nobody has written yet)
            self.opened[label] = now
        if now is None:
            return f"the {label} file {path} was removed while the engine runs"
        if now != self.opened[label]:
            return f"the {label} file {path} was replaced while the engine runs"
        return None

    def _writable(self) -> Check:
        problems = [f"the {label}'s {', '.join(found)} cannot be written" for label, path in self.paths.items()
                    if (found := unwritable(path))]
        if problems:
            shm = " (a -shm file that cannot be written kills the engine with SIGBUS at its next read)" \
                if any("-shm" in p for p in problems) else ""
            return Check(False, "; ".join(problems) + f": nothing can be stored{shm}; make them writable again "
                                                      "(chmod u+w, chattr -i, a read-write mount)")
        return Check(True, ", ".join(self.paths.values()) or "no files (not SQLite)")


class Readiness:
    """The checks behind `GET /readyz`; `check()` runs them all, each within `timeout_s`."""

    def __init__(self, engine: Engine, queue_url: str, *, timeout_s: float = CHECK_TIMEOUT_S,
                 schema_every_s: float = SCHEMA_EVERY_S):
        self.engine, self.queue_url, self.timeout_s, self.schema_every_s = engine, queue_url, timeout_s, schema_every_s
        paths = {"database": sqlite_path(engine.url.render_as_string()), "queue": queue_path(queue_url)}
        self.files = DataFiles({label: path for label, path in paths.items() if path})
        self._schema: tuple[float, Check] | None = None
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readiness")
        self._running: dict[str, Future[Check]] = {}
        self._states: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._redis: object | None = None

    # -- the checks --------------------------------------------------------------------------
    def _store(self) -> Check:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1").scalar()
        return Check(True, self.engine.dialect.name)

    def _schema_current(self) -> Check:
        cached = self._schema
        if cached is not None and time.monotonic() - cached[0] < self.schema_every_s:
            return cached[1]
        from .store.db import is_current

        found = Check(True, "at the migrations' head") if is_current(self.engine) else \
            Check(False, "older than this engine: run `engine db upgrade`")
        self._schema = (time.monotonic(), found)
        return found

    def _queue(self) -> Check:
        path = queue_path(self.queue_url)
        if path is not None:
            self._read_sqlite_queue(path)
            return Check(True, "sqlite")
        self._redis_client().ping()  # type: ignore[attr-defined]
        return Check(True, "redis")

    def _read_sqlite_queue(self, path: str) -> None:
        # mode=rw: a queue file that is gone is not created anew by looking at it
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=self.timeout_s)
        try:
            conn.execute("SELECT 1 FROM task LIMIT 1").fetchall()
        finally:
            conn.close()

    def _redis_client(self) -> object:
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(self.queue_url, socket_timeout=self.timeout_s,
                                               socket_connect_timeout=self.timeout_s)
        return self._redis

    # -- running them ------------------------------------------------------------------------
    def check(self) -> dict[str, Check]:
        """Every check by name; a check that raises or takes longer than `timeout_s` fails."""
        results = self._probed()
        self._log_changes(results)
        alarms = ALARMS.checks()
        self._log_changes(alarms)
        return {**{name: results[name] for name in ("store", "schema", "queue", "files")}, **alarms}

    def _probed(self) -> dict[str, Check]:
        """The store and the queue at once, then the schema where the store answers, and the files."""
        deadline = time.monotonic() + self.timeout_s
        futures = {name: self._start(name, probe) for name, probe in
                   (("store", self._store), ("queue", self._queue))}
        results = {name: self._wait(name, future, deadline) for name, future in futures.items()}
        results["schema"] = self._schema_check(results["store"].ok)
        results["files"] = self.files.check()
        return results

    def _schema_check(self, store_answers: bool) -> Check:
        """Asked of a store that answers only: it has a deadline of its own."""
        if not store_answers:
            return Check(False, "not checked: the store does not answer")
        return self._wait("schema", self._start("schema", self._schema_current), time.monotonic() + self.timeout_s)

    def _start(self, name: str, probe: Callable[[], Check]) -> Future[Check]:
        # A probe that hangs (a server that stopped answering) is not started again until it ends:
        # the threads it holds stay bounded however often readiness is asked.
        with self._lock:
            running = self._running.get(name)
            if running is None or running.done():
                running = self._running[name] = self._pool.submit(probe)
            return running

    def _wait(self, name: str, future: Future[Check], deadline: float) -> Check:
        try:
            return future.result(max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            return Check(False, f"no answer within {self.timeout_s:g} s")
        except Exception as exc:  # noqa: BLE001 - any error of a probe is a failed check
            return Check(False, brief(exc))

    def _log_changes(self, results: dict[str, Check]) -> None:
        with self._lock:
            for name, result in results.items():
                _log_change(name, self._states.get(name, True), result)
                self._states[name] = result.ok

    def watch_files(self, stop: threading.Event, every_s: float = WATCH_EVERY_S) -> threading.Thread:
        """Look at the data files every `every_s` on a thread of their own, so a removed or replaced
        file is logged when it happens, not when somebody next asks /readyz."""
        thread = threading.Thread(target=self._watch, args=(stop, every_s), name="engine-file-watch", daemon=True)
        if self.files.paths:
            thread.start()
        return thread

    def _watch(self, stop: threading.Event, every_s: float) -> None:
        while not stop.wait(every_s):
            try:
                self._log_changes({"files": self.files.check()})
            except Exception:  # noqa: BLE001 - a watch that dies would hide the next fault
                log.exception("the data-file watch failed")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _log_change(name: str, was_ok: bool, result: Check) -> None:
    if was_ok and not result.ok:
        log.error("not ready: %s: %s", name, result.detail)
    elif not was_ok and result.ok:
        log.warning("ready again: %s", name)
