"""The shape of the engine's code: function lengths and module lengths, measured on the AST.

    python tools/code_shape.py [--check] [PATH ...]   (default: engine/)

Prints the median, 90th percentile and longest function (lines from `def` to the last line of
its body, decorators excluded, nested functions counted on their own), the longest ones, and
the modules over the limit. With --check it exits 1 when a limit is broken:
no function over 60 lines, median <= 6, p90 <= 20, no module over 400 lines.
Migrations are left out: alembic writes their shape.
"""

from __future__ import annotations

import argparse
import ast
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

MAX_FUNCTION = 60
MAX_MEDIAN = 6.0
MAX_P90 = 20.0
MAX_MODULE = 400
SKIP_PARTS = {"migrations"}


@dataclass(frozen=True)
class Function:
    path: Path
    name: str
    line: int
    length: int


def functions(path: Path, tree: ast.AST) -> list[Function]:
    found: list[Function] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                end = child.end_lineno or child.lineno
                found.append(Function(path, name, child.lineno, end - child.lineno + 1))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def sources(roots: list[Path]) -> list[Path]:
    files: list[Path] = []
    for root in roots:
        candidates = [root] if root.is_file() else sorted(root.rglob("*.py"))
        files += [p for p in candidates if not SKIP_PARTS.intersection(p.parts)]
    return files


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return float(ordered[index])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[Path("engine")])
    parser.add_argument("--check", action="store_true", help="exit 1 when a limit is broken")
    parser.add_argument("--top", type=int, default=10, help="how many of the longest functions to list")
    args = parser.parse_args(argv)
    found: list[Function] = []
    modules: list[tuple[int, Path]] = []
    for path in sources(args.paths):
        text = path.read_text(encoding="utf-8")
        modules.append((len(text.splitlines()), path))
        found += functions(path, ast.parse(text, filename=str(path)))
    lengths = [f.length for f in found]
    median = statistics.median(lengths) if lengths else 0.0
    p90 = percentile(lengths, 0.9)
    longest = sorted(found, key=lambda f: -f.length)
    print(f"{len(found)} functions in {len(modules)} modules: median {median:g} lines, p90 {p90:g}, "
          f"max {longest[0].length if longest else 0}")
    for f in longest[:args.top]:
        print(f"  {f.length:4d}  {f.path}:{f.line}  {f.name}")
    big = sorted((m for m in modules if m[0] > MAX_MODULE), reverse=True)
    for lines, path in big:
        print(f"  module over {MAX_MODULE} lines: {path} ({lines})")
    broken = [f"a function over {MAX_FUNCTION} lines" for f in longest[:1] if f.length > MAX_FUNCTION]
    broken += [f"median {median:g} > {MAX_MEDIAN:g}"] if median > MAX_MEDIAN else []
    broken += [f"p90 {p90:g} > {MAX_P90:g}"] if p90 > MAX_P90 else []
    broken += [f"{len(big)} module(s) over {MAX_MODULE} lines"] if big else []
    if broken:
        print("limits broken: " + "; ".join(broken))
    return 1 if args.check and broken else 0


if __name__ == "__main__":
    sys.exit(main())
