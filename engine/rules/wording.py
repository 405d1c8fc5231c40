"""The words every configuration problem is made of: a path as the reader writes it, where else
a name stands, the names that are known, and the near miss of a misspelt one."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from .problems import Mark

# How many known names a message lists before it says "...".
MAX_KNOWN = 12


def did_you_mean(word: Any, choices: Iterable[Any], within: tuple[str, ...] = ()) -> str:
    """`; did you mean 'x'?` for the choice closest to a misspelt `word` (a step of a path
    `within` a field, when given), else nothing."""
    names = [c for c in choices if isinstance(c, str)]
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.75) if names and isinstance(word, str) else []
    return f"; did you mean {'.'.join((*within, close[0]))!r}?" if close else ""


def dotted(path: tuple[Any, ...]) -> str:
    """`notifications.welcome.cancel_on[0].key`: a path in a file as its reader writes it."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def plain(message: str) -> str:
    return message.replace("\n", " ")


def where(mark: Mark) -> str:
    return f"{mark.file}:{mark.line}"


def known(names: Mapping[str, Any]) -> str:
    """` (known: a, b, ...)`, or nothing when there is no name to list."""
    if not names:
        return ""
    shown = sorted(names)[:MAX_KNOWN]
    more = ", ..." if len(names) > MAX_KNOWN else ""
    return f" (known: {', '.join(shown)}{more})"
