"""`python -m bench [--quick] [--only NAME ...]`: run every figure, print a table, then ONE JSON line.

Each figure runs in a child process of its own (`python -m bench.<module>`), one after the
other, so that no measurement disturbs another; their progress goes to stderr. The table is
for people; the last line of stdout is the JSON object other tools read: every figure key of
the issue (a number, or null when its measurement failed), plus `quick`, `labels`, `targets`,
`met` and `extra` (the figures without a target).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Any

from .common import PYTHON, ROOT

# key, module, extra args, what (for the table), target (op, value)
FIGURES: list[tuple[str, str, list[str], str, tuple[str, float]]] = [
    ("match_scaling", "match", [], "events matched/s, 10 000 rules / 100 rules (50 event types)", (">=", 0.8)),
    ("persist_ratio", "persist", [], "rows/s Store.ingest / raw sqlite3 executemany, same rows", (">=", 0.6)),
    ("ingest_ratio", "ingest", [], "POST /events/s engine / bare Starlette 202, same uvicorn + load", (">=", 0.6)),
    ("dispatch_ratio", "dispatch", [], "sends/s Runtime.deliver+CourierBackend / raw httpx, same concurrency", (">=", 0.8)),
    ("dispatch_latency_ratio", "dispatch", [], "the same with 50 ms at the stand-in / (concurrency / 0.05 s)", (">=", 0.9)),
    ("lateness_p99_s", "lateness", [], "p99 send time - due time, loaded run (start_worker, SqliteHuey, sweep)", ("<=", 1.25)),
    ("idle_lateness_p99_s", "lateness", [], "the same for sends due after idleness", ("<=", 1.25)),
    ("pending_1m_rss_growth_mb", "pending", [], "worker RSS growth with pending notifications in the store", ("<=", 50)),
    ("cancel_at_1m_ms", "pending", [], "cancel one booking's reminders (booking.cancelled ingest), pending rows", ("<=", 10)),
    ("validate_5k_rules_s", "validate", [], "`engine validate`, generated config of 5 000 notifications", ("<=", 3)),
    ("preview_scaling", "preview", [], "`engine preview` events/s at 100 000 events / at 10 000", (">=", 0.8)),
    ("preview_events_per_s", "preview", [], "`engine preview` events/s on 100 000 events (100 000 in <= 60 s)", (">=", 1667)),
    ("backtest_s", "preview", [], "`engine backtest` over 100 000 recorded events, seconds", ("<=", 90)),
]
EXTRAS_QUICK = [("serve", []), ("ingest_pg", ["--store", "pg"]), ("pipeline_pg", ["--store", "pg"])]
EXTRAS_FULL = EXTRAS_QUICK + [("dispatch_pg", ["--store", "pg"]), ("pipeline", [])]


def run_module(module: str, args: list[str], quick: bool, timeout: float) -> tuple[dict[str, Any] | None, str | None, float]:
    cmd = [PYTHON, "-m", f"bench.{module}", *(["--quick"] if quick else []), *args]
    print(f"[bench] == {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, cwd=str(ROOT), stdout=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s", time.perf_counter() - t0
    elapsed = time.perf_counter() - t0
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        return None, f"exit {out.returncode}", elapsed
    try:
        return json.loads(lines[-1]), None, elapsed
    except json.JSONDecodeError:
        return None, "no JSON result", elapsed


def met(value: float | None, target: tuple[str, float]) -> bool | None:
    if value is None:
        return None
    op, limit = target
    return value >= limit if op == ">=" else value <= limit


def fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def notes(key: str, r: dict[str, Any]) -> str:
    if key == "match_scaling":
        return (f"{r['events_per_s_10000']:,} vs {r['events_per_s_100']:,} events/s; index build {r['index_build_ms_10000']} ms; "
                f"full decide {r['decide_events_per_s_10000']} vs {r['decide_events_per_s_100']} events/s")
    if key == "persist_ratio":
        return (f"{r['engine_rows_per_s']:,} vs {r['raw_rows_per_s']:,} rows/s ({r['notification_rows']} rows, batches of "
                f"{r['batch_events']} events); 1 event/tx: {r['single_event_tx_rows_per_s']:,} rows/s")
    if key == "ingest_ratio":
        lat = r["engine_latency_ms"]
        return (f"{r['engine_rps']:.0f} vs {r['bare_rps']:.0f} req/s, {r['connections']} connections; engine "
                f"{r['engine_cpu_ms_per_request']} ms CPU/req, p50 {lat.get('p50')} ms p99 {lat.get('p99')} ms")
    if key == "dispatch_ratio":
        return f"{r['engine_sends_per_s']:.0f} vs {r['raw_sends_per_s']:.0f} sends/s, concurrency {r['concurrency']}"
    if key == "dispatch_latency_ratio":
        return (f"{r['latency_engine_sends_per_s']:.0f} vs ideal {r['latency_ideal_sends_per_s']:.0f} sends/s "
                f"(raw httpx {r['latency_raw_sends_per_s']:.0f})")
    if key == "lateness_p99_s":
        return (f"{r['loaded_sends']} sends due in {r['load_s']:.0f} s at {r['rate_events_per_s']:.0f} events/s ingested; "
                f"p50 {r['loaded_lateness_s'].get('p50')} s")
    if key == "idle_lateness_p99_s":
        label = "" if r["idle_s"] >= 120 else " (--quick: 20 s idle, not 2 min)"
        return f"{r['idle_lateness_s'].get('n')} sends due after {r['idle_s']:.0f} s idle{label}"
    if key == "pending_1m_rss_growth_mb":
        return (f"{r['label']}: peak {r['worker_pending']['rss_peak_mb']} vs {r['worker_empty']['rss_peak_mb']} MB empty; "
                f"one sweep {r['worker_pending']['sweep_ms']} ms")
    if key == "cancel_at_1m_ms":
        c = r["cancel"]
        return f"{r['label']}: p90 {c['p90_ms']} ms, {c['reminders_cancelled_per_booking']} reminders per booking"
    if key == "validate_5k_rules_s":
        return f"exit {r['exit_codes']}, runs {r['runs_s']} s; `engine --help` alone {r['engine_help_s']} s"
    if key in ("preview_scaling", "preview_events_per_s", "backtest_s"):
        return (f"{r['events_large']} events ({r['sends']} sends) in {r['preview_seconds']} s; "
                f"{r['events_small']} events at {r['preview_events_per_s_small']}/s; every copy the same: {r['copies_identical']}")
    return ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a run under 3 minutes (smaller sizes, shorter runs, labelled)")
    p.add_argument("--only", nargs="*", metavar="MODULE", help="run only these modules (match persist ingest dispatch "
                   "lateness pending validate preview serve ingest_pg pipeline_pg dispatch_pg pipeline)")
    p.add_argument("--no-extra", action="store_true", help="skip the figures without a target")
    args = p.parse_args(argv)
    started = time.perf_counter()
    timeout = 240 if args.quick else 1800
    results: dict[str, dict[str, Any] | None] = {}
    errors: dict[str, str] = {}
    durations: dict[str, float] = {}
    wanted = set(args.only) if args.only else None
    for module in dict.fromkeys(m for _, m, _, _, _ in FIGURES):
        if wanted is None or module in wanted:
            results[module], err, durations[module] = run_module(module, [], args.quick, timeout)
            if err:
                errors[module] = err
    extras = [] if args.no_extra else (EXTRAS_QUICK if args.quick else EXTRAS_FULL)
    for name, extra_args in extras:
        if wanted is None or name in wanted:
            module = name.removesuffix("_pg")
            results[name], err, durations[name] = run_module(module, extra_args, args.quick, timeout)
            if err:
                errors[name] = err

    figures: dict[str, Any] = {}
    rows = []
    for key, module, _, what, target in FIGURES:
        r = results.get(module)
        value = r.get(key) if r else None
        figures[key] = value
        ok = met(value, target)
        verdict = "n/a" if ok is None else ("ok" if ok else "MISS")
        note = errors.get(module, "") if r is None else notes(key, r)
        rows.append((key, fmt(value), f"{target[0]} {target[1]:g}", verdict, what, note))

    out = sys.stdout
    mode = "--quick" if args.quick else "full"
    print(f"\nnotification engine benchmarks ({mode}), {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}, "
          f"python {platform.python_version()}, {platform.machine()}", file=out)
    w = [max(len(r[i]) for r in rows + [("figure", "value", "target", "result")]) for i in range(4)]
    print(f"{'figure':<{w[0]}}  {'value':>{w[1]}}  {'target':<{w[2]}}  {'result':<{w[3]}}  what / detail", file=out)
    print("-" * (sum(w) + 40), file=out)
    for key, value, target, verdict, what, note in rows:
        print(f"{key:<{w[0]}}  {value:>{w[1]}}  {target:<{w[2]}}  {verdict:<{w[3]}}  {what}", file=out)
        if note:
            print(f"{'':<{w[0]}}  {'':>{w[1]}}  {'':<{w[2]}}  {'':<{w[3]}}    {note}", file=out)
    extra: dict[str, Any] = {}
    if extras:
        print("\nwithout a target:", file=out)
        serve = results.get("serve")
        if serve:
            extra["serve_events_per_s_p99_25ms"] = serve["serve_events_per_s_p99_25ms"]
            steps = ", ".join(f"{s['rate']:g}/s p99 {s['p99_ms']} ms" for s in serve["steps"])
            print(f"  engine serve (SQLite, worker on), events/s with p99 < 25 ms: {fmt(extra['serve_events_per_s_p99_25ms'])}"
                  f"  [{steps}]", file=out)
        for name, label in (("ingest_pg", "ingest on PostgreSQL + Redis"),):
            r = results.get(name)
            if r:
                extra["ingest_pg_events_per_s"] = r["engine_rps"]
                extra["ingest_pg_ratio"] = r["ingest_ratio"]
                print(f"  {label}: {r['engine_rps']:.0f} events/s (bare Starlette {r['bare_rps']:.0f}, ratio {r['ingest_ratio']}), "
                      f"p99 {r['engine_latency_ms'].get('p99')} ms at {r['connections']} connections", file=out)
        r = results.get("dispatch_pg")
        if r:
            extra["dispatch_pg_sends_per_s"] = r["engine_sends_per_s"]
            extra["dispatch_pg_ratio"] = r["dispatch_ratio"]
            print(f"  dispatch on PostgreSQL (Runtime.deliver, concurrency {r['concurrency']}): {r['engine_sends_per_s']:.0f} sends/s "
                  f"(raw httpx {r['raw_sends_per_s']:.0f}, ratio {r['dispatch_ratio']})", file=out)
        for name, key, label in (("pipeline_pg", "pipeline_pg_redis_sends_per_s", "dispatch pipeline on PostgreSQL + Redis"),
                                 ("pipeline", "pipeline_sqlite_sends_per_s", "dispatch pipeline on SQLite + SqliteHuey")):
            r = results.get(name)
            if r:
                extra[key] = r["pipeline_sends_per_s"]
                print(f"  {label} (sweep -> Huey -> 4 workers -> stand-in): {r['pipeline_sends_per_s']:.0f} sends/s "
                      f"({r['sends']} sends)", file=out)
        for name in ("serve", "ingest_pg", "pipeline_pg", "dispatch_pg", "pipeline"):
            if name in errors:
                print(f"  {name}: failed ({errors[name]})", file=out)
    total = time.perf_counter() - started
    print(f"\nran in {total:.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in durations.items()), file=out)
    labels = {}
    lat = results.get("lateness")
    if lat:
        labels["idle_lateness_p99_s"] = f"after {lat['idle_s']:.0f} s idle" + (" (--quick)" if lat["idle_s"] < 120 else "")
    pend = results.get("pending")
    if pend:
        labels["pending_1m_rss_growth_mb"] = labels["cancel_at_1m_ms"] = f"{pend['pending_rows']} pending rows"
    summary = {**figures, "quick": args.quick, "labels": labels,
               "targets": {k: f"{t[0]} {t[1]:g}" for k, _, _, _, t in FIGURES},
               "met": {k: met(figures[k], t) for k, _, _, _, t in FIGURES}, "extra": extra, "seconds": round(total)}
    print(json.dumps(summary), file=out, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
