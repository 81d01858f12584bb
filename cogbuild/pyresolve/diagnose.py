"""One clear sentence for why pip could not resolve: a project that does not exist, a version that
does not exist, no wheel for the target platform, a source-only release, or conflicting pins."""

from __future__ import annotations

import re

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from ..errors import CogbuildError
from .index import IndexClient, IndexFile
from .pip_runner import PipFailure
from .sdist import sdist_version
from .target import Target


def explain(failure: PipFailure, target: Target, client: IndexClient, index_urls: list[str],
            find_links: list[str], allow_sdist: bool) -> CogbuildError:
    errors = failure.error_lines()
    for line in errors:
        match = re.match(r"No matching distribution found for (.+)", line)
        if match:
            return _explain_missing(match.group(1).strip(), target, client, index_urls, find_links, allow_sdist)
    text = "\n".join(errors)
    if "conflicting dependencies" in text or "ResolutionImpossible" in text:
        causes = _conflict_causes(failure.stdout + failure.stderr)
        detail = "; ".join(causes) if causes else errors[0].rstrip(".")
        return CogbuildError(f"The Python requirements conflict for {target.describe()}: {detail}.")
    if "DO NOT MATCH THE HASHES" in text or "Expected sha256" in failure.stderr:
        return CogbuildError("A downloaded file does not match the --hash pinned for it in the requirements: "
                             + _hash_detail(failure.stderr) + ".")
    first = errors[0] if errors else (failure.stderr.strip().splitlines() or ["no output"])[-1]
    return CogbuildError(f"pip could not resolve the Python requirements: {first.rstrip('.')}.")


def _conflict_causes(stderr: str) -> list[str]:
    """The indented lines pip prints under 'The conflict is caused by:'."""
    block = stderr.split("The conflict is caused by:", 1)
    if len(block) < 2:
        return []
    causes: list[str] = []
    for line in block[1].splitlines()[1:] if block[1].startswith("\n") else block[1].splitlines():
        if not line.startswith((" ", "\t")) or not line.strip():
            if causes:
                break
            continue
        causes.append(line.strip().rstrip("."))
    return causes


def _hash_detail(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if "Expected sha256" in line or " Got " in line]
    files = re.findall(r"^\s*(\S+==\S+) from (\S+)", stderr, re.M)
    name = files[0][0] if files else "a file"
    return f"{name} ({' '.join(lines)})" if lines else name


def _explain_missing(requirement_text: str, target: Target, client: IndexClient, index_urls: list[str],
                     find_links: list[str], allow_sdist: bool) -> CogbuildError:
    try:
        requirement = Requirement(requirement_text)
    except InvalidRequirement:
        return CogbuildError(f"No distribution matches the requirement {requirement_text!r}.")
    files = project_files(requirement.name, client, index_urls, find_links)
    where = ", ".join(index_urls + find_links)
    if files is None:
        return CogbuildError(f"The requirement {requirement_text!r} names a package that does not exist on {where}.")
    versions = _versions(requirement.name, files)
    matching = sorted((v for v in versions if requirement.specifier.contains(v, prereleases=True)), reverse=True)
    if not matching:
        newest = max(versions) if versions else None
        available = f"the newest is {newest}" if newest else "it has no releases"
        return CogbuildError(f"No release of {requirement.name} matches {requirement_text!r} ({available}).")
    newest = matching[0]
    release = [f for f in files if _file_version(requirement.name, f) == newest]
    wheels = [f for f in release if f.filename.endswith(".whl")]
    if not wheels:
        if allow_sdist:
            return CogbuildError(f"{requirement.name} {newest} has only a source distribution, and pip "
                                 f"refused the metadata its build backend reported for {target.describe()}.")
        return CogbuildError(f"{requirement.name} {newest} has no wheel, only a source distribution, "
                             f"and source distributions are not allowed for {target.describe()}.")
    rank = set(target.tags())
    fitting = [f for f in wheels if rank & set(parse_wheel_filename(f.filename)[3])]
    excluded = [f.requires_python for f in fitting if f.requires_python
                and not SpecifierSet(f.requires_python).contains(f"{target.python_version}.0", prereleases=True)]
    if fitting and excluded:
        return CogbuildError(f"{requirement.name} {newest} requires Python {excluded[0]}, "
                             f"but the image has Python {target.python_version}.")
    return CogbuildError(f"{requirement.name} {newest} has no wheel for {target.describe()} "
                         f"(its wheels are for {_summarize_tags(wheels)}).")


def _summarize_tags(wheels: list[IndexFile]) -> str:
    """'cp310, cp311 on linux/x86_64, macosx_11_0_arm64': which Pythons and platforms a release covers."""
    tags = {tag for f in wheels for tag in parse_wheel_filename(f.filename)[3]}
    interpreters = sorted({t.interpreter for t in tags}, key=lambda i: (len(i), i))
    platforms = set()
    for tag in tags:
        arch = next((a for a in ("x86_64", "aarch64") if tag.platform.endswith(a)), None)
        platforms.add(f"linux/{arch}" if arch and "linux" in tag.platform else tag.platform)
    shown = sorted(platforms)
    listed = ", ".join(shown[:5]) + (", …" if len(shown) > 5 else "")
    return f"{', '.join(interpreters)} on {listed}"


def project_files(name: str, client: IndexClient, index_urls: list[str],
                   find_links: list[str]) -> list[IndexFile] | None:
    found: list[IndexFile] | None = None
    for index_url in index_urls:
        files = client.project_files(index_url, name)
        if files is not None:
            found = (found or []) + files
    local = [f for location in find_links for f in client.find_links_files(location)
             if _file_version(name, f) is not None]
    if local:
        found = (found or []) + local
    return found


def _file_version(name: str, file: IndexFile) -> Version | None:
    if file.filename.endswith(".whl"):
        try:
            wheel_name, version, _, _ = parse_wheel_filename(file.filename)
        except InvalidWheelFilename:
            return None
        return version if wheel_name == canonicalize_name(name) else None
    return sdist_version(name, file.filename)


def _versions(name: str, files: list[IndexFile]) -> set[Version]:
    return {v for f in files if not f.yanked and (v := _file_version(name, f)) is not None}
