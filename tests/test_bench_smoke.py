"""The benchmark's limits do what BENCHMARKS.md says they do, on a tiny scale (seconds, no timing
asserted): the one-insert handler stores the event before its 202, the raw persist limit writes
exactly the rows the engine wrote, and a py-spy profile is summed by phase of the ingest path."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from bench import loadgen
from bench.common import EventMaker, engine_env, free_port, pyspy_phases, runtime, stop_process, wait_port
from bench.persist import WRITTEN, engine_round, prepared, raw_round, read_tables

ROOT = Path(__file__).resolve().parent.parent


def test_durable_handler_answers_after_the_row_is_committed(tmp_path: Path, shipped_config) -> None:
    db = tmp_path / "limit.db"
    port = free_port()
    env = engine_env(tmp_path, BENCH_LIMIT_DATABASE_URL=f"sqlite:///{db}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.servers", "durable", "--port", str(port)],
        cwd=str(ROOT),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc)
        events = EventMaker(shipped_config, prefix="evt_smoke").batch(3)
        res = loadgen.closed_loop(
            port, [loadgen.post("/events", json.dumps(e).encode(), port) for e in events], 1, 5, 0
        )
        assert res.statuses == {202: 3}
        # read from another connection while the server still runs: the rows are committed
        stored = sqlite3.connect(db).execute("SELECT id, type, payload FROM events ORDER BY id").fetchall()
    finally:
        stop_process(proc)
    assert [(i, t) for i, t, _ in stored] == sorted((e["id"], e["type"]) for e in events)
    assert {json.loads(p)["id"] for _, _, p in stored} == {e["id"] for e in events}


def test_raw_persist_limit_writes_every_row_the_engine_wrote(tmp_path: Path) -> None:
    setup = runtime(tmp_path / "setup")
    now, batch = prepared(setup, 60)
    setup.store.engine.dispose()
    _, _, db = engine_round(tmp_path / "engine", batch, now)
    tables = read_tables(db)
    assert tables["events"][1] and tables["notifications"][1] and tables["recipients"][1]
    raw_round(tmp_path / "raw.db", tables)
    assert read_tables(str(tmp_path / "raw.db")) == tables
    assert set(tables) == set(WRITTEN)


def _commit_line() -> int:
    """The line of the store's write transaction that commits (where a py-spy sample of a commit points)."""
    import inspect

    from engine.store.transactions import Transactions

    lines, first = inspect.getsourcelines(Transactions._cursor)
    [offset] = [i for i, line in enumerate(lines) if line.strip() == "conn.commit()"]
    return first + offset


COMMIT_LINE = _commit_line()


def test_pyspy_phases_names_the_innermost_phase(tmp_path: Path) -> None:
    loop = "thread (1): MainThread;run (uvicorn/server.py:1);wrapped (starlette/routing.py:2)"
    intake = "thread (2): intake;Thread.run (threading.py:982);Intake._run (engine/http/intake.py:89)"
    profile = tmp_path / "spy.txt"
    profile.write_text("\n".join([
        f"{loop};post_events (engine/http/ingest.py:35);parse_json (engine/http/body.py:50) 2",
        f"{intake};decide (engine/core/decide.py:10);render (engine/core/rendering.py:5) 2",
        f"{intake};decide (engine/core/decide.py:10);render_data (engine/rules/expressions/render.py:5) 1",
        f"{intake};GroupCommit._commit (engine/store/groupcommit.py:61);Ingest._ingest (engine/store/ingest.py:124) 4",
        f"{intake};GroupCommit._commit (engine/store/groupcommit.py:60);__exit__ (contextlib.py:144);"
        f"Transactions._cursor (engine/store/transactions.py:{COMMIT_LINE}) 1",
        f"{intake};Condition.wait (threading.py:320);wait (threading.py:1) 50",  # idle: left out
    ]))
    text = pyspy_phases(str(profile))
    assert "busy samples: 10" in text
    lines = {line.split("%", 1)[1].strip(): float(line.split("%")[0]) for line in text.splitlines()[1:]}
    assert lines["parsing JSON, formats"] == 20.0
    assert lines["rendering: templates, expressions, the Courier message"] == 30.0
    assert lines["store: statements (events, sends, recipients, digests, savepoints)"] == 40.0
    assert lines["store: BEGIN, COMMIT, WAL checkpoints"] == 10.0


def test_durable_dispatch_limit_commits_the_claim_before_the_request_and_the_finish_after(tmp_path: Path) -> None:
    from bench.dispatch import DurableLoop, queued_rows

    rt = runtime(tmp_path)
    rows = queued_rows(rt, 2)
    loop = DurableLoop(rt.store)
    seen: list[str] = []

    def send(row: tuple[int, dict, str]) -> str:  # what another connection sees while the request is out
        seen.append(sqlite3.connect(tmp_path / "engine.db").execute(
            "SELECT status FROM notifications WHERE id = ?", (row[0],)).fetchone()[0])
        return "sent"

    assert [loop.work(row, send) for row in rows] == ["sent", "sent"]
    assert loop.work(rows[0], send) == "not claimed"  # a claim is taken once
    loop.close()
    assert seen == ["sending", "sending"]
    assert {rt.store.status(row[0]) for row in rows} == {"sent"}
    rt.store.engine.dispose()
