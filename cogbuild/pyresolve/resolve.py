"""resolve_requirements: Cog's python_requirements → pinned wheels for the image's platform."""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..artifacts import Artifact
from ..errors import CogbuildError, UsageError
from . import reqfile, sdist
from .diagnose import explain, project_files
from .index import PYPI_SIMPLE, IndexClient, normalize_index_url
from .metadata_proxy import MetadataProxy
from .pinning import FileLocator, check_hash_pins, from_pip_report, to_artifacts
from .pip_runner import PipFailure, pip_command, run_pip
from .target import Target

# Each source-only project costs one more pip run; a closure with more of them is not a wheel closure.
MAX_SDISTS = 10


def resolve_requirements(requirements: Sequence[str], target: Target, *, index_url: str | None = None,
                         extra_index_urls: Iterable[str] = (), find_links: Iterable[str] = (),
                         allow_sdist: bool = False, constraints: Sequence[str] = ()) -> list[Artifact]:
    """Pin the closure of `requirements` (lines of a requirements file) to wheels for `target`.

    Never builds or runs package code. Options inside the lines (--index-url, --extra-index-url,
    --find-links, --hash) are honoured as pip honours them. With allow_sdist, a project that has only
    a source distribution joins the lock (as kind "sdist") when its dependencies are declared
    statically (PEP 643); otherwise the error says it would need building. Returns Artifacts sorted
    by name.
    """
    text = "\n".join(requirements)
    parsed = reqfile.parse(text)
    _check_requirement_syntax(parsed)
    if not parsed.requirements:
        return []
    with tempfile.TemporaryDirectory(prefix="cogbuild-pyresolve-") as tmp, IndexClient() as client:
        run = _Resolution(Path(tmp), target, client, parsed, text, index_url, [*extra_index_urls],
                          [*find_links], constraints, allow_sdist)
        artifacts = run.resolve()
    check_hash_pins(artifacts, {canonicalize_name(Requirement(r.text).name): set(r.hashes)
                                for r in parsed.requirements if r.hashes})
    return artifacts


def _check_requirement_syntax(parsed: reqfile.RequirementsText) -> None:
    for option in parsed.other_options:
        if option.split()[0].split("=")[0] in _UNSUPPORTED_OPTIONS:
            raise UsageError(f"The requirements line {option!r} refers to a file or directory, which cogbuild "
                             "lock cannot pin; list the packages themselves (an index, URL or --find-links).")
    for line in parsed.requirements:
        if line.text.startswith((".", "/", "~")):
            raise UsageError(f"The requirement {line.text!r} is a local path; cogbuild lock pins packages from "
                             "an index, a URL or a --find-links location.")
        try:
            Requirement(line.text)
        except InvalidRequirement as exc:
            reason = str(exc).splitlines()[0].rstrip(".")
            raise UsageError(f"The requirement {line.text!r} is not valid PEP 508: {reason}.") from exc


# Lines that name other files or directories: relative to a file cogbuild never sees, or a local build.
_UNSUPPORTED_OPTIONS = {"-r", "--requirement", "-c", "--constraint", "-e", "--editable"}


class _Resolution:
    """One resolve_requirements call: pip runs, stand-ins for static sdists, pinning."""

    def __init__(self, workdir: Path, target: Target, client: IndexClient, parsed: reqfile.RequirementsText,
                 text: str, index_url: str | None, extra_index_urls: list[str], find_links: list[str],
                 constraints: Sequence[str], allow_sdist: bool) -> None:
        self.workdir, self.target, self.client, self.allow_sdist = workdir, target, client, allow_sdist
        # As in pip, an --index-url line in the requirements replaces the one given by the caller.
        self.index_url = parsed.index_url or index_url
        self.extra_index_urls = [*extra_index_urls, *parsed.extra_index_urls]
        self.find_links = [*find_links, *parsed.find_links]
        self.index_urls = [normalize_index_url(u) for u in [self.index_url or PYPI_SIMPLE, *self.extra_index_urls]]
        self.proxy = None if os.environ.get("COGBUILD_PIP_PROXY") == "0" else \
            MetadataProxy(self.index_urls, target, client)
        self.requirements_file = workdir / "requirements.txt"
        # Index lines in the file would override the proxy for pip; they are in self.index_urls already.
        self.requirements_file.write_text(reqfile.without_index_options(text) + "\n")
        self.constraints_file = None
        if constraints:
            self.constraints_file = workdir / "constraints.txt"
            self.constraints_file.write_text("\n".join(constraints) + "\n")
        self.standin_dir = workdir / "stand-ins"
        self.standin_dir.mkdir()
        self.sdists: dict[str, Artifact] = {}  # stand-in wheel URL → the sdist it stands for

    def resolve(self) -> list[Artifact]:
        if self.proxy is None:
            return self._resolve()
        with self.proxy:
            return self._resolve()

    def _resolve(self) -> list[Artifact]:
        for _ in range(MAX_SDISTS + 1):
            outcome = self._run_pip()
            if not isinstance(outcome, PipFailure):
                return self._pin(outcome)
            if not (self.allow_sdist and self._add_static_sdist(outcome)):
                raise explain(outcome, self.target, self.client, self.index_urls, self.find_links, self.allow_sdist)
        raise CogbuildError(f"More than {MAX_SDISTS} requirements have only source distributions.")

    def _run_pip(self) -> dict | PipFailure:
        links = self.find_links + ([str(self.standin_dir)] if self.sdists else [])
        report_file = self.workdir / "report.json"
        index_url: str | None
        if self.proxy is not None:
            index_url, *extra = [self.proxy.index_url(n) for n in range(len(self.index_urls))]
        else:
            index_url, extra = self.index_url, self.extra_index_urls
        command = pip_command(self.target, self.requirements_file, report_file, index_url=index_url,
                              extra_index_urls=extra, find_links=links, constraints_file=self.constraints_file)
        return run_pip(command, report_file)

    def _pin(self, report: dict) -> list[Artifact]:
        locator = FileLocator(self.client, self.index_urls, self.find_links + [str(self.standin_dir)])
        resolved = from_pip_report(report)
        if self.proxy is not None:
            resolved = [dataclasses.replace(item, url=self.proxy.upstream_url(item.url)) for item in resolved]
        artifacts = to_artifacts(resolved, locator, self.target)
        return [dataclasses.replace(self.sdists[a.url], required_by=a.required_by) if a.url in self.sdists else a
                for a in artifacts]

    def _add_static_sdist(self, failure: PipFailure) -> bool:
        """Make a stand-in wheel for the missing project when its sdist has static metadata."""
        missing = [m.group(1) for line in failure.error_lines()
                   if (m := re.match(r"No matching distribution found for (.+)", line))]
        if not missing:
            return False
        try:
            requirement = Requirement(missing[0].strip())
        except InvalidRequirement:
            return False
        file = sdist.newest_sdist(requirement, project_files(requirement.name, self.client, self.index_urls,
                                                             self.find_links) or [])
        if file is None:
            return False
        version = str(sdist.sdist_version(requirement.name, file.filename))
        if sdist.standin_path(self.standin_dir, requirement.name, version).exists():
            return False  # pip refused the stand-in too (e.g. its Requires-Python): let explain() say why
        path, sha256, size = sdist.fetch_sdist(self.client, file, self.workdir)
        metadata = sdist.static_metadata(path)
        if metadata is None:
            return False
        standin = sdist.write_standin_wheel(self.standin_dir, requirement.name, version, metadata)
        self.sdists[standin.resolve().as_uri()] = Artifact(
            "sdist", canonicalize_name(requirement.name), version, file.filename, file.url, sha256, size)
        return True
