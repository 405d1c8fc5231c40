"""GitHub Actions output: workflow-command annotations and the job's step summary.

A workflow command is `::error file=F,line=L,col=C,title=T::MESSAGE`. GitHub splits the
properties on `,` and each property on its first `=`, and ends the properties at `::`, so a
path holding a comma or a colon lands elsewhere unless those are escaped; in the message only
`%`, CR and LF are (GitHub's own toolkit escapes exactly these: `@actions/core` command.ts).
GitHub shows at most 10 error and 10 warning annotations per step: the step summary
(`$GITHUB_STEP_SUMMARY`, markdown) carries every problem.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

from ..rules.problems import Problem

_DATA = {"%": "%25", "\r": "%0D", "\n": "%0A"}
_PROPERTY = {**_DATA, ":": "%3A", ",": "%2C"}
# The characters that would start markdown or HTML, or end a table cell, backslash-escaped (as
# CommonMark allows for any ASCII punctuation): a message quoting `{{ a | b }}`, `**kwargs` or
# `<script>` reads as it was written.
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]<>|~&#])")


def escape_data(text: str) -> str:
    """The message of a workflow command."""
    return "".join(_DATA.get(char, char) for char in text)


def escape_property(text: str) -> str:
    """A property value of a workflow command (`file=`, `line=`, `col=`, `title=`)."""
    return "".join(_PROPERTY.get(char, char) for char in text)


def annotation(problem: Problem, title: str | None = None) -> str:
    """`problem` as one `::error` or `::warning` workflow command."""
    properties = {"file": problem.file, "line": str(problem.line), "col": str(problem.col)}
    if title:
        properties["title"] = title
    joined = ",".join(f"{name}={escape_property(value)}" for name, value in properties.items())
    return f"::{problem.severity} {joined}::{escape_data(problem.message)}"


def markdown_text(text: str) -> str:
    """Text shown as it is in a markdown table cell: punctuation escaped, line breaks as <br>."""
    escaped = _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)
    return "<br>".join(escaped.splitlines()) if escaped else escaped


def problems_summary(problems: Sequence[Problem], config_path: str, failed: bool) -> str:
    """Every problem as a markdown section for the step summary; `failed`: whether the check
    fails (with `--strict`, warnings fail it too)."""
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
    verdict = "invalid" if failed else "valid"
    heading = f"`engine validate` {markdown_text(config_path)}: {verdict}, {errors} error(s), {warnings} warning(s)"
    lines = [f"### {heading}", ""]
    if not problems:
        return "\n".join(lines)
    lines += ["| severity | where | problem |", "|---|---|---|"]
    for p in problems:
        where = markdown_text(f"{p.file}:{p.line}:{p.col}")
        lines.append(f"| {p.severity} | {where} | {markdown_text(p.message)} |")
    return "\n".join(lines) + "\n"


def append_step_summary(markdown: str, environ: Mapping[str, str] | None = None) -> bool:
    """Appends `markdown` to `$GITHUB_STEP_SUMMARY` when it is set; False when it is not."""
    path = (os.environ if environ is None else environ).get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(markdown if markdown.endswith("\n") else markdown + "\n")
        fh.write("\n")
    return True
