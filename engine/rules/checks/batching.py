"""A rule's `batch` block, checked against the events the rule reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import delivery_options
from ..model import Batch
from .findings import Checked, Finding, read_duration, reporter
from .reads import EventReads


def batch(raw: Mapping[str, Any], triggers: tuple[str, ...], reads: EventReads) -> Checked[Batch | None]:
    """The batch a rule collects its events into (None without one), and its problems."""
    found: list[Finding] = []

    def key_reads(where: tuple[Any, ...], key: str) -> list[Finding]:
        named = len(triggers) > 1
        return [f for t in triggers if t in reads.events
                for f in reads.expression(where, key, t, False, expression=False, event_name=t if named else None)]

    chosen = delivery_options.batch(raw, lambda p, v: read_duration(p, v, found), reporter(found), key_reads)
    return chosen, found
