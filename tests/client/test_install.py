"""`pip install ./clients/python` into a fresh virtual environment, offline: the client installs
and imports without SQLAlchemy, huey, Django or the engine."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from tests.support.engine_process import ROOT

CHECK = """
import json, sys
import engine_client
from engine_client import Client, Retry, StandardWebhooks
from importlib import metadata
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "huey", "engine", "django", "starlette"))
try:
    import sqlalchemy
    installed = True
except ImportError:
    installed = False
dist = metadata.distribution("notification-engine-client")
print(json.dumps({"file": engine_client.__file__, "heavy": heavy, "sqlalchemy_installed": installed,
                  "requires": dist.requires, "files": sorted(str(f) for f in dist.files)}))
"""


def _closure(name: str) -> set[str]:
    """`name` and the distributions it needs (extras and markers aside), as installed here."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        dist = metadata.distribution(todo.pop())
        if dist.metadata["Name"].lower() in seen:
            continue
        seen.add(dist.metadata["Name"].lower())
        for req in dist.requires or ():
            if "extra ==" in req:
                continue
            dep = re.match(r"[A-Za-z0-9._-]+", req)
            if dep:
                try:
                    metadata.distribution(dep.group(0))
                except metadata.PackageNotFoundError:
                    continue  # its marker excludes this Python
                todo.append(dep.group(0))
    return seen


def _only(dists: set[str], into: Path) -> Path:
    """A folder holding the top-level packages of `dists` only (links into this environment)."""
    into.mkdir()
    for name in dists:
        dist = metadata.distribution(name)
        site = Path(str(dist.locate_file("")))
        for top in {file.parts[0] for file in dist.files or ()}:
            if top != ".." and top != "__pycache__" and not top.endswith(".pth") and not (into / top).exists():
                os.symlink(site / top, into / top)
    return into


def test_the_client_installs_alone_and_imports_nothing_heavy(tmp_path: Path) -> None:
    source = tmp_path / "client"  # a copy: a build writes into the tree it builds
    shutil.copytree(ROOT / "clients" / "python", source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # Built with this environment's setuptools (offline, so without build isolation), then
    # installed into the fresh environment, which has no pip of its own, with no index.
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation", "-w", str(wheels),
                    str(source)], check=True, capture_output=True)
    (wheel,) = wheels.glob("notification_engine_client-*.whl")
    subprocess.run([*pip, "--python", str(python), "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True)
    httpx_only = _only(_closure("httpx"), tmp_path / "httpx-only")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(httpx_only), "PYTHONNOUSERSITE": "1"}
    done = subprocess.run([str(python), "-c", CHECK], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["file"].startswith(str(venv)), found["file"]
    assert found["heavy"] == [] and not found["sqlalchemy_installed"]
    assert sorted(found["requires"]) == ['django>=4.2; extra == "django"', "httpx>=0.27"]
    shipped = {Path(f).as_posix() for f in found["files"]}
    assert {"engine_client/py.typed", "engine_client/django/migrations/0001_initial.py",
            "engine_client/django/management/commands/relay_events.py"} <= shipped
