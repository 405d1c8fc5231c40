"""preview_events_per_s and preview_scaling: `engine preview` on 100 000 events, and its rate
at 100 000 events divided by its rate at 10 000; backtest_100k_s: `engine backtest` over 100 000
recorded events.

The events are copies of examples.jsonl (38 events over a fortnight, 82 sends), each copy with
ids of its own (people, bookings, conversations, events), at the same times: every copy must get
exactly the sends one copy gets, and the bench checks it. The preview runs the live runtime on a
scratch database (engine/preview.py), so these are also the live engine's figures for deciding,
scheduling, claiming and recording, without the network.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from .common import CONFIG, ROOT, emit, log, module_args, profiler, scratch

EXAMPLES = ROOT / "examples.jsonl"


def copies(n_events: int) -> list[dict[str, Any]]:
    """`n_events` events: copies of examples.jsonl, copy k with every id suffixed `~k`."""
    base = [json.loads(line) for line in EXAMPLES.read_text().splitlines() if line.strip()]
    out: list[dict[str, Any]] = []
    k = 0
    while len(out) < n_events:
        out.extend(base if k == 0 else (_tag(e, k) for e in base))
        k += 1
    return out[:n_events]


def _tag(value: Any, k: int) -> Any:
    if isinstance(value, dict):
        return {key: (f"{v}~{k}" if key in ("id", "conversation_id") and isinstance(v, str) else _tag(v, k))
                for key, v in value.items()}
    if isinstance(value, list):
        return [_tag(v, k) for v in value]
    return value


def _untagged(row: dict[str, Any]) -> tuple[Any, ...]:
    """A row as copy 0 would have it (for checking that every copy got the same)."""
    strip = lambda v: v.split("~")[0] if isinstance(v, str) else v  # noqa: E731
    return (row["notification"], strip(row["recipient"]), row["send_at"], row["status"], row["reason"], row["template"])


def preview_rate(config: Any, events: list[dict[str, Any]], prof: Any = None) -> tuple[float, list[dict[str, Any]]]:
    from engine.preview import run

    raw = list(enumerate(events, 1))
    done = {"at": time.perf_counter()}

    def progress(n: int, total: int) -> None:
        if time.perf_counter() - done["at"] > 10:
            done["at"] = time.perf_counter()
            log(f"preview: {n}/{total} events")

    if prof is not None:
        prof.start()
    t0 = time.perf_counter()
    result = run(config, raw, progress=progress)
    elapsed = time.perf_counter() - t0
    if prof is not None:
        prof.stop()
    assert not result.rejected, result.rejected[:3]
    return len(events) / elapsed, [r.as_json() for r in result.rows]


def check_copies(rows: list[dict[str, Any]], n_copies: int) -> bool:
    """Every copy got exactly the sends copy 0 got."""
    by_copy: dict[str, Counter[tuple[Any, ...]]] = {}
    for row in rows:
        tag = row["recipient"].split("~")[1] if "~" in row["recipient"] else "0"
        by_copy.setdefault(tag, Counter())[_untagged(row)] += 1
    first = by_copy.get("0")
    return len(by_copy) == n_copies and all(c == first for c in by_copy.values())


def backtest_seconds(config: Any, events: list[dict[str, Any]]) -> float:
    """`engine backtest` (the current rules against the same rules) over `events`, recorded in a
    SQLite store with their times moved into the last week."""
    from engine.backtest import backtest
    from engine.core.decide import decide
    from engine.core.events import parse_event
    from engine.store.db import connect, upgrade
    from engine.store.repository import Store

    now = datetime.now(UTC)
    first = min(datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00")) for e in events)
    shift = (now - timedelta(days=7)) - first
    with scratch("bench-backtest-") as work:
        engine = connect(f"sqlite:///{work}/engine.db")
        upgrade(engine)
        store = Store(engine)
        t0 = time.perf_counter()
        batch: list[Any] = []
        for raw in events:
            moved = {
                **raw,
                "occurred_at": (datetime.fromisoformat(raw["occurred_at"].replace("Z", "+00:00")) + shift).isoformat(),
            }
            event = parse_event(moved, config)
            batch.append((event, decide(config, event, event.occurred_at)))
            if len(batch) == 1000:
                store.ingest(batch, now)
                batch = []
        store.ingest(batch, now)
        log(f"backtest: {len(events)} events recorded in {time.perf_counter() - t0:.0f} s")
        t0 = time.perf_counter()
        count, changes = backtest(store, config, str(ROOT), now - timedelta(days=7, hours=1), now, "production")
        elapsed = time.perf_counter() - t0
        engine.dispose()
    assert count == len(events) and not changes, (count, changes[:3])
    return elapsed


def main() -> None:
    p = module_args(__doc__.splitlines()[0])
    args = p.parse_args()
    from engine.rules.loader import load

    config = load(CONFIG)
    per_copy = sum(1 for line in EXAMPLES.read_text().splitlines() if line.strip())
    small, large = ((27, 264) if args.quick else (264, 2_632))  # copies: about 1 000 / 10 000 / 100 000 events
    small, large = small * per_copy, large * per_copy
    prof = profiler(args.profile)
    out: dict[str, Any] = {"events_small": small, "events_large": large}
    rate_small, _ = preview_rate(config, copies(small))
    log(f"preview: {small} events at {rate_small:.0f} events/s")
    events = copies(large)
    rate_large, rows = preview_rate(config, events, prof)
    log(f"preview: {large} events at {rate_large:.0f} events/s ({len(rows)} sends)")
    prof.write()
    out["copies_identical"] = check_copies(rows, large // per_copy)
    out["sends"] = len(rows)
    out["preview_seconds"] = round(large / rate_large, 1)
    out["preview_events_per_s"] = round(rate_large)
    out["preview_events_per_s_small"] = round(rate_small)
    out["preview_scaling"] = round(rate_large / rate_small, 3)
    out["backtest_s"] = round(backtest_seconds(config, events), 1)
    log(f"backtest: {large} recorded events in {out['backtest_s']} s")
    emit(out)


if __name__ == "__main__":
    main()
