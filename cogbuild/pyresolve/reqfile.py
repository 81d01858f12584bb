"""Reading requirements text: the index options it carries, and pinned lines with their --hash values.

Only the subset pip-compile writes and Cog users put in requirements.txt is understood; anything else
is passed to pip untouched by resolve_requirements, and refused by wheels_for_lockfile.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field

PYPI_SIMPLE = "https://pypi.org/simple/"

_INDEX_OPTIONS = {"-i": "index_url", "--index-url": "index_url", "--extra-index-url": "extra_index_urls",
                  "-f": "find_links", "--find-links": "find_links"}


@dataclass
class RequirementLine:
    """One requirement as written, its --hash values and, for pip-compile output, its '# via' names."""

    text: str
    line_number: int
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)


@dataclass
class RequirementsText:
    index_url: str | None = None
    extra_index_urls: list[str] = field(default_factory=list)
    find_links: list[str] = field(default_factory=list)
    other_options: list[str] = field(default_factory=list)
    requirements: list[RequirementLine] = field(default_factory=list)


def logical_lines(text: str) -> list[tuple[int, str, str]]:
    """(first line number, content, trailing comment) with backslash continuations joined."""
    lines: list[tuple[int, str, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        content, _, comment = _split_comment(raw)
        if not pending:
            start = number
        if content.rstrip().endswith("\\"):
            pending += content.rstrip()[:-1] + " "
            continue
        lines.append((start, (pending + content).strip(), comment.strip()))
        pending = ""
    if pending:
        lines.append((start, pending.strip(), ""))
    return lines


def _split_comment(raw: str) -> tuple[str, str, str]:
    # A comment starts at '#' at line start or after whitespace (pip's rule), not inside a URL fragment.
    if "#" not in raw:  # most lines of a hashed lockfile
        return raw, "", ""
    match = re.search(r"(^|\s)#", raw)
    if not match:
        return raw, "", ""
    return raw[: match.start()], "#", raw[match.end():]


def parse(text: str) -> RequirementsText:
    parsed = RequirementsText()
    via_target: RequirementLine | None = None
    collecting_via = False
    for number, content, comment in logical_lines(text):
        if not content:
            via_target, collecting_via = _collect_via(comment, via_target, collecting_via)
            continue
        collecting_via = False
        if content.startswith("-"):
            _parse_option(content, parsed)
            via_target = None
            continue
        requirement, hashes = _split_hashes(content)
        via_target = RequirementLine(requirement, number, hashes)
        parsed.requirements.append(via_target)
    return parsed


def _collect_via(comment: str, target: RequirementLine | None, collecting: bool):
    """pip-compile writes '# via a' or '# via' followed by '#   a' lines under each requirement."""
    if target is None:
        return target, False
    if comment.startswith("via"):
        names = comment[3:].strip()
        if names:
            target.via.append(names)
            return target, False
        return target, True
    if collecting and comment:
        target.via.append(comment.strip())
        return target, True
    return target, False


def _split_hashes(content: str) -> tuple[str, list[str]]:
    hashes = re.findall(r"--hash[=\s]+sha256:([0-9a-fA-F]{64})", content)
    requirement = re.sub(r"--hash[=\s]+\S+", "", content).strip()
    return requirement, [value.lower() for value in hashes]


def _parse_option(content: str, parsed: RequirementsText) -> None:
    words = shlex.split(content)
    option, value = words[0], (words[1] if len(words) > 1 else "")
    if "=" in option:
        option, value = option.split("=", 1)
    attribute = _INDEX_OPTIONS.get(option)
    if attribute == "index_url":
        parsed.index_url = value
    elif attribute:
        getattr(parsed, attribute).append(value)
    else:
        parsed.other_options.append(content)


def index_urls(parsed: RequirementsText, index_url: str | None = None, extra_index_urls: Iterable[str] = ()) -> list[str]:
    """The indexes the lines are resolved from, as pip takes them: the text's --index-url replaces the
    caller's `index_url` (PyPI without either); every --extra-index-url, the caller's first, is added."""
    return [normalize_index_url(url) for url in
            [parsed.index_url or index_url or PYPI_SIMPLE, *extra_index_urls, *parsed.extra_index_urls]]


def normalize_index_url(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def without_index_options(text: str) -> str:
    """The text minus --index-url/--extra-index-url lines (the caller passes those to pip itself)."""
    index_options = ("-i", "--index-url", "--extra-index-url")
    kept = [line for line in text.splitlines()
            if not any(line.strip() == option or line.strip().startswith((option + " ", option + "="))
                       for option in index_options)]
    return "\n".join(kept)
