"""Predictions over a JSONL file of inputs: read and check the file here, post with the runtime's runner.

`cogbuild predict IMAGE --batch` posts from this host to the container it started; the Kubernetes Job of
`cogbuild deploy kubernetes --job` runs the same runner (cog.command.batch) inside the image.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cog.command.batch import BatchInput, InputsError, parse_jsonl, run_batch

from .errors import CogbuildError, UsageError
from .predict_io import check_json_inputs


def read_batch_inputs(path: str, schema: dict | None) -> list[BatchInput]:
    """Every line of the file as checked inputs (files named `@path` read in); the first bad line stops
    everything before any model starts, named by its number."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"there is no inputs file {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the inputs file {path}: {exc}") from None
    try:
        items = parse_jsonl(text, path)
    except InputsError as exc:
        raise UsageError(str(exc)) from None
    for item in items:
        try:
            item.input = check_json_inputs(item.input, schema)
        except UsageError as exc:
            raise UsageError(f"{path} line {item.line}: {exc}") from None
    return items


def jsonl_text(items: list[BatchInput]) -> str:
    """The checked inputs as JSONL, each on its original line (blank lines between), so the runner's result
    lines name the lines of the user's file."""
    lines = [""] * items[-1].line
    for item in items:
        lines[item.line - 1] = json.dumps(item.input, separators=(",", ":"))
    return "\n".join(lines) + "\n"


@dataclass
class BatchRequest:
    """`--batch FILE` in place of `-i`/`--json`: its payload is every line of the file, checked."""

    path: str
    flags: tuple[str, ...] = ()  # no -i files to check

    def payload(self, schema: dict | None) -> list[BatchInput]:
        return read_batch_inputs(self.path, schema)


def predict_batch(base_url: str, items: list[BatchInput], concurrency: int, out_path: str | None) -> None:
    """Post every input (up to `concurrency` at once) and write one result line each, in input order, as
    they finish; raise naming how many failed once all are done."""
    out = sys.stdout if out_path in (None, "-") else open(out_path, "w", encoding="utf-8")
    try:
        def emit(result: dict[str, Any]) -> None:
            out.write(json.dumps(result, separators=(",", ":")) + "\n")
            out.flush()  # a long batch stopped half-way keeps the lines it finished

        failed = asyncio.run(run_batch(base_url, items, concurrency, emit))
    finally:
        if out is not sys.stdout:
            out.close()
    if failed:
        where = "stdout" if out is sys.stdout else out_path
        raise CogbuildError(f"{failed} of {len(items)} predictions failed; their errors are in their lines of {where}")
