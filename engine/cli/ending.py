"""How the `engine` process ends: a command that built a large heap may end it without freeing it.

`engine validate` builds a few hundred thousand objects per thousand rules (values, positions,
compiled expressions), and they hold reference cycles: freeing them is a full pass of the cyclic
collector, a tenth of what validating took. When the command is the whole life of the process
(the `engine` console script, not a test calling `main`), nothing needs them freed: the command
moves them out of the collector's reach and the process ends with `os._exit` once its output is
flushed, as mypy does for the same reason.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import NoReturn

_state = {"console": False, "hard": False}


def from_console() -> None:
    """Called by the console script before it runs the command."""
    _state["console"] = True


def keep_until_exit() -> None:
    """What the process built so far is neither scanned nor freed again, when the process ends with
    the command; otherwise (a caller that goes on) nothing changes."""
    if _state["console"]:
        gc.freeze()
        _state["hard"] = True


def end(code: int) -> NoReturn:
    """Ends the process with `code`: without tearing its objects down when a command asked for it."""
    if _state["hard"]:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
