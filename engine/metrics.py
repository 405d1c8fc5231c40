"""The engine's Prometheus metrics: one registry per process, every instrument defined here once.

`GET /metrics` of `engine serve` and of `engine worker --metrics-port` expose `REGISTRY`. The code
that answers requests, sends and receives webhooks calls the functions below; nothing else
creates instruments. Labels are bounded: notification names come from the rule set, outcomes
and statuses from the short lists here.

Counters and histograms count what this process did (sum them over processes). The store's
figures (rows by status, sends past due) are the whole store's: a thread reads them at most
every `ENGINE_METRICS_REFRESH` seconds, and only once somebody scrapes, so a scrape never waits
on `count(*) ... GROUP BY status` (300-430 ms at a million rows).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ParamSpec, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from . import __version__
from .clock import utcnow
from .health import ALARMS, COURIER_CREDENTIALS, Trouble

log = logging.getLogger("engine.metrics")
P = ParamSpec("P")


class _Outcome(Protocol):
    @property
    def status(self) -> str: ...


OutcomeT = TypeVar("OutcomeT", bound=_Outcome)

# A `_created` series beside every counter doubles them, and nobody reads it.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

Info("engine_build", "The engine's version", registry=REGISTRY).info({"version": __version__})

# -- the HTTP hook ---------------------------------------------------------------------------------
HTTP_REQUESTS = Counter("engine_http_requests_total", "HTTP requests by route and status", ["route", "status"],
                        registry=REGISTRY)
EVENTS = Counter("engine_events_total", "Events posted to the hook, by outcome (accepted, duplicate, rejected)",
                 ["outcome"], registry=REGISTRY)
INGEST_SECONDS = Histogram("engine_ingest_seconds", "Time to answer a POST /events", registry=REGISTRY)
WEBHOOK_OUTCOMES = ("applied", "duplicate", "stale", "pending", "ignored", "refused", "invalid", "error")
WEBHOOKS = Counter("engine_webhooks_total", "Courier webhooks by outcome (applied, duplicate, stale: out of order, "
                   "pending: no send with that message id yet, kept until it is recorded, ignored: a status the "
                   "engine does not track, refused: secret or signature, invalid: malformed, error: the engine "
                   "could not take it)", ["outcome"], registry=REGISTRY)

# -- delivery ------------------------------------------------------------------------------------
SEND_OUTCOMES = ("sent", "failed", "skipped", "cancelled")
SENDS = Counter("engine_sends_total", "Sends this process finished, by notification and outcome (sent, failed, "
                "skipped, cancelled)", ["notification", "outcome"], registry=REGISTRY)
RETRIES = Counter("engine_send_retries_total", "Attempts that did not go through and were scheduled again, by "
                  "notification", ["notification"], registry=REGISTRY)
# Not an outcome of `engine_sends_total`: a paused send is not finished (it goes out once Courier takes the
# credentials again), and summing that counter over outcomes must give the sends that ended.
PAUSED = Counter("engine_sends_paused_total", "Sends put back without spending an attempt because Courier rejected "
                 "the credentials, by notification (each time one is put back)", ["notification"], registry=REGISTRY)
COURIER_SECONDS = Histogram(
    "engine_courier_request_duration_seconds", "Courier POST /send requests by outcome (sent, retry, failed, "
    "paused: the credentials were rejected)",
    ["outcome"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
LATENESS = Histogram(
    "engine_send_lateness_seconds", "How long after it first fell due a send went out (a retried or paused send "
    "included: the time it waited counts)", registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0))

class Children:
    """A labelled metric's children, each looked up once: `labels()` checks its arguments and takes a
    lock on every call, which on the hot paths (each request, each send) costs more than the count."""

    def __init__(self, metric: Any):
        self.metric = metric
        self._by: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._by.get(values)
        if child is None:  # two threads racing here get the same child from `labels()`
            child = self._by[values] = self.metric.labels(*values)
        return child


http_requests = Children(HTTP_REQUESTS)
events = Children(EVENTS)
sends = Children(SENDS)
retries = Children(RETRIES)
courier_seconds = Children(COURIER_SECONDS)

STATUSES = ("scheduled", "queued", "sending", "sent", "failed", "cancelled", "skipped")  # always shown, 0 or not


def declare(notifications: Iterable[str]) -> None:
    """Show every notification's series from the start (at 0), so that the first send of each
    counts in `rate()` and `increase()`."""
    for name in notifications:
        for outcome in SEND_OUTCOMES:
            SENDS.labels(name, outcome)
        RETRIES.labels(name)
        PAUSED.labels(name)


for _outcome in WEBHOOK_OUTCOMES:
    WEBHOOKS.labels(_outcome)
for _outcome in ("accepted", "duplicate", "rejected"):
    EVENTS.labels(_outcome)


def send_finished(notification: str, recorded: str, lateness_s: float | None = None) -> None:
    """A send's attempt ended as `recorded` (the row's status: `scheduled` is a retry);
    `lateness_s`: how long after it fell due it went out, for a sent one."""
    if recorded == "scheduled":
        retries(notification).inc()
        return
    sends(notification, recorded).inc()
    if recorded == "sent" and lateness_s is not None:
        LATENESS.observe(max(0.0, lateness_s))


def send_paused(notification: str) -> None:
    """A send was put back, its attempt not spent: Courier rejects the credentials."""
    PAUSED.labels(notification).inc()


def timed_courier_request(send: Callable[P, OutcomeT]) -> Callable[P, OutcomeT]:
    """Decorates the method that makes one Courier request and returns its `Outcome`."""
    @functools.wraps(send)
    def timed(*args: P.args, **kwargs: P.kwargs) -> OutcomeT:
        started = time.monotonic()
        outcome = send(*args, **kwargs)
        courier_seconds(outcome.status).observe(time.monotonic() - started)
        return outcome
    return timed


def webhook(outcome: str) -> None:
    WEBHOOKS.labels(outcome).inc()


# -- alarms ----------------------------------------------------------------------------------------------
class AlarmGauges:
    """`engine_courier_credentials_rejected`: 1 while Courier rejects this process's credentials
    (its deliveries are paused), else 0. Read from `health.ALARMS` at each scrape, so the gauge and
    `/readyz` never disagree."""

    def describe(self) -> Iterator[Metric]:
        return iter([self._family()])

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        family.add_metric([], 1.0 if COURIER_CREDENTIALS in ALARMS.checks() else 0.0)
        return iter([family])

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("engine_courier_credentials_rejected", "1 while Courier rejects this process's "
                                 "credentials (401/403): its deliveries are paused, and /readyz fails", labels=[])


REGISTRY.register(AlarmGauges())


# -- the store's figures -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Figures:
    by_status: dict[str, int]
    overdue: int  # sends past due, not yet handed to a worker (scheduled) or waiting in the queue (queued)
    oldest_due: datetime | None  # the due time of the oldest of them
    read_at: float  # time.time()


def read_figures(store: Any, now: datetime) -> Figures:
    """One read of the store's figures (two statements, both on indexed columns but the first)."""
    from sqlalchemy import func, select

    from .store.tables import notifications

    n = notifications.c
    by_status = store.counts_by_status()
    with store.reader.connect() as conn:
        overdue, oldest = conn.execute(select(func.count(), func.min(n.send_at))
                                       .where(n.status.in_(("scheduled", "queued")), n.send_at <= now)).one()
    return Figures(by_status, int(overdue or 0), oldest, time.time())


class StoreFigures:
    """A collector of the store's figures, read by a thread of its own every `refresh_s` from the
    first scrape on. A scrape shows the last figures read (the first one waits for them, up to
    `first_wait_s`); while the store does not answer it shows the last ones it had, and
    `engine_store_figures_timestamp_seconds` says how old they are."""

    def __init__(self, first_wait_s: float = 2.0):
        self.first_wait_s = first_wait_s
        self.store: Any = None
        self.refresh_s = 15.0
        self._figures: Figures | None = None
        self._tried = threading.Event()  # set once the current store has been read (or failed to be)
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._trouble = Trouble("reading the store's figures for /metrics", log)

    def watch(self, store: Any, refresh_s: float) -> None:
        """Read this store's figures from now on (a process has one store; tests build several)."""
        with self._lock:
            if store is self.store:
                self.refresh_s = refresh_s
                return
            self.store, self.refresh_s, self._figures = store, refresh_s, None
            self._tried.clear()
        self._wake.set()

    def describe(self) -> Iterator[Metric]:
        return iter(self._families(None))

    def collect(self) -> Iterator[Metric]:
        if self.store is None:
            return iter(())
        self._start()
        if not self._tried.is_set():
            self._tried.wait(self.first_wait_s)
        return iter(self._families(self._figures))

    def _families(self, figures: Figures | None) -> list[Metric]:
        statuses = GaugeMetricFamily("engine_notifications", "Notifications in the store by status", labels=["status"])
        overdue = GaugeMetricFamily("engine_overdue_sends", "Sends past their due time that no worker has taken yet "
                                                           "(scheduled or queued), in the whole store")
        oldest = GaugeMetricFamily("engine_oldest_overdue_send_age_seconds", "How long the oldest of the overdue "
                                                                            "sends has been due (0: none)")
        stamp = GaugeMetricFamily("engine_store_figures_timestamp_seconds", "When the store's figures were read "
                                                                           "(Unix time)")
        if figures is not None:
            _add_figures(figures, statuses, overdue, oldest, stamp)
        return [statuses, overdue, oldest, stamp]

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="engine-metrics-store", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.clear()  # a `watch` from now on wakes the wait below
            store = self.store
            figures, wait = self._read(store)
            with self._lock:
                if store is self.store:
                    self._figures = figures or self._figures
                    self._tried.set()
            self._wake.wait(wait)

    def _read(self, store: Any) -> tuple[Figures | None, float]:
        """The store's figures (None while it does not answer), and how long to wait before the next read."""
        try:
            figures = read_figures(store, utcnow())
        except Exception as exc:  # noqa: BLE001 - the store is down: keep the last figures, try again
            return None, max(self._trouble.failed(exc), min(self.refresh_s, 5.0))
        self._trouble.ok()
        return figures, self.refresh_s


def _add_figures(figures: Figures, statuses: GaugeMetricFamily, overdue: GaugeMetricFamily,
                 oldest: GaugeMetricFamily, stamp: GaugeMetricFamily) -> None:
    for status in sorted({*STATUSES, *figures.by_status}):
        statuses.add_metric([status], figures.by_status.get(status, 0))
    overdue.add_metric([], figures.overdue)
    age = time.time() - figures.oldest_due.timestamp() if figures.oldest_due is not None else 0.0
    oldest.add_metric([], max(0.0, age))
    stamp.add_metric([], figures.read_at)


STORE_FIGURES = StoreFigures()
REGISTRY.register(STORE_FIGURES)


def watch_store(store: Any, refresh_s: float) -> None:
    """Show this store's figures on /metrics."""
    STORE_FIGURES.watch(store, refresh_s)
