"""One resolve_requirements call once uv is on its way (resolve.py): the lines checked, uv's closure or
pip's, sdists and the project's own files as stand-ins, and the pinning.

The heavy half of the resolver: packaging, the index client, the proxies. resolve.py loads it only after
starting uv."""

from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from ..artifacts import Artifact
from ..content_store import file_sha256
from ..errors import CogbuildError, UsageError
from ..gitsource import archive, parse_git_requirement
from ..requirement_paths import is_git_url, is_local_path, local_file, names_a_source, project_path
from . import reqfile
from .index import IndexClient
from .lockfile import wheels_for_lockfile
from .pinning import FileLocator, check_hash_pins, from_pip_report, to_artifacts
from .pip_runner import PipFailure, pip_command, run_pip
from .target import Target
from .uv_runner import UvResolution, newer_glibc_wheels

if TYPE_CHECKING:
    from .metadata_proxy import MetadataProxy

# Loaded where needed, not here: a warm lock uses none of them (the metadata proxy's http.server, the sdist
# readers' tarfile and zipfile, the build backend's pyproject_hooks, pip's error messages).

# Each source-only project costs one more pip run; a closure with more of them is not a wheel closure.
MAX_SDISTS = 10


def resolve(parsed: reqfile.RequirementsText, text: str, target: Target, workdir: Path, requirements_file: Path,
            constraints_file: Path | None, *, index_urls: list[str], find_links: list[str], allow_sdist: bool,
            project_root: Path | None, proxy: bool, uv: UvResolution | None, cache_root: Path) -> list[Artifact]:
    """resolve_requirements once the lines are in `workdir` as pip reads them and uv, where it resolves them,
    is on its way: see there."""
    _check_requirement_syntax(parsed, project_root is not None)
    if not parsed.requirements:
        return []
    with IndexClient() as client:
        artifacts = _Resolution(workdir, target, client, parsed, text, index_urls, find_links, requirements_file,
                                constraints_file, allow_sdist, project_root, proxy, uv, cache_root).resolve()
    check_hash_pins(artifacts, {canonicalize_name(Requirement(r.text).name): set(r.hashes)
                                for r in parsed.requirements if r.hashes and not names_a_source(r.text)})
    return artifacts


def check_requirements(requirements: Sequence[str], project_root: Path) -> None:
    """What can be told about the lines without the network: their syntax and the project files they name."""
    parsed = reqfile.parse("\n".join(requirements))
    _check_requirement_syntax(parsed, local_files=True)
    for line in parsed.requirements:
        if is_local_path(line.text):
            local_file(line.text, project_root)


def _check_requirement_syntax(parsed: reqfile.RequirementsText, local_files: bool) -> None:
    for option in parsed.other_options:
        if option.split()[0].split("=")[0] in _UNSUPPORTED_OPTIONS:
            raise UsageError(f"The requirements line {option!r} refers to a file or directory, which cogbuild "
                             "lock cannot pin; list the packages themselves (an index, URL or --find-links).")
    for line in parsed.requirements:
        if is_git_url(line.text):
            parse_git_requirement(line.text)
            continue
        if is_local_path(line.text):
            if not local_files:
                raise UsageError(f"The requirement {line.text!r} is a local path; cogbuild lock pins packages "
                                 "from an index, a URL or a --find-links location.")
            continue
        try:
            Requirement(line.text)
        except InvalidRequirement as exc:
            reason = str(exc).splitlines()[0].rstrip(".")
            raise UsageError(f"The requirement {line.text!r} is not valid PEP 508: {reason}.") from exc


# Lines that name other files or directories: relative to a file cogbuild never sees, or a local build.
_UNSUPPORTED_OPTIONS = {"-r", "--requirement", "-c", "--constraint", "-e", "--editable"}


class _Resolution:
    """One resolve_requirements call: pip runs, stand-ins for sdists and project files, pinning."""

    def __init__(self, workdir: Path, target: Target, client: IndexClient, parsed: reqfile.RequirementsText,
                 text: str, index_urls: list[str], find_links: list[str], requirements_file: Path,
                 constraints_file: Path | None, allow_sdist: bool, project_root: Path | None, proxy: bool,
                 uv: UvResolution | None, cache_root: Path) -> None:
        self.workdir, self.target, self.client, self.allow_sdist = workdir, target, client, allow_sdist
        self.parsed, self.index_urls, self.find_links = parsed, index_urls, find_links
        self.requirements_file, self.constraints_file = requirements_file, constraints_file
        self.use_proxy, self.uv, self.cache_root = proxy, uv, cache_root
        self.proxy: MetadataProxy | None = None  # pip's, made when pip resolves
        self.standin_dir = workdir / "stand-ins"
        self.standin_dir.mkdir()
        self.sdists: dict[str, Artifact] = {}  # stand-in wheel URL → the source it stands for
        self._backend_answers: dict[Path, tuple[list[str], str]] = {}  # sdist → (build requirements, metadata)
        pins = {line.line_number: self._add_source(line.text, project_root)
                for line in parsed.requirements if names_a_source(line.text)}
        if pins:  # a project file's or git commit's line: a direct reference to its stand-in (or the wheel)
            lines = text.splitlines()
            for number, pin in pins.items():
                lines[number - 1] = pin
            requirements_file.write_text(reqfile.without_index_options("\n".join(lines)) + "\n")

    def resolve(self) -> list[Artifact]:
        by_uv = self._resolve_with_uv()
        if by_uv is not None:
            return by_uv
        if not self.use_proxy:
            return self._resolve()
        from .metadata_proxy import MetadataProxy, metadata_store

        self.proxy = MetadataProxy(self.index_urls, self.target, self.client, metadata_store(self.cache_root))
        with self.proxy:
            return self._resolve()

    def _resolve_with_uv(self) -> list[Artifact] | None:
        """uv's closure when uv may resolve these lines and can (see uv_runner), else None: pip's turn."""
        uv = self.uv
        if uv is None:
            return None
        if uv.stored is not None:
            reused = uv.resolutions.reuse(uv.stored, self.client)
            if reused is not None:
                return reused
        run = uv.run or uv.start()
        # uv reads the pages through a proxy, so that the pages this closure rests on are known. It serves on
        # the port uv was given when it started.
        from .metadata_proxy import MetadataProxy, metadata_store

        with MetadataProxy(self.index_urls, self.target, self.client, metadata_store(self.cache_root),
                           serve_metadata=False, listener=run.listener) as proxy:
            proxy.fetch_ahead(self._direct_requirements())
            compiled = run.result()
            pages = proxy.pages_read()
        # A page the proxy could not fetch looked missing to uv: pip resolves again and names the index.
        if compiled is None or any(page not in self.client.page_digests for page in pages) or \
                newer_glibc_wheels(self.target, (f for page in pages for f in self.client.project_files(*page) or [])):
            return None
        try:
            artifacts = wheels_for_lockfile(compiled, self.target, self.client)
        except CogbuildError:
            return None  # e.g. an index page changed since uv read it: pip resolves afresh
        uv.resolutions.remember(uv.key, self.client, pages, artifacts)
        return artifacts

    def _direct_requirements(self) -> list[str]:
        """The projects the lines name that the target needs (whose pages any resolver reads first)."""
        environment = {**self.target.marker_environment(), "extra": ""}
        requirements = [Requirement(line.text) for line in self.parsed.requirements]
        return [r.name for r in requirements if r.marker is None or r.marker.evaluate(environment)]

    def _resolve(self) -> list[Artifact]:
        for _ in range(MAX_SDISTS + 1):
            outcome = self._run_pip()
            if not isinstance(outcome, PipFailure):
                return self._pin(outcome)
            if not (self.allow_sdist and self._add_sdist(outcome)):
                from .diagnose import explain

                raise explain(outcome, self.target, self.client, self.index_urls, self.find_links, self.allow_sdist)
        raise CogbuildError(f"More than {MAX_SDISTS} requirements have only source distributions.")

    def _index_options(self) -> list[str]:
        """The lock's indexes as pip options, for installing a build backend's requirements."""
        options = ["--index-url", self.index_urls[0]]
        for url in self.index_urls[1:]:
            options += ["--extra-index-url", url]
        for location in self.find_links:
            options += ["--find-links", location]
        return options

    def _add_source(self, line: str, project_root: Path | None) -> str:
        """Pin a wheel or sdist of the project, or a git commit's tree, for pip (a copy of the wheel or a
        stand-in); returns the line that replaces it: a direct reference to that file, so that a release of
        the same name and version on an index cannot take its place."""
        if is_git_url(line):
            source = parse_git_requirement(line)
            return self._add_sdist_file(archive(source, self.workdir), source.url)
        assert project_root is not None  # _check_requirement_syntax refused local paths without a project
        path = local_file(line, project_root)
        if not path.name.endswith(".whl"):
            return self._add_sdist_file(path, project_path(path, project_root))
        name, version, _, _ = parse_wheel_filename(path.name)
        copy = self.standin_dir / path.name
        shutil.copyfile(path, copy)
        self.sdists[copy.resolve().as_uri()] = Artifact("wheel", name, str(version), path.name,
                                                        project_path(path, project_root), file_sha256(path),
                                                        path.stat().st_size)
        return f"{name} @ {copy.resolve().as_uri()}"

    def _add_sdist_file(self, path: Path, url: str) -> str:
        from email.parser import HeaderParser

        from . import sdist

        build_requires, metadata = self._ask_backend(path)
        headers = HeaderParser().parsestr(metadata)
        name, version = canonicalize_name(headers["Name"]), Version(headers["Version"])
        standin = sdist.write_standin_wheel(self.standin_dir, name, str(version), metadata)
        self.sdists[standin.resolve().as_uri()] = Artifact("sdist", name, str(version), path.name, url,
                                                           file_sha256(path), path.stat().st_size,
                                                           build_requires=tuple(build_requires))
        return f"{name} @ {standin.resolve().as_uri()}"

    def _ask_backend(self, path: Path) -> tuple[list[str], str]:
        """The sdist's build requirements and metadata, once per file: read from the archive when PKG-INFO
        declares its dependencies (PEP 643), else from its build backend."""
        from . import sdist
        from .backend import ask_backend

        if path not in self._backend_answers:
            static = sdist.static_metadata(path)
            if static is not None:
                self._backend_answers[path] = (sdist.static_build_requires(path), static)
            else:
                self._backend_answers[path] = ask_backend(path, Path(tempfile.mkdtemp(dir=self.workdir)),
                                                          self._index_options())
        return self._backend_answers[path]

    def _run_pip(self) -> dict | PipFailure:
        links = self.find_links + ([str(self.standin_dir)] if self.sdists else [])
        report_file = self.workdir / "report.json"
        if self.proxy is not None:
            index_url, *extra = [self.proxy.index_url(n) for n in range(len(self.index_urls))]
        else:
            index_url, *extra = self.index_urls
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

    def _add_sdist(self, failure: PipFailure) -> bool:
        """Make a stand-in wheel for the missing project from its newest fitting sdist's metadata."""
        from . import sdist
        from .diagnose import project_files

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
        build_requires, metadata = self._ask_backend(path)
        standin = sdist.write_standin_wheel(self.standin_dir, requirement.name, version, metadata)
        self.sdists[standin.resolve().as_uri()] = Artifact(
            "sdist", canonicalize_name(requirement.name), version, file.filename, file.url, sha256, size,
            build_requires=tuple(build_requires))
        return True
