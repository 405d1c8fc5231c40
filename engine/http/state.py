"""What the endpoints share, kept on `app.state` by the app's builder (engine/http/app.py).

`app.state.hook` (a `Hook`) in `engine serve`'s app; `app.state.readiness` in every app that
answers /readyz. The accessors below give them their types.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from starlette.requests import Request

from ..health import Readiness, Trouble
from ..runtime import Runtime
from ..settings import Settings
from .auth import Auth
from .intake import Intake
from .replays import Replays

log = logging.getLogger("engine.http")


@dataclass(frozen=True)
class Hook:
    """The runtime the hook serves and what its endpoints keep between requests."""

    runtime: Runtime
    auth: Auth
    intake: Intake  # decides and stores accepted events, in groups
    replays: Replays  # signed requests seen before
    # a store that is down fails every request: logged once, not per request
    trouble: Trouble = field(default_factory=lambda: Trouble("requests to the store", log))
    closing: tuple[Callable[[], None], ...] = ()  # run in this order when the app stops

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    def close(self) -> None:
        for close in self.closing:
            close()


def hook(request: Request) -> Hook:
    return cast(Hook, request.app.state.hook)


def readiness(request: Request) -> Readiness:
    return cast(Readiness, request.app.state.readiness)
