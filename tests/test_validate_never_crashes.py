"""`engine validate` on malformed rules: a clear problem at a place in a file, never a traceback.

The shipped configuration (notifications.yaml, rules/*.yaml, templates_map/*.yaml) is mutated
at random, with a fixed seed so every run tries the same mutations: a value at any depth is
replaced by one of another type, a key is dropped, an unknown key is added. Each mutated
configuration is checked in-process by what `engine validate` runs; a few of them also through
the real command in a subprocess.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.lint import check_all
from engine.rules.problems import Problem

ROOT = Path(__file__).resolve().parent.parent
FILES = ("notifications.yaml", *sorted(f"rules/{p.name}" for p in (ROOT / "rules").glob("*.yaml")),
         *sorted(f"templates_map/{p.name}" for p in (ROOT / "templates_map").glob("*.yaml")))
SEED = 20_260_310
MUTATIONS = 250
IN_A_PROCESS = 6
Path_ = tuple[Any, ...]
# Values of every type a block may wrongly hold.
REPLACEMENTS: tuple[Any, ...] = ("x", "", 0, 7, -1, True, None, [], ["x"], [1, {"a": 1}], {}, {"x": 1}, {"event": 1},
                                 "{{ x }}", 1.5)


def _places(value: Any, path: Path_ = ()) -> Iterator[Path_]:
    """The path of every value inside `value`, itself included."""
    yield path
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _places(inner, path + (key,))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _places(inner, path + (i,))


def _at(value: Any, path: Path_) -> Any:
    for step in path:
        value = value[step]
    return value


def mutate(data: Any, rng: random.Random) -> tuple[Any, str]:
    """`data` with one thing broken at a random place, and what was done."""
    path = rng.choice(list(_places(data)))
    target = _at(data, path)
    kinds = ["replace"] + (["drop", "add"] if isinstance(target, dict) and target else []) + \
        (["add"] if isinstance(target, dict) and not target else [])
    kind = rng.choice(kinds)
    if kind == "drop":
        key = rng.choice(list(target))
        del target[key]
        return data, f"drop {path + (key,)}"
    if kind == "add":
        target[rng.choice(["unknown_key", "x", "trigger", "event", "key", "window"])] = rng.choice(REPLACEMENTS)
        return data, f"add a key at {path}"
    new = rng.choice(REPLACEMENTS)
    if not path:
        return new, f"replace the whole file by {new!r}"
    _at(data, path[:-1])[path[-1]] = new
    return data, f"replace {path} by {new!r}"


def mutations(count: int, seed: int) -> Iterator[tuple[str, str, str]]:
    """(file, its mutated text, what was done), `count` times, the same for the same seed."""
    rng = random.Random(seed)
    shipped = {name: (ROOT / name).read_text(encoding="utf-8") for name in FILES}
    for _ in range(count):
        name = rng.choice(FILES)
        data, done = mutate(yaml.safe_load(shipped[name]), rng)
        yield name, yaml.safe_dump(data, sort_keys=False, allow_unicode=True), done


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = tmp_path_factory.mktemp("shipped")
    for name in FILES:
        (cfg / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, cfg / name)
    return cfg


def checked(cfg: Path, name: str, text: str) -> tuple[bool, list[Problem]]:
    """Whether the configuration with `name` replaced by `text` is valid, and its problems."""
    path = cfg / name
    shipped_text = (ROOT / name).read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    try:
        config, problems = check_all(str(cfg / "notifications.yaml"))
    finally:
        path.write_text(shipped_text, encoding="utf-8")
    return config is not None and not any(p.severity == "error" for p in problems), problems


def test_the_shipped_configuration_dumped_again_is_valid(shipped: Path) -> None:
    """The mutations start from a valid configuration: the breakage is theirs."""
    for name in FILES:
        text = yaml.safe_dump(yaml.safe_load((ROOT / name).read_text(encoding="utf-8")), sort_keys=False)
        valid, problems = checked(shipped, name, text)
        assert valid, (name, problems)


def test_no_mutation_ends_in_a_traceback(shipped: Path) -> None:
    crashed: list[str] = []
    for name, text, done in mutations(MUTATIONS, SEED):
        try:
            valid, problems = checked(shipped, name, text)
            again = checked(shipped, name, text)
        except Exception as exc:  # noqa: BLE001 - every escape is the failure being looked for
            crashed.append(f"{name}: {done}: {type(exc).__name__}: {exc}")
            continue
        assert again == (valid, problems), f"{name}: {done}: not the same problems twice"
        if not valid:
            errors = [p for p in problems if p.severity == "error"]
            assert errors, f"{name}: {done}: not valid, yet no error says why"
            assert all(p.file and p.line >= 1 and p.col >= 1 for p in problems), (name, done, problems)
    assert not crashed, f"{len(crashed)} of {MUTATIONS} mutations crashed:\n" + "\n".join(crashed[:40])


def test_engine_validate_refuses_mutations_with_exit_1_and_no_traceback(shipped: Path, tmp_path: Path) -> None:
    tried = 0
    for name, text, done in mutations(MUTATIONS, SEED + 1):
        if checked(shipped, name, text)[0]:
            continue  # some mutations leave the configuration valid (an optional key dropped)
        cfg = tmp_path / f"cfg{tried}"
        shutil.copytree(shipped, cfg)
        (cfg / name).write_text(text, encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "GITHUB_"))}
        run = subprocess.run([sys.executable, "-m", "engine.cli.main", "validate"], cwd=cfg, env=env,
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 1 and "Traceback" not in run.stderr, f"{name}: {done}\n{run.stderr}"
        assert "invalid: " in run.stderr and run.stdout.strip(), f"{name}: {done}"
        tried += 1
        if tried == IN_A_PROCESS:
            break
    assert tried == IN_A_PROCESS
