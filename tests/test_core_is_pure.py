"""The core (matching, timing, rendering, deciding) is pure: importing it loads no store, queue,
delivery backend or web framework, so it can be reasoned about, previewed and tested alone."""

from __future__ import annotations

import subprocess
import sys

EDGES = ("sqlalchemy", "huey", "redis", "courier", "httpx", "starlette", "uvicorn", "engine.store", "engine.delivery",
         "engine.http", "engine.queue", "engine.runtime")


def test_importing_the_core_loads_none_of_the_edges() -> None:
    code = (
        "import sys, engine.core.decide, engine.core.matching, engine.core.timing, engine.core.rendering, "
        "engine.core.policy, engine.core.events\n"
        f"print('\\n'.join(sorted(m for m in sys.modules if m.split('.')[0] in {EDGES!r} or m.startswith({EDGES!r}))))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == [], f"the core pulled in: {loaded}"


def test_the_commands_that_never_call_courier_do_not_import_its_sdk() -> None:
    """preview, diff, backtest and test run the live engine on a recording backend: the Courier SDK
    (about half a second to import) loads only when a Courier backend is made."""
    code = (
        "import sys, engine.cli.preview, engine.cli.diff, engine.cli.backtest, engine.cli.test\n"
        "print('courier' in sys.modules)\n"
        "from engine.delivery import CourierBackend\n"
        "print('courier' in sys.modules, CourierBackend.__module__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert done == ["False", "True", "engine.delivery.courier"]
