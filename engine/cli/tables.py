"""Tables for people and for pipes (`engine stats`, `engine upcoming`).

On a terminal: a table when every id, time and number fits whole in the width, free text folding
between words; otherwise one record per row, its fields wrapped as whole `name: value` pairs.
Nothing is ever cut. In a pipe (or with `--format tsv`): tab-separated values with a header line,
one row per line; a tab, line break or backslash inside a value is written as \\t, \\n, \\r or \\\\.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import click

from ..rules.timeparse import format_instant, is_zone, zone

FORMATS = ("table", "tsv", "json")
# Free text narrower than this (or than its longest word) is not worth a table: records instead.
TEXT_MIN_WIDTH = 12


@dataclass(frozen=True)
class Column:
    name: str
    numeric: bool = False  # right-aligned
    text: bool = False  # free text, which may wrap between words; ids, times and numbers never wrap


def _check_zone(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not is_zone(value):
        raise click.BadParameter(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin, UTC)")
    return value


tz_option = click.option("--tz", "tz", default=None, callback=_check_zone,
                         help="Show times in this IANA time zone, ISO 8601 with its offset (default UTC, with Z).")
format_option = click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
                             help="table on a terminal, tsv (with a header line) when piped; json for programs.")


def output_format(fmt: str | None) -> str:
    """The --format given, else a table for a terminal and TSV for a pipe or a file."""
    return fmt or ("table" if sys.stdout.isatty() else "tsv")


def local_time(instant: datetime, tz: str | None) -> str:
    """ISO 8601 with the offset in force there (`2026-03-09T23:00:00+09:00`); UTC with Z without a zone."""
    if tz is None:
        return format_instant(instant)
    return instant.astimezone(zone(tz)).isoformat(timespec="seconds")


def rate(value: float | None) -> str:
    """A rate as a percentage; n/a when there was nothing to measure it on."""
    return "n/a" if value is None else f"{value:.1%}"


def print_rows(columns: Sequence[Column], rows: Sequence[Sequence[str]], fmt: str, title: str) -> None:
    """Print rows as TSV or for a person (see the module's docstring)."""
    if fmt == "tsv":
        click.echo(tsv(columns, rows), nl=False)
        return
    from rich.console import Console

    console = Console(highlight=False)
    columns, rows = _with_values(columns, rows)
    if table_width(columns, rows) <= console.width:
        console.print(table(columns, rows, title))
        return
    console.print(title, style="bold", soft_wrap=True)
    for row in rows:
        console.print()
        for line in record_lines(columns, row, console.width):
            console.print(line, soft_wrap=True, markup=False)


def _with_values(columns: Sequence[Column],
                 rows: Sequence[Sequence[str]]) -> tuple[list[Column], list[list[str]]]:
    """The columns that hold a value in some row (all of them when none does), and the rows cut to them."""
    shown = [i for i, c in enumerate(columns) if any(row[i] for row in rows)] or list(range(len(columns)))
    return [columns[i] for i in shown], [[row[i] for i in shown] for row in rows]


def tsv(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> str:
    lines = ["\t".join(c.name for c in columns)]
    lines += ["\t".join(_tsv_value(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def _tsv_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _widths(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> list[int]:
    """Each column's narrowest acceptable width: whole values, or for free text a readable minimum."""
    from rich.cells import cell_len

    widths = []
    for i, column in enumerate(columns):
        cells = [column.name, *(row[i] for row in rows)]
        natural = max(cell_len(line) for cell in cells for line in cell.splitlines() or [""])
        if column.text:
            longest_word = max((cell_len(w) for cell in cells for w in cell.split()), default=0)
            natural = min(natural, max(longest_word, TEXT_MIN_WIDTH))
        widths.append(natural)
    return widths


def table_width(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> int:
    """The narrowest the table can be drawn with nothing cut: cells, one space each side, the rules between."""
    return sum(_widths(columns, rows)) + 2 * len(columns) + len(columns) + 1


def table(columns: Sequence[Column], rows: Sequence[Sequence[str]], title: str) -> Any:
    from rich.table import Table

    out = Table(title=title, title_justify="left")
    for column, width in zip(columns, _widths(columns, rows), strict=True):
        if column.text:
            out.add_column(column.name, overflow="fold", min_width=width)
        else:
            out.add_column(column.name, no_wrap=True, min_width=width, justify="right" if column.numeric else "left")
    for row in rows:
        out.add_row(*[_plain(v) for v in row])
    return out


def _plain(value: str) -> Any:
    from rich.text import Text

    return Text(value)  # values are data, never markup


def record_lines(columns: Sequence[Column], row: Sequence[str], width: int) -> list[str]:
    """A row as a record: its first value as a heading, then `name: value` pairs, as many to a
    line as fit; a pair wider than the line is folded, never cut."""
    lines = [row[0], *_packed(_pairs(columns, row), width, "  ")]
    return [piece for line in lines for piece in _fold(line, width)]


def _pairs(columns: Sequence[Column], row: Sequence[str]) -> Iterator[str]:
    """`name: value` for each value of the row but the first (its heading), on one line."""
    for column, value in zip(columns[1:], row[1:], strict=False):
        if value:
            yield f"{column.name}: {value}".replace("\n", " ")


def _packed(pairs: Iterable[str], width: int, indent: str) -> list[str]:
    """The pairs as many to an indented line as fit in `width`, three spaces apart."""
    from rich.cells import cell_len

    lines, current = [], ""
    for pair in pairs:
        if current and cell_len(indent + current + "   " + pair) <= width:
            current += "   " + pair
            continue
        if current:
            lines.append(indent + current)
        current = pair
    if current:
        lines.append(indent + current)
    return lines


def _fold(line: str, width: int) -> list[str]:
    from rich.cells import cell_len

    if cell_len(line) <= width or width < 8:
        return [line]
    pieces, current = [], ""
    for char in line:
        if cell_len(current + char) > width:
            pieces.append(current)
            current = "    "  # a folded pair continues further in than the pairs
        current += char
    return pieces + [current]
