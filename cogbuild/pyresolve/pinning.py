"""Turning resolved distributions into Artifacts with exact URL, sha256 and size, and explaining why
each is in the closure (required_by)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..artifacts import REQUESTED, Artifact
from ..errors import CogbuildError
from .index import IndexClient, IndexFile, strip_fragment
from .target import Target


@dataclass(frozen=True)
class Resolved:
    """What pip chose for one project: name, version, the file's URL and the hash pip saw (if any)."""

    name: str
    version: str
    url: str
    sha256: str | None
    requested: bool
    requested_extras: tuple[str, ...]
    requires_dist: tuple[str, ...]


def filename_of(url: str) -> str:
    """The file name a URL ends with, percent-decoded (torch-2.5.1%2Bcpu-… is torch-2.5.1+cpu-…)."""
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


def from_pip_report(report: dict) -> list[Resolved]:
    resolved = []
    for item in report.get("install", []):
        info = item["download_info"]
        archive = info.get("archive_info", {})
        sha256 = archive.get("hashes", {}).get("sha256")
        if sha256 is None and archive.get("hash", "").startswith("sha256="):
            sha256 = archive["hash"].split("=", 1)[1]
        metadata = item["metadata"]
        resolved.append(Resolved(
            name=canonicalize_name(metadata["name"]),
            version=metadata["version"],
            url=strip_fragment(info["url"]),
            sha256=sha256,
            requested=bool(item.get("requested")),
            requested_extras=tuple(item.get("requested_extras") or ()),
            requires_dist=tuple(metadata.get("requires_dist") or ()),
        ))
    return resolved


class FileLocator:
    """Finds each resolved file on the indexes and find-links that offered it, for size and hash."""

    def __init__(self, client: IndexClient, index_urls: list[str], find_links: list[str]) -> None:
        self.client = client
        self.index_urls = index_urls
        self.find_links = find_links

    def candidates(self, name: str) -> list[IndexFile]:
        files: list[IndexFile] = []
        for index_url in self.index_urls:
            files += self.client.project_files(index_url, name) or []
        for location in self.find_links:
            files += self.client.find_links_files(location)
        return files

    def pin(self, item: Resolved) -> tuple[str, int]:
        """(sha256, size) of the exact file pip chose."""
        candidates = self.candidates(item.name)
        # The same URL first; the same file name (another spelling of a local path) only failing that.
        matches = [f for f in candidates if f.url == item.url] or \
            [f for f in candidates if f.filename == filename_of(item.url)]
        if item.sha256:
            matches = [f for f in matches if f.sha256 in (None, item.sha256)]
        known = next((f for f in matches if f.size is not None and f.sha256), None)
        if known:
            return known.sha256, known.size  # type: ignore[return-value]
        size, local_sha256 = self.client.measure(item.url)
        sha256 = item.sha256 or next((f.sha256 for f in matches if f.sha256), None) or local_sha256
        if sha256 is None:
            sha256 = self.client.download_sha256(item.url)
        return sha256, size


def to_artifacts(items: list[Resolved], locator: FileLocator, target: Target) -> list[Artifact]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        pins = list(pool.map(locator.pin, items))
    parents = required_by(items, target)
    artifacts = []
    for item, (sha256, size) in zip(items, pins, strict=False):
        filename = filename_of(item.url)
        kind = "wheel" if filename.endswith(".whl") else "sdist"
        artifacts.append(Artifact(kind, item.name, item.version, filename, item.url, sha256, size,
                                  tuple(sorted(parents.get(item.name, ())))))
    return sorted(artifacts, key=lambda a: (a.name, a.filename))


def required_by(items: list[Resolved], target: Target) -> dict[str, set[str]]:
    """Which resolved projects (or the request itself) depend on each project, with extras followed."""
    by_name = {item.name: item for item in items}
    environment = target.marker_environment()
    active_extras: dict[str, set[str]] = {}
    parents: dict[str, set[str]] = {}
    queue: list[str] = []

    def visit(name: str, extras: set[str], parent: str) -> None:
        parents.setdefault(name, set()).add(parent)
        known = active_extras.get(name)
        if known is None or not extras <= known:  # first visit, or new extras bring new dependencies
            active_extras[name] = (known or set()) | extras
            queue.append(name)

    for item in items:
        if item.requested:
            visit(item.name, set(item.requested_extras), REQUESTED)
    while queue:
        name = queue.pop()
        for dependency, extras in _dependencies(by_name[name], active_extras[name], environment):
            if dependency in by_name:
                visit(dependency, extras, name)
    return parents


def _dependencies(item: Resolved, extras: set[str], environment: dict[str, str]):
    for line in item.requires_dist:
        requirement = Requirement(line)
        if requirement.marker and not _marker_holds(requirement.marker, extras, environment):
            continue
        yield canonicalize_name(requirement.name), set(requirement.extras)


def _marker_holds(marker: Marker, extras: set[str], environment: dict[str, str]) -> bool:
    return any(marker.evaluate({**environment, "extra": extra}) for extra in extras | {""})


def check_hash_pins(artifacts: list[Artifact], pinned: dict[str, set[str]]) -> None:
    for artifact in artifacts:
        allowed = pinned.get(artifact.name)
        if allowed and artifact.sha256 not in allowed:
            raise CogbuildError(f"{artifact.filename} has sha256 {artifact.sha256}, which is not among the "
                                f"--hash values pinned for {artifact.name}.")
