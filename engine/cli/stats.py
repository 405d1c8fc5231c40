"""`engine stats`: per notification and A/B variant, counts by status, the delivery, failure,
open, click, read and unsubscribe rates, and which variant leads."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import click

from ..clock import utcnow
from ..rules.model import Config
from .common import Duration, Span, config_option, runtime
from .tables import Column, format_option, local_time, output_format, print_rows, rate, tz_option

DELIVERED = ("delivered", "opened", "read", "clicked")
COUNTED = ("scheduled", "sent", "delivered", "failed", "cancelled", "skipped")
RATES = ("delivery", "failure", "open", "click", "read", "unsubscribe")
COLUMNS = [Column("notification"), Column("variant"), *(Column(c, numeric=True) for c in COUNTED),
           *(Column(r, numeric=True) for r in RATES)]
LEAD_COLUMNS = [Column("notification"), Column("measure"), Column("variants"), Column("verdict")]
MIN_SENDS = 30  # sends per variant before a lead is called at all
Z_95 = 1.96  # a two-sided two-proportion z-test at 95 %


@click.command("stats")
@click.option("--since", type=Duration(), default="7d", show_default=True, help="A duration back from now.")
@format_option
@tz_option
@config_option
def command(since: Span, fmt: str | None, tz: str | None, config_path: str | None) -> None:
    """Counts by notification type and status, with delivery, failure, open, click, read and
    unsubscribe rates, and, for a rule with A/B variants, which variant leads.

    A rate is n/a when nothing measures it: no send yet; no status reported by Courier's
    webhooks for any of its sends (delivery, open, click); no inbox channel (read); a category
    people cannot opt out of (unsubscribe). Unsubscribes are counted per notification (a link does
    not know its variant), over the unsubscribes since the same time."""
    rt = runtime(config_path, migrate=False)  # only `serve`, `worker` and `db upgrade` change the schema
    start = utcnow() - since.length
    summary = summarise(rt.store.stats(start), rt.store.engagement(start), rt.store.unsubscribes(start), rt.config)
    fmt = output_format(fmt)
    if fmt == "json":
        click.echo(json.dumps(summary, indent=2))
        return
    _print_tables(summary, fmt, f"Notifications since {local_time(start.replace(microsecond=0), tz)} "
                                f"({since.text} ago)")


def _print_tables(summary: list[dict[str, Any]], fmt: str, title: str) -> None:
    """The counts and rates, then the A/B comparisons where there are some (not in TSV: one table there)."""
    print_rows(COLUMNS, table_rows(summary), fmt, title)
    leads = leaders(summary)
    if leads and fmt != "tsv":
        click.echo()
        print_rows(LEAD_COLUMNS, lead_rows(leads), fmt, "A/B variants")


def table_rows(summary: list[dict[str, Any]]) -> list[list[str]]:
    return [[s["notification"], s["variant"] or "", *(str(s.get(c, 0)) for c in COUNTED),
             *(rate(s[f"{r}_rate"]) for r in RATES)] for s in summary]


def lead_rows(leads: list[dict[str, Any]]) -> list[list[str]]:
    def counts(lead: dict[str, Any]) -> str:
        return ", ".join(f"{v}: {c['successes']}/{c['sends']}" for v, c in lead["counts"].items())

    return [[lead["notification"], lead["measure"] or "", counts(lead), lead["verdict"]] for lead in leads]


def summarise(stats: Iterable[Mapping[str, Any]], engagement: Iterable[Mapping[str, Any]] = (),
              unsubscribes: Mapping[str, int] | None = None, config: Config | None = None) -> list[dict[str, Any]]:
    """One entry per notification, and per A/B variant where a rule declares variants, with its
    rates (None where nothing measures one) and, for variants, the comparison (`leaders`)."""
    per, reported = _status_counts(stats)
    marks = _mark_counts(engagement)
    sent_by_rule = _sent_by_rule(per)
    summary: list[dict[str, Any]] = []
    for line in sorted(per):
        entry = _counts_entry(line, per[line], marks[line], (unsubscribes or {}).get(line[0], 0))
        summary.append({**entry, **_rates(entry, bool(reported[line]), sent_by_rule[line[0]], config)})
    _add_comparisons(summary)
    return summary


Line = tuple[str, str]  # (notification, variant or "")


def _line(row: Mapping[str, Any]) -> Line:
    return row["notification"], row.get("variant") or ""


def _status_counts(stats: Iterable[Mapping[str, Any]]) -> tuple[dict[Line, dict[str, int]], dict[Line, int]]:
    """(the sends of each line by status and by delivery status; how many of them a webhook reported on)."""
    per: dict[Line, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    reported: dict[Line, int] = defaultdict(int)
    for row in stats:
        per[_line(row)][row["status"]] += row["count"]
        if row["delivery_status"]:
            per[_line(row)][row["delivery_status"]] += row["count"]
            reported[_line(row)] += row["count"]
    return per, reported


def _mark_counts(engagement: Iterable[Mapping[str, Any]]) -> dict[Line, dict[str, int]]:
    marks: dict[Line, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in engagement:
        marks[_line(row)][row["mark"]] += row["count"]
    return marks


def _sent_by_rule(per: Mapping[Line, Mapping[str, int]]) -> dict[str, int]:
    """The sends of each notification, its variants together (an unsubscribe does not know its variant)."""
    sent: dict[str, int] = defaultdict(int)
    for (name, _), counts in per.items():
        sent[name] += counts.get("sent", 0)
    return sent


def _counts_entry(line: Line, counts: Mapping[str, int], marks: Mapping[str, int], unsubscribed: int) -> dict[str, Any]:
    """A line's counts: every status seen, its sends and failures even when none, and its engagement."""
    return {"notification": line[0], "variant": line[1] or None,
            **counts, "sent": counts.get("sent", 0), "failed": counts.get("failed", 0),
            "opens": marks.get("opened", 0), "clicks": marks.get("clicked", 0), "reads": marks.get("read", 0),
            "unsubscribes": unsubscribed}


def _rates(entry: Mapping[str, Any], measured: bool, rule_sent: int, config: Config | None) -> dict[str, Any]:
    """An entry's rates; the delivery, open and click rates only where a webhook `measured` a delivery status."""
    name, sent, failed = entry["notification"], entry["sent"], entry["failed"]
    return {
        # A row keeps only its furthest delivery status: an opened or clicked message was delivered too.
        "delivery_rate": _ratio(sum(entry.get(d, 0) for d in DELIVERED), sent) if measured else None,
        "failure_rate": _ratio(failed, sent + failed),
        "open_rate": _ratio(entry["opens"], sent) if measured else None,
        "click_rate": _ratio(entry["clicks"], sent) if measured else None,
        "read_rate": _ratio(entry["reads"], sent) if entry["reads"] or _has_inbox(config, name) else None,
        "unsubscribe_rate": _ratio(entry["unsubscribes"], rule_sent)
        if entry["unsubscribes"] or _can_opt_out(config, name) else None,
    }


def _add_comparisons(summary: list[dict[str, Any]]) -> None:
    lead_by_rule = {lead["notification"]: lead for lead in leaders(summary)}
    for entry in summary:
        if entry["notification"] in lead_by_rule:
            entry["comparison"] = lead_by_rule[entry["notification"]]


def leaders(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each notification with two variants or more: the variant that leads on the best
    measure there is (clicks, else opens, else reads), with the counts behind it,
    and whether the counts tell: `leads` (a two-proportion z-test at 95 % against the runner-up),
    `too close to call`, or `not enough data` (under MIN_SENDS sends in a variant)."""
    by_rule: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in summary:
        if entry["variant"]:
            by_rule[entry["notification"]].append(entry)
    return [_lead(name, entries) for name, entries in sorted(by_rule.items()) if len(entries) > 1]


def _lead(name: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    measure = _best_measure(entries)
    counts = {e["variant"]: {"sends": e.get("sent", 0), "successes": e.get(measure, 0) if measure else 0}
              for e in entries}
    out: dict[str, Any] = {"notification": name, "measure": measure, "leader": None, "z": None, "counts": counts}
    fewest = min(c["sends"] for c in counts.values())
    if measure is None:
        return {**out, "verdict": "not enough data: nothing measured yet"}
    if fewest < MIN_SENDS:
        return {**out, "verdict": f"not enough data: {fewest} sends in a variant, at least {MIN_SENDS} needed"}
    return {**out, **_compared(measure, counts)}


MEASURES = (("clicks", "click_rate"), ("opens", "open_rate"), ("reads", "read_rate"))


def _best_measure(entries: list[dict[str, Any]]) -> str | None:
    """The first of MEASURES that is measured and counts something in a variant."""
    return next((key for key, rate_key in MEASURES if any(e[rate_key] is not None and e.get(key) for e in entries)),
                None)


def _compared(measure: str, counts: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    """The best variant against the runner-up: whether it leads, by a two-proportion z-test at 95 %."""
    ranked = sorted(counts.items(), key=lambda kv: (-_ratio_or_zero(kv[1]), kv[0]))
    (best, a), (second, b) = ranked[0], ranked[1]
    z = two_proportion_z(a["successes"], a["sends"], b["successes"], b["sends"])
    if z is None or z < Z_95:
        return {"z": z, "verdict": f"too close to call: {best} and {second} differ by chance at 95 %"}
    return {"leader": best, "z": z, "verdict": f"{best} leads on {measure} (z = {z:.2f}, 95 %)"}


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> float | None:
    """The z statistic of p1 - p2 under a pooled proportion; None when it cannot be computed."""
    if not n1 or not n2:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return None if se == 0 else round((x1 / n1 - x2 / n2) / se, 2)


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _ratio_or_zero(count: Mapping[str, int]) -> float:
    return count["successes"] / count["sends"] if count["sends"] else 0.0


def _has_inbox(config: Config | None, name: str) -> bool:
    rule = config.notifications.get(name) if config else None
    return rule is not None and "inbox" in rule.channels


def _can_opt_out(config: Config | None, name: str) -> bool:
    rule = config.notifications.get(name) if config else None
    category = config.categories.get(rule.category) if config and rule else None
    return category is not None and category.opt_out
