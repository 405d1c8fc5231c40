"""notifications.yaml's own settings: the app, the defaults, categories, windows, the rate limit
and retention."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..model import App, Category, RateLimit, Window
from ..problems import Problem
from ..timeparse import is_zone
from ..wording import dotted
from ..yaml_source import Document
from .findings import duration, window

# The categories of a configuration that declares none.
DEFAULT_CATEGORIES = {"transactional": {"opt_out": False}}


@dataclass(frozen=True)
class TopLevel:
    app: App
    defaults: Mapping[str, Any]
    timezone: str
    categories: dict[str, Category]
    windows: dict[str, Window]
    quiet_hours: Window | None
    rate_limit: RateLimit | None
    retention: dict[str, timedelta]


class _Reader:
    """Reads the settings of one root file, keeping the problems of the values that do not parse."""

    def __init__(self, root: Document):
        self.root = root
        self.problems: list[Problem] = []

    def duration(self, path: tuple[Any, ...], raw: Any) -> timedelta:
        value, why = duration(raw)
        if why is not None:
            self.problems.append(Problem.at(self.root.mark(path), f"{dotted(path)}: {why}"))
        return value

    def window(self, path: tuple[Any, ...], raw: Any) -> Window | None:
        value, why = window(raw)
        if why is not None:
            self.problems.append(Problem.at(self.root.mark(path), f"{dotted(path)}: {why}"))
        return value

    def timezone(self, defaults: Mapping[str, Any]) -> str:
        tz: str = defaults.get("timezone", "UTC")
        if not is_zone(tz):
            self.problems.append(Problem.at(self.root.mark(("defaults", "timezone")),
                                            f"defaults.timezone: {tz!r} is not an IANA time zone (e.g. Europe/Berlin)"))
        return tz

    def windows(self, raw: Mapping[str, Any]) -> dict[str, Window]:
        found = {}
        for name, value in raw.items():
            parsed = self.window(("windows", name), value)
            if parsed:
                found[name] = parsed
        return found

    def rate_limit(self, raw: Mapping[str, Any]) -> RateLimit | None:
        per_recipient = raw.get("per_recipient")
        if not per_recipient:
            return None
        limit = int(per_recipient["limit"])
        return RateLimit(limit, self.duration(("rate_limits", "per_recipient", "window"), per_recipient["window"]))


def read(root: Document, misshapen: Collection[Any] = ()) -> tuple[TopLevel, list[Problem]]:
    """The settings of the root file `root`, and the problems of their values. A setting named in
    `misshapen` (it has a shape error, whose message stands alone) is read as if absent."""
    data = {key: value for key, value in root.data.items() if key not in misshapen}
    reader = _Reader(root)
    app = _app(data.get("app") or {})
    defaults = data.get("defaults") or {}
    timezone = reader.timezone(defaults)
    categories = _categories(data.get("categories") or DEFAULT_CATEGORIES)
    windows = reader.windows(data.get("windows") or {})
    quiet = reader.window(("defaults", "quiet_hours"), defaults["quiet_hours"]) if defaults.get("quiet_hours") else None
    rate_limit = reader.rate_limit(data.get("rate_limits") or {})
    retention = {k: reader.duration(("retention", k), v) for k, v in (data.get("retention") or {}).items()}
    return TopLevel(app, defaults, timezone, categories, windows, quiet, rate_limit, retention), reader.problems


def _app(raw: Mapping[str, Any]) -> App:
    return App(str(raw.get("name", "")), str(raw.get("frontend_url", "")), str(raw.get("support_email", "")))


def _categories(raw: Mapping[str, Any]) -> dict[str, Category]:
    return {name: Category(name, bool((c or {}).get("opt_out", True))) for name, c in raw.items()}

