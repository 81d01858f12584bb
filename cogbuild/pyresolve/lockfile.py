"""wheels_for_lockfile: a pinned requirements file with --hash lines → one wheel per pin for the target.

The lockfile pins versions and lists the hashes of every file of each release (pip-compile writes them
all), so one file serves every platform; here each pin gets the wheel whose tag the target ranks best
(packaging.tags order) and whose sha256 the lockfile lists.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from ..artifacts import REQUESTED, Artifact
from ..errors import CogbuildError
from . import reqfile
from .index import IndexClient, IndexFile
from .target import Target


def wheels_for_lockfile(path: Path, target: Target, client: IndexClient | None = None) -> list[Artifact]:
    """The wheels `path` pins for `target`, sorted by name; an error names any pin without one. `client`
    may bring the index pages already read."""
    path = Path(path)
    try:
        parsed = reqfile.parse(path.read_text())
    except OSError as exc:
        raise CogbuildError(f"Could not read the lockfile {path}: {exc.strerror}.") from exc
    for option in parsed.other_options:
        if option.split()[0].split("=")[0] in ("-r", "--requirement", "-c", "--constraint", "-e", "--editable"):
            raise CogbuildError(f"The lockfile {path} includes {option!r}; a lockfile must pin every package itself.")
    pins = [pin for line in parsed.requirements if (pin := _pin(path, line, target)) is not None]
    index_urls = reqfile.index_urls(parsed)
    with ExitStack() as stack:
        client = client or stack.enter_context(IndexClient())
        chooser = _WheelChooser(client, index_urls, parsed.find_links, target, path)
        if parsed.find_links or not all(client.has_page(url, pin.name) for url in index_urls for pin in pins):
            from concurrent.futures import ThreadPoolExecutor

            pool = stack.enter_context(ThreadPoolExecutor(max_workers=8))  # pages to fetch: in parallel
            artifacts = list(pool.map(chooser.choose, pins))
        else:  # the pages are in hand (after uv): threads would only take turns
            artifacts = [chooser.choose(pin) for pin in pins]
    return sorted(artifacts, key=lambda a: a.name)


class _Pin:
    def __init__(self, name: str, version: Version, version_text: str, hashes: set[str],
                 via: tuple[str, ...]) -> None:
        self.name, self.version, self.hashes, self.via = name, version, hashes, via
        self.version_text = version_text  # as the lockfile writes it: as file names most likely do


def _pin(path: Path, line: reqfile.RequirementLine, target: Target) -> _Pin | None:
    where = f"line {line.line_number} of {path}"
    try:
        requirement = Requirement(line.text)
    except InvalidRequirement as exc:
        reason = str(exc).splitlines()[0].rstrip(".")
        raise CogbuildError(f"The requirement on {where} is not valid PEP 508: {reason}.") from exc
    if requirement.marker and not requirement.marker.evaluate({**target.marker_environment(), "extra": ""}):
        return None
    specifiers = list(requirement.specifier)
    if len(specifiers) != 1 or specifiers[0].operator not in ("==", "===") or "*" in specifiers[0].version:
        raise CogbuildError(f"The requirement {line.text!r} on {where} is not pinned to one version with ==.")
    if not line.hashes:
        raise CogbuildError(f"The requirement {line.text!r} on {where} has no --hash=sha256 values.")
    via = tuple(sorted({_via_name(v) for v in line.via})) or (REQUESTED,)
    return _Pin(canonicalize_name(requirement.name), Version(specifiers[0].version), specifiers[0].version,
                set(line.hashes), via)


def _via_name(via: str) -> str:
    return REQUESTED if via.startswith(("-r ", "-c ")) else canonicalize_name(via)


class _WheelChooser:
    def __init__(self, client: IndexClient, index_urls: list[str], find_links: list[str],
                 target: Target, path: Path) -> None:
        self.client, self.index_urls, self.find_links = client, index_urls, find_links
        self.target, self.path = target, path
        self.rank = target.tag_ranks()
        self.tag_texts = {str(tag) for tag in self.rank}

    def choose(self, pin: _Pin) -> Artifact:
        for file in self._fitting_wheels(pin):
            sha256, size = self._verify(file, pin)
            if sha256 is not None:
                return Artifact("wheel", pin.name, str(pin.version), file.filename, file.url, sha256, size, pin.via)
        raise CogbuildError(f"{self.path} pins {pin.name}=={pin.version}, but none of its hashed files is a "
                            f"wheel for {self.target.describe()}.")

    def _fitting_wheels(self, pin: _Pin) -> list[IndexFile]:
        """Wheels of the pinned version that the target accepts, best tag first."""
        ranked = []
        for file in self._files(pin):
            if not self._may_fit(file.filename):
                continue
            try:
                name, version, _, tags = parse_wheel_filename(file.filename)
            except InvalidWheelFilename:
                continue  # an sdist or a stray file
            ranks = [self.rank[tag] for tag in tags if tag in self.rank]
            if name == pin.name and version == pin.version and ranks:
                ranked.append((min(ranks), file.filename, file))
        return [file for _, _, file in sorted(ranked, key=lambda entry: entry[:2])]

    def _may_fit(self, filename: str) -> bool:
        """False for a wheel whose tags the target surely rejects, told from the name alone: a release lists
        up to hundreds of wheels (Windows, macOS, other Pythons), and parsing each name costs more."""
        parts = filename.lower().removesuffix(".whl").split("-")
        if len(parts) < 5 or not filename.lower().endswith(".whl"):
            return True  # not a plain wheel name: parse_wheel_filename decides
        interpreters, abis, platforms = (part.split(".") for part in parts[-3:])
        return any(f"{i}-{a}-{p}" in self.tag_texts for i in interpreters for a in abis for p in platforms)

    def _files(self, pin: _Pin) -> list[IndexFile]:
        """The files offered for the pin's project whose sha256 the lockfile lists or that state none
        (found by name on a single index, only those whose names may fit the target)."""
        files = []
        for index_url in self.index_urls:
            found = None
            if len(self.index_urls) == 1:  # else the pin's hashes are spread over the indexes' pages
                found = self.client.release_files(index_url, pin.name, pin.version_text, pin.hashes, self._may_fit)
            if found is None:
                found = self.client.files_with_sha256(index_url, pin.name, pin.hashes)
            files += found or []
        for location in self.find_links:
            files += [f for f in self.client.find_links_files(location) if f.sha256 is None or f.sha256 in pin.hashes]
        return files

    def _verify(self, file: IndexFile, pin: _Pin) -> tuple[str | None, int]:
        """(sha256, size) when the file is one the lockfile pins; (None, _) when its hash is not listed."""
        sha256, size = file.sha256, file.size
        if sha256 is None or size is None:
            measured_size, local_sha256 = self.client.measure(file.url)
            size = measured_size
            sha256 = sha256 or local_sha256 or self.client.download_sha256(file.url)
        return (sha256 if sha256 in pin.hashes else None), size
