"""resolve_requirements: Cog's python_requirements → pinned wheels for the image's platform."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..artifacts import Artifact
from ..errors import CogbuildError
from . import reqfile
from .diagnose import explain
from .index import PYPI_SIMPLE, IndexClient, normalize_index_url
from .pinning import FileLocator, check_hash_pins, from_pip_report, to_artifacts
from .pip_runner import PipFailure, pip_command, run_pip
from .target import Target


def resolve_requirements(requirements: Sequence[str], target: Target, *, index_url: str | None = None,
                         extra_index_urls: Iterable[str] = (), find_links: Iterable[str] = (),
                         allow_sdist: bool = False, constraints: Sequence[str] = ()) -> list[Artifact]:
    """Pin the closure of `requirements` (lines of a requirements file) to wheels for `target`.

    Never builds or runs package code. Options inside the lines (--index-url, --extra-index-url,
    --find-links, --hash) are honoured as pip honours them. Returns Artifacts sorted by name.
    """
    text = "\n".join(requirements)
    parsed = reqfile.parse(text)
    if not parsed.requirements:
        return []
    _check_requirement_syntax(parsed)
    # As in pip, an --index-url line in the requirements replaces the one given by the caller.
    index = parsed.index_url or index_url
    extra = [*extra_index_urls, *parsed.extra_index_urls]
    links = [*find_links, *parsed.find_links]
    with tempfile.TemporaryDirectory(prefix="cogbuild-pyresolve-") as tmp:
        requirements_file = Path(tmp, "requirements.txt")
        requirements_file.write_text(text + "\n")
        constraints_file = None
        if constraints:
            constraints_file = Path(tmp, "constraints.txt")
            constraints_file.write_text("\n".join(constraints) + "\n")
        report_file = Path(tmp, "report.json")
        command = pip_command(target, requirements_file, report_file, index_url=index, extra_index_urls=extra,
                              find_links=links, constraints_file=constraints_file)
        outcome = run_pip(command, report_file)
    index_urls = [normalize_index_url(u) for u in [index or PYPI_SIMPLE, *extra]]
    with IndexClient() as client:
        if isinstance(outcome, PipFailure):
            raise explain(outcome, target, client, index_urls, links, allow_sdist)
        resolved = from_pip_report(outcome)
        artifacts = to_artifacts(resolved, FileLocator(client, index_urls, links), target)
    check_hash_pins(artifacts, {canonicalize_name(Requirement(r.text).name): set(r.hashes)
                                for r in parsed.requirements if r.hashes})
    return artifacts


def _check_requirement_syntax(parsed: reqfile.RequirementsText) -> None:
    for line in parsed.requirements:
        try:
            Requirement(line.text)
        except InvalidRequirement as exc:
            raise CogbuildError(f"Requirement {line.text!r} is not valid PEP 508: {exc}.") from exc
