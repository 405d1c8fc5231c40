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
    leads = leaders(summary)
    fmt = output_format(fmt)
    if fmt == "json":
        click.echo(json.dumps(summary, indent=2))
        return
    print_rows(COLUMNS, table_rows(summary), fmt,
               f"Notifications since {local_time(start.replace(microsecond=0), tz)} ({since.text} ago)")
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
    per: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    reported: dict[tuple[str, str], int] = defaultdict(int)  # sends with a delivery status from a webhook
    marks: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in stats:
        line = (row["notification"], row.get("variant") or "")
        per[line][row["status"]] += row["count"]
        if row["delivery_status"]:
            per[line][row["delivery_status"]] += row["count"]
            reported[line] += row["count"]
    for row in engagement:
        marks[(row["notification"], row.get("variant") or "")][row["mark"]] += row["count"]
    sent_by_rule: dict[str, int] = defaultdict(int)
    for (name, _), c in per.items():
        sent_by_rule[name] += c["sent"]
    summary: list[dict[str, Any]] = []
    for name, variant in sorted(per):
        c, m = per[(name, variant)], marks[(name, variant)]
        sent, measured = c["sent"], bool(reported[(name, variant)])
        attempted = sent + c["failed"]
        unsubscribed = (unsubscribes or {}).get(name, 0)
        summary.append({
            "notification": name, "variant": variant or None, **dict(c),
            "opens": m["opened"], "clicks": m["clicked"], "reads": m["read"], "unsubscribes": unsubscribed,
            # A row keeps only its furthest delivery status: an opened or clicked message was delivered too.
            "delivery_rate": _ratio(sum(c[d] for d in DELIVERED), sent) if measured else None,
            "failure_rate": _ratio(c["failed"], attempted),
            "open_rate": _ratio(m["opened"], sent) if measured else None,
            "click_rate": _ratio(m["clicked"], sent) if measured else None,
            "read_rate": _ratio(m["read"], sent) if m["read"] or _has_inbox(config, name) else None,
            "unsubscribe_rate": _ratio(unsubscribed, sent_by_rule[name])
            if unsubscribed or _can_opt_out(config, name) else None,
        })
    lead_by_rule = {lead["notification"]: lead for lead in leaders(summary)}
    for entry in summary:
        if entry["notification"] in lead_by_rule:
            entry["comparison"] = lead_by_rule[entry["notification"]]
    return summary


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
    measure = next((key for key, rate_key in (("clicks", "click_rate"), ("opens", "open_rate"), ("reads", "read_rate"))
                    if any(e[rate_key] is not None and e.get(key) for e in entries)), None)
    counts = {e["variant"]: {"sends": e.get("sent", 0), "successes": e.get(measure, 0) if measure else 0}
              for e in entries}
    ranked = sorted(counts.items(), key=lambda kv: (-_ratio_or_zero(kv[1]), kv[0]))
    out: dict[str, Any] = {"notification": name, "measure": measure, "leader": None, "z": None, "counts": counts}
    fewest = min(c["sends"] for c in counts.values())
    if measure is None:
        return {**out, "verdict": "not enough data: nothing measured yet"}
    if fewest < MIN_SENDS:
        return {**out, "verdict": f"not enough data: {fewest} sends in a variant, at least {MIN_SENDS} needed"}
    (best, a), (second, b) = ranked[0], ranked[1]
    z = two_proportion_z(a["successes"], a["sends"], b["successes"], b["sends"])
    if z is None or z < Z_95:
        return {**out, "z": z, "verdict": f"too close to call: {best} and {second} differ by chance at 95 %"}
    return {**out, "leader": best, "z": z, "verdict": f"{best} leads on {measure} (z = {z:.2f}, 95 %)"}


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
