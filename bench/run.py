"""`python -m bench [--quick] [--only NAME ...]`: run every figure, print a table, then ONE JSON line.

Each figure runs in a child process of its own (`python -m bench.<module>`), one after the
other, so that no measurement disturbs another; their progress goes to stderr. The table is
for people; the last line of stdout is the JSON object other tools read: every figure key of
BENCHMARKS.md (a number, or null when its measurement failed; the old limits' ratios are kept,
with a null target), plus `quick`, `labels`, `targets`, `met` and `extra` (more figures
without a target).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .common import PYTHON, ROOT

# A run: name -> (module, its arguments). Each runs once, in a child process of its own.
RUNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "match": ("match", ()),
    "persist": ("persist", ()),
    "ingest": ("ingest", ()),
    "ingest_pg": ("ingest", ("--store", "pg")),
    "batch": ("batch", ()),
    "dispatch": ("dispatch", ()),
    "pipeline": ("pipeline", ("--store", "both")),
    "lateness": ("lateness", ()),
    "pending": ("pending", ()),
    "validate": ("validate", ()),
    "preview": ("preview", ()),
}
EXTRAS_QUICK: dict[str, tuple[str, tuple[str, ...]]] = {"serve": ("serve", ())}
EXTRAS_FULL = {**EXTRAS_QUICK, "dispatch_pg": ("dispatch", ("--store", "pg"))}

# key, run, the key in that run's result, what (for the table), target (op, value) or None: the
# old limits are kept as reported figures, without a target (BENCHMARKS.md says why).
FIGURES: list[tuple[str, str, str, str, tuple[str, float] | None]] = [
    ("match_scaling", "match", "match_scaling",
     "events matched/s, 10 000 rules / 100 rules (50 event types)", (">=", 0.8)),
    ("persist_all_ratio", "persist", "persist_all_ratio",
     "rows/s Store.ingest / raw executemany of ALL the rows it wrote (every table)", (">=", 0.9)),
    ("persist_ratio", "persist", "persist_ratio",
     "old limit: the same / raw executemany of the notifications rows only", None),
    ("ingest_limit_ratio", "ingest", "ingest_limit_ratio",
     "POST /events/s engine / one durable insert per request (SQLite), same server", (">=", 0.5)),
    ("ingest_ratio", "ingest", "ingest_ratio", "old limit: the same / bare Starlette 202 (stores nothing)", None),
    ("ingest_pg_limit_ratio", "ingest_pg", "ingest_limit_ratio",
     "the same on PostgreSQL + Redis / one insert per request, same pool", (">=", 0.5)),
    ("ingest_batch100_ratio", "batch", "ingest_batch100_ratio",
     "events/s in batches of 100 over HTTP / persist limit for the same events", (">=", 0.7)),
    ("dispatch_limit_ratio", "dispatch", "dispatch_limit_ratio",
     "sends/s Runtime.deliver+CourierBackend / SDK loop with one claim and one finish transaction a send", (">=", 0.9)),
    ("dispatch_sdk_ratio", "dispatch", "dispatch_sdk_ratio",
     "old limit: the same / bare SDK loop (client.post), same concurrency, no store", None),
    ("dispatch_ratio", "dispatch", "dispatch_ratio", "old limit: the same / raw httpx", None),
    ("dispatch_latency_ratio", "dispatch", "dispatch_latency_ratio",
     "the same with 50 ms at the stand-in / (concurrency / 0.05 s)", (">=", 0.9)),
    ("pipeline_pg_ratio", "pipeline", "pipeline_pg_ratio",
     "sends/s sweep -> Huey -> 4 workers, PostgreSQL + Redis / the same on SQLite", (">=", 0.8)),
    ("lateness_p99_s", "lateness", "lateness_p99_s",
     "p99 send time - due time, loaded run (start_worker, SqliteHuey, sweep)", ("<=", 0.5)),
    ("idle_lateness_p99_s", "lateness", "idle_lateness_p99_s", "the same for sends due after idleness", ("<=", 0.5)),
    ("pending_1m_rss_growth_mb", "pending", "pending_1m_rss_growth_mb",
     "worker RSS growth with pending notifications in the store", ("<=", 50)),
    ("cancel_at_1m_ms", "pending", "cancel_at_1m_ms",
     "cancel one booking's reminders (booking.cancelled ingest), pending rows", ("<=", 2)),
    ("validate_5k_rules_s", "validate", "validate_5k_rules_s",
     "`engine validate`, generated config of 5 000 notifications", ("<=", 3)),
    ("preview_scaling", "preview", "preview_scaling",
     "`engine preview` events/s at 100 000 events / at 10 000", (">=", 0.8)),
    ("preview_events_per_s", "preview", "preview_events_per_s",
     "`engine preview` events/s on 100 000 events (100 000 in <= 60 s)", (">=", 1667)),
    ("backtest_s", "preview", "backtest_s", "`engine backtest` over 100 000 recorded events, seconds", ("<=", 90)),
]


def run_module(
    module: str, args: list[str], quick: bool, timeout: float
) -> tuple[dict[str, Any] | None, str | None, float]:
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


def met(value: float | None, target: tuple[str, float] | None) -> bool | None:
    if value is None or target is None:
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
    """The figures behind a ratio: both sides, wall and CPU."""
    if key == "match_scaling":
        return (f"{r['events_per_s_10000']:,} vs {r['events_per_s_100']:,} events/s; "
                f"index build {r['index_build_ms_10000']} ms; "
                f"full decide {r['decide_events_per_s_10000']} vs {r['decide_events_per_s_100']} events/s")
    if key == "persist_all_ratio":
        return (f"{r['engine_all_rows_per_s']:,} vs {r['raw_all_rows_per_s']:,} rows/s ({r['all_rows']} rows of "
                f"{r['events']} events: {r['rows_written']}); CPU {r['engine_cpu_ms_per_event']} vs "
                f"{r['raw_all_cpu_ms_per_event']} ms/event")
    if key == "persist_ratio":
        return (f"{r['engine_rows_per_s']:,} vs {r['raw_rows_per_s']:,} notification rows/s (batches of "
                f"{r['batch_events']} events); 1 event/tx: {r['single_event_tx_rows_per_s']:,} rows/s")
    if key in ("ingest_limit_ratio", "ingest_pg_limit_ratio"):
        lat = r["engine_latency_ms"]
        return (f"{r['engine_rps']:.0f} vs {r['durable_rps']:.0f} req/s ({r.get('durable_way', 'on the event loop')}), "
                f"{r['connections']} connections; "
                f"CPU {r['engine_cpu_ms_per_request']} vs {r['durable_cpu_ms_per_request']} ms/req "
                f"(CPU ratio {r['ingest_limit_cpu_ratio']}); engine p50 {lat.get('p50')} ms p99 {lat.get('p99')} ms")
    if key == "ingest_ratio":
        return (f"{r['engine_rps']:.0f} vs {r['bare_rps']:.0f} req/s; CPU {r['engine_cpu_ms_per_request']} vs "
                f"{r['bare_cpu_ms_per_request']} ms/req")
    if key == "ingest_batch100_ratio":
        return (f"{r['engine_events_per_s']:.0f} vs {r['raw_all_events_per_s']:.0f} events/s, "
                f"{r['connections']} connections; "
                f"CPU {r['engine_cpu_ms_per_event']} vs {r['raw_all_cpu_ms_per_event']} ms/event; "
                f"p99 {r['engine_latency_ms'].get('p99')} ms a batch")
    if key == "dispatch_limit_ratio":
        return (
            f"{r['engine_sends_per_s']:.0f} vs {r['durable_sends_per_s']:.0f} sends/s, concurrency {r['concurrency']}; "
            f"CPU {r['engine_cpu_ms_per_send']} vs {r['durable_cpu_ms_per_send']} ms/send"
        )
    if key == "dispatch_sdk_ratio":
        return (f"{r['engine_sends_per_s']:.0f} vs {r['sdk_sends_per_s']:.0f} sends/s, concurrency {r['concurrency']}; "
                f"CPU {r['engine_cpu_ms_per_send']} vs {r['sdk_cpu_ms_per_send']} ms/send")
    if key == "dispatch_ratio":
        return (f"{r['engine_sends_per_s']:.0f} vs {r['raw_sends_per_s']:.0f} sends/s; "
                f"CPU {r['engine_cpu_ms_per_send']} vs {r['raw_cpu_ms_per_send']} ms/send")
    if key == "dispatch_latency_ratio":
        return (f"{r['latency_engine_sends_per_s']:.0f} vs ideal {r['latency_ideal_sends_per_s']:.0f} sends/s "
                f"(raw httpx {r['latency_raw_sends_per_s']:.0f})")
    if key == "pipeline_pg_ratio":
        return (f"{r['pipeline_pg_redis_sends_per_s']:.0f} vs {r['pipeline_sqlite_sends_per_s']:.0f} sends/s "
                f"({r['sends_per_round']} sends a round; rounds PG {r['pg_rounds']}, SQLite {r['sqlite_rounds']})")
    if key == "lateness_p99_s":
        return (
            f"{r['loaded_sends']} sends due in {r['load_s']:.0f} s at {r['rate_events_per_s']:.0f} events/s ingested; "
            f"p50 {r['loaded_lateness_s'].get('p50')} s"
        )
    if key == "idle_lateness_p99_s":
        label = "" if r["idle_s"] >= 120 else " (--quick: 20 s idle, not 2 min)"
        return f"{r['idle_lateness_s'].get('n')} sends due after {r['idle_s']:.0f} s idle{label}"
    if key == "pending_1m_rss_growth_mb":
        return (
            f"{r['label']}: peak {r['worker_pending']['rss_peak_mb']} vs {r['worker_empty']['rss_peak_mb']} MB empty; "
            f"one sweep {r['worker_pending']['sweep_ms']} ms"
        )
    if key == "cancel_at_1m_ms":
        c = r["cancel"]
        return f"{r['label']}: p90 {c['p90_ms']} ms, {c['reminders_cancelled_per_booking']} reminders per booking"
    if key == "validate_5k_rules_s":
        return f"exit {r['exit_codes']}, runs {r['runs_s']} s; `engine --help` alone {r['engine_help_s']} s"
    if key in ("preview_scaling", "preview_events_per_s", "backtest_s"):
        return (f"{r['events_large']} events ({r['sends']} sends) in {r['preview_seconds']} s; "
                f"{r['events_small']} events at {r['preview_events_per_s_small']}/s; "
                f"every copy the same: {r['copies_identical']}")
    return ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the short run (smaller sizes, shorter runs, labelled)")
    p.add_argument("--only", nargs="*", metavar="RUN", help=f"run only these ({' '.join([*RUNS, *EXTRAS_FULL])})")
    p.add_argument("--no-extra", action="store_true", help="skip the figures without a target")
    args = p.parse_args(argv)
    started = time.perf_counter()
    timeout = 300 if args.quick else 1800
    runs = dict(RUNS)
    if not args.no_extra:
        runs.update(EXTRAS_QUICK if args.quick else EXTRAS_FULL)
    if args.only:
        runs = {name: run for name, run in runs.items() if name in args.only}
    results: dict[str, dict[str, Any] | None] = {}
    errors: dict[str, str] = {}
    durations: dict[str, float] = {}
    for name, (module, extra_args) in runs.items():
        results[name], err, durations[name] = run_module(module, list(extra_args), args.quick, timeout)
        if err:
            errors[name] = err

    figures: dict[str, Any] = {}
    rows = []
    for key, run, source, what, target in FIGURES:
        if run not in runs:
            continue
        r = results.get(run)
        value = r.get(source) if r else None
        figures[key] = value
        ok = met(value, target)
        verdict = (
            "report" if target is None and value is not None else ("n/a" if ok is None else ("ok" if ok else "MISS"))
        )
        note = errors.get(run, "") if r is None else notes(key, r)
        rows.append((key, fmt(value), f"{target[0]} {target[1]:g}" if target else "-", verdict, what, note))

    out = sys.stdout
    mode = "--quick" if args.quick else "full"
    print(f"\nnotification engine benchmarks ({mode}), {datetime.now(UTC):%Y-%m-%d %H:%M UTC}, "
          f"python {platform.python_version()}, {platform.machine()}, load average {_load()}", file=out)
    w = [max(len(r[i]) for r in rows + [("figure", "value", "target", "result")]) for i in range(4)]
    print(f"{'figure':<{w[0]}}  {'value':>{w[1]}}  {'target':<{w[2]}}  {'result':<{w[3]}}  what / detail", file=out)
    print("-" * (sum(w) + 40), file=out)
    for key, value, target, verdict, what, note in rows:
        print(f"{key:<{w[0]}}  {value:>{w[1]}}  {target:<{w[2]}}  {verdict:<{w[3]}}  {what}", file=out)
        if note:
            print(f"{'':<{w[0]}}  {'':>{w[1]}}  {'':<{w[2]}}  {'':<{w[3]}}    {note}", file=out)
    extra = _extras(results, errors, out)
    total = time.perf_counter() - started
    print(f"\nran in {total:.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in durations.items()), file=out)
    labels = {}
    lat = results.get("lateness")
    if lat:
        labels["idle_lateness_p99_s"] = f"after {lat['idle_s']:.0f} s idle" + (
            " (--quick)" if lat["idle_s"] < 120 else ""
        )
    pend = results.get("pending")
    if pend:
        labels["pending_1m_rss_growth_mb"] = labels["cancel_at_1m_ms"] = f"{pend['pending_rows']} pending rows"
    val = results.get("validate")
    if val and val.get("label"):
        labels["validate_5k_rules_s"] = val["label"]
    shown = [(k, t) for k, run, _, _, t in FIGURES if run in runs]
    summary = {**figures, "quick": args.quick, "labels": labels,
               "targets": {k: (f"{t[0]} {t[1]:g}" if t else None) for k, t in shown},
               "met": {k: met(figures[k], t) for k, t in shown}, "extra": extra, "seconds": round(total)}
    print(json.dumps(summary), file=out, flush=True)
    return 0


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def _extras(results: dict[str, dict[str, Any] | None], errors: dict[str, str], out: Any) -> dict[str, Any]:
    """The figures without a target: printed, and returned for the JSON's `extra`."""
    extra: dict[str, Any] = {}
    lines: list[str] = []
    serve = results.get("serve")
    if serve:
        extra["serve_events_per_s_p99_25ms"] = serve["serve_events_per_s_p99_25ms"]
        steps = ", ".join(f"{s['rate']:g}/s p99 {s['p99_ms']} ms" for s in serve["steps"])
        lines.append(f"engine serve (SQLite, worker on), events/s with p99 < 25 ms: "
                     f"{fmt(extra['serve_events_per_s_p99_25ms'])}  [{steps}]")
    r = results.get("ingest")
    if r:
        extra.update(
            ingest_durable_rps=r["durable_rps"],
            ingest_engine_cpu_ms_per_request=r["engine_cpu_ms_per_request"],
            ingest_durable_cpu_ms_per_request=r["durable_cpu_ms_per_request"],
        )
        lines.append(f"ingest (SQLite): engine {r['engine_rps']:.0f} req/s, one-insert handler {r['durable_rps']:.0f}, "
                     f"bare {r['bare_rps']:.0f}; CPU a request {r['engine_cpu_ms_per_request']} / "
                     f"{r['durable_cpu_ms_per_request']} / {r['bare_cpu_ms_per_request']} ms")
    r = results.get("ingest_pg")
    if r:
        extra.update(
            ingest_pg_events_per_s=r["engine_rps"],
            ingest_pg_ratio=r["ingest_ratio"],
            ingest_pg_durable_rps=r["durable_rps"],
            ingest_pg_engine_cpu_ms_per_request=r["engine_cpu_ms_per_request"],
        )
        lines.append(
            f"ingest on PostgreSQL + Redis: {r['engine_rps']:.0f} events/s (one-insert handler {r['durable_rps']:.0f} "
            f"{r['durable_way']}, bare Starlette {r['bare_rps']:.0f}, old ratio {r['ingest_ratio']}), "
            f"p99 {r['engine_latency_ms'].get('p99')} ms at {r['connections']} connections"
        )
    r = results.get("dispatch")
    if r:
        extra.update(
            dispatch_sdk_sends_per_s=r["sdk_sends_per_s"],
            dispatch_engine_cpu_ms_per_send=r["engine_cpu_ms_per_send"],
            dispatch_sdk_cpu_ms_per_send=r["sdk_cpu_ms_per_send"],
            dispatch_durable_sends_per_s=r["durable_sends_per_s"],
            dispatch_durable_cpu_ms_per_send=r["durable_cpu_ms_per_send"],
        )
    r = results.get("batch")
    if r:
        extra.update(
            ingest_batch100_events_per_s=r["engine_events_per_s"], persist_limit_events_per_s=r["raw_all_events_per_s"]
        )
    r = results.get("dispatch_pg")
    if r:
        extra["dispatch_pg_sends_per_s"] = r["engine_sends_per_s"]
        extra["dispatch_pg_ratio"] = r["dispatch_ratio"]
        extra["dispatch_pg_sdk_ratio"] = r["dispatch_sdk_ratio"]
        extra["dispatch_pg_limit_ratio"] = r["dispatch_limit_ratio"]
        lines.append(
            f"dispatch on PostgreSQL (Runtime.deliver, concurrency {r['concurrency']}): {r['engine_sends_per_s']:.0f} "
            f"sends/s (durable SDK loop {r['durable_sends_per_s']:.0f}, ratio {r['dispatch_limit_ratio']}; "
            f"bare SDK {r['sdk_sends_per_s']:.0f}, ratio {r['dispatch_sdk_ratio']}; raw httpx "
            f"{r['raw_sends_per_s']:.0f}, ratio {r['dispatch_ratio']})"
        )
    r = results.get("pipeline")
    if r:
        extra["pipeline_pg_redis_sends_per_s"] = r["pipeline_pg_redis_sends_per_s"]
        extra["pipeline_sqlite_sends_per_s"] = r["pipeline_sqlite_sends_per_s"]
    for name in ("serve", "dispatch_pg"):
        if name in errors:
            lines.append(f"{name}: failed ({errors[name]})")
    if lines:
        print("\nalso measured (no target):", file=out)
        for line in lines:
            print(f"  {line}", file=out)
    return extra


if __name__ == "__main__":
    raise SystemExit(main())
