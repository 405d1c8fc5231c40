"""What a scenario file holds once read: its parts as typed dicts, the keys each part allows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, NotRequired, TypedDict

from ..rules.problems import Problem

Match = Literal["only", "all"]
MATCHES: tuple[Match, ...] = ("only", "all")
STATUSES = ("sent", "pending", "cancelled", "skipped")
TOP_KEYS = ("description", "match", "people", "preferences", "events", "direct", "deploy", "until", "expect",
            "expect_duplicates")
EXPECT_REQUIRED = ("notification", "recipient", "send_at", "status")
EXPECT_KEYS = (*EXPECT_REQUIRED, "reason", "template", "channels", "routing", "expires_at", "data")
# Checked only when an expectation gives them, each compared with the send's field of the same name.
EXACT_KEYS = ("reason", "template", "channels", "routing", "expires_at")
DEPLOY_KEYS = ("at", "pause", "remove", "templates")
DIRECT_REQUIRED = ("at", "notification", "recipient", "send_at")
DIRECT_KEYS = (*DIRECT_REQUIRED, "data")
YamlPath = tuple[str | int, ...]


class Expected(TypedDict):
    """One expected send. Every key after `status` is checked only when given."""

    notification: str
    recipient: str
    send_at: str  # in UTC, as the preview writes it
    status: str
    reason: NotRequired[str | None]
    template: NotRequired[str]
    channels: NotRequired[list[str]]  # the channels it goes out on, after per-channel preferences
    routing: NotRequired[str]
    expires_at: NotRequired[str | None]  # in UTC, as the preview writes it
    data: NotRequired[dict[str, Any]]
    line: int


class Deploy(TypedDict):
    at: datetime
    pause: list[str]
    remove: list[str]
    templates: dict[str, str]
    line: int


class Direct(TypedDict):
    at: datetime
    notification: str
    recipient: dict[str, Any] | str
    send_at: datetime
    data: dict[str, Any] | None
    line: int


class Scenario(TypedDict):
    path: str
    description: str
    match: Match
    events: list[Any]  # envelopes as written; the engine checks them when the scenario runs
    event_lines: list[int]
    until: str | None
    preferences: dict[str, dict[str, bool]]
    preference_lines: dict[tuple[str, str], int]
    deploy: list[Deploy]
    direct: list[Direct]
    expect: list[Expected]
    expect_duplicates: list[str]


class ScenarioError(Exception):
    """The scenario file itself is wrong; `problems` says where and what, every one of them."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(f"{p.file}:{p.line}:{p.col}: {p.message}" for p in problems))
