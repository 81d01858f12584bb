"""The dependency closure of Debian packages, chosen the way apt would, pinned as Artifacts.

Rules (single architecture: the target's packages plus arch "all"):
- each name has one candidate, its highest version across the source's archives (apt's default);
- Pre-Depends and Depends are followed; Recommends and Suggests are not;
- Conflicts and Breaks are not solved around but checked at the end: a clash is an error naming both;
- requested packages are marked first, then dependencies are followed depth-first in the order
  packages list them, as apt's MarkInstall recursion does (the bench compares closures with apt's);
- in an OR-group the first alternative already satisfied wins, otherwise the first satisfiable one;
- virtual names resolve through Provides (a versioned dependency needs a `=` versioned Provides);
  several providers and none chosen yet: apt's Priority order, then name;
- `:any` is satisfied only by Multi-Arch: allowed (or foreign) packages, as in dpkg;
- Essential packages are not added implicitly: the caller asks for the base system it wants.
"""

from __future__ import annotations

import difflib
import re
import threading
from collections import defaultdict
from collections.abc import Collection, Iterable
from pathlib import Path

from debian.debian_support import version_compare

from ..artifacts import Artifact
from ..content_store import ContentStore
from ..errors import CogbuildError
from ..http_fetch import new_client
from .archive import fetch_packages
from .index import PRIORITY_RANK, BinaryPackage, PackageIndex, Relation
from .source import DebianSource

ARCHITECTURES = ("amd64", "arm64")

_EXTERNAL = object()  # satisfied outside the closure: excluded, or installed in a lower layer

_COMPARE = {
    "<<": lambda c: c < 0,
    "<=": lambda c: c <= 0,
    "<": lambda c: c <= 0,  # obsolete spelling of <=
    "=": lambda c: c == 0,
    ">=": lambda c: c >= 0,
    ">": lambda c: c >= 0,  # obsolete spelling of >=
    ">>": lambda c: c > 0,
}

# Scanned indexes of this process, keyed by the signed hashes of the indexes they came from.
_INDEX_MEMO: dict[tuple, PackageIndex] = {}
_INDEX_MEMO_LOCK = threading.Lock()


def resolve_closure(
    packages: list[str],
    *,
    suite: str,
    arch: str,
    exclude: Collection[str] = (),
    installed: Collection[Artifact] = (),
    source: DebianSource | None = None,
    cache_root: Path,
) -> list[Artifact]:
    """The packages to install for `packages` on `suite`/`arch`, sorted by name, each pinned by sha256.

    `packages` are names, optionally `name=version` (apt's pin syntax). `exclude` names count as
    satisfied but are not installed; `installed` (a lower layer) is satisfied and not returned.
    """
    if arch not in ARCHITECTURES:
        raise CogbuildError(f"Architecture '{arch}' is not supported; use one of {', '.join(ARCHITECTURES)}.")
    index = load_index(source or DebianSource(), suite, arch, cache_root=cache_root)
    resolver = Resolver(index, suite=suite, arch=arch, exclude=exclude, installed=installed)
    return resolver.closure(packages)


def load_index(source: DebianSource, suite: str, arch: str, *, cache_root: Path) -> PackageIndex:
    """Fetch, verify and parse the source's indexes for one suite and architecture (kept under `cache_root`)."""
    cache = ContentStore(cache_root / "debian-indexes")
    headers = {"User-Agent": "cogbuild (Debian index fetch)"}
    with new_client(headers=headers) as client:  # each fetch retried as http_fetch's policy says
        texts = fetch_packages(source, suite, arch, client=client, cache=cache)
    key = (arch, tuple((t.archive.base(), t.suite, t.index.path, t.index.sha256) for t in texts))
    with _INDEX_MEMO_LOCK:
        index = _INDEX_MEMO.get(key)
        if index is None:
            index = PackageIndex.from_texts(texts, arch, cache)
            _INDEX_MEMO.clear()  # a full index takes ~65 MB: keep only the latest
            _INDEX_MEMO[key] = index
    return index


def forget_parsed_indexes() -> None:
    """Drop the scanned indexes this process keeps (~65 MB for Debian's): a lock calls this once its
    Debian closures are resolved, so the Python resolution and a build that follows run without them."""
    with _INDEX_MEMO_LOCK:
        _INDEX_MEMO.clear()


class Resolver:
    """One resolution: marks the requests, then walks their dependencies depth-first (see module doc)."""

    def __init__(
        self,
        index: PackageIndex,
        *,
        suite: str,
        arch: str,
        exclude: Collection[str] = (),
        installed: Collection[Artifact] = (),
    ) -> None:
        self.index, self.suite, self.arch = index, suite, arch
        self.exclude = set(exclude)
        self.installed = {a.name: a.version for a in installed if a.kind == "deb"}
        self.installed_provides = self._provides_of_installed()
        self.chosen: dict[str, BinaryPackage] = {}
        self.chosen_provides: dict[str, list[tuple[BinaryPackage, str | None]]] = defaultdict(list)
        self.required_by: dict[str, set[str]] = defaultdict(set)

    def closure(self, requests: Iterable[str]) -> list[Artifact]:
        # As `apt-get install` does: mark every requested package first, then follow each one's
        # dependencies depth-first, in request order (the order apt's MarkInstall recursion takes).
        marked = [package for request in requests if (package := self._request(_parse_request(request)))]
        for package in marked:
            self._follow(package)
        self._check_refusals()
        return [self._artifact(self.chosen[name]) for name in sorted(self.chosen)]

    # -- requests and dependencies ------------------------------------------------------------

    def _request(self, relation: Relation) -> BinaryPackage | None:
        """Mark a requested package; returns it when newly chosen (its dependencies still to follow)."""
        found = self._already_satisfied(relation)
        if found is _EXTERNAL:
            return None
        self._refuse_ambiguous_virtual(relation)
        package = found or self._candidate_for(relation) or self._pinned(relation)
        if package is None:
            raise CogbuildError(self._request_error(relation))
        return package if self._choose(package, "request") else None

    def _refuse_ambiguous_virtual(self, relation: Relation) -> None:
        # apt-get install refuses a purely virtual name with several providers: the user picks one.
        name = relation["name"]
        if name in self.index.candidates or self._already_satisfied(relation) is not None:
            return
        providers = sorted({provider.name for provider, _ in self.index.providers(name)})
        if len(providers) > 1:
            raise CogbuildError(
                f"Debian package '{name}' is virtual, provided by {', '.join(providers)}; name one of them instead."
            )

    def _pinned(self, relation: Relation) -> BinaryPackage | None:
        # Like `apt-get install name=version`: an exact pin may pick a version other than the candidate.
        constraint = relation["version"]
        if constraint is None or constraint[0] != "=":
            return None
        package = self.index.exact(relation["name"], constraint[1])
        return package if package is not None and self._arch_ok(package, relation) else None

    def _follow(self, root: BinaryPackage) -> None:
        """Depth-first over dependencies: a newly chosen package's own dependencies come next."""
        stack = [(root, iter(root.dependencies))]
        while stack:
            package, groups = stack[-1]
            group = next(groups, None)
            if group is None:
                stack.pop()
                continue
            chosen = self._satisfy(group, package)
            if chosen is not None:
                stack.append((chosen, iter(chosen.dependencies)))

    def _satisfy(self, group: list[Relation], dependent: BinaryPackage) -> BinaryPackage | None:
        """Meet one OR-group; returns the package it newly chose, or None when it was already met."""
        for relation in group:
            found = self._already_satisfied(relation)
            if found is not None:
                if found is not _EXTERNAL:
                    self.required_by[found.name].add(dependent.name)
                return None
        for relation in group:
            package = self._candidate_for(relation)
            if package is not None:
                return package if self._choose(package, dependent.name) else None
        raise CogbuildError(self._dependency_error(group, dependent))

    def _choose(self, package: BinaryPackage, why: str) -> bool:
        """Record why `package` is in the closure; True when it was not chosen before."""
        self.required_by[package.name].add(why)
        if package.name in self.chosen:
            return False
        self.chosen[package.name] = package
        for virtual, version in package.provides:
            self.chosen_provides[virtual].append((package, version))
        return True

    # -- matching one relation -----------------------------------------------------------------

    def _already_satisfied(self, relation: Relation):
        """The chosen package satisfying `relation`, _EXTERNAL, or None when nothing does yet."""
        name, constraint = relation["name"], relation["version"]
        if name in self.exclude:
            return _EXTERNAL
        if name in self.installed and _version_ok(self.installed[name], constraint):
            return _EXTERNAL
        if any(_provided_ok(version, constraint) for version in self.installed_provides.get(name, ())):
            return _EXTERNAL
        package = self.chosen.get(name)
        if package is not None and _version_ok(package.version, constraint) and self._arch_ok(package, relation):
            return package
        for provider, version in self.chosen_provides.get(name, ()):
            if _provided_ok(version, constraint) and self._arch_ok(provider, relation):
                return provider
        return None

    def _candidate_for(self, relation: Relation) -> BinaryPackage | None:
        """A package from the index satisfying `relation`: the real package first, then a provider."""
        name, constraint = relation["name"], relation["version"]
        package = self.index.candidates.get(name)
        if package is not None and _version_ok(package.version, constraint) and self._arch_ok(package, relation):
            return package
        providers = [
            provider
            for provider, version in self.index.providers(name)
            if _provided_ok(version, constraint) and self._arch_ok(provider, relation)
        ]
        if not providers:
            return None
        return min(providers, key=lambda p: (PRIORITY_RANK.get(p.priority, len(PRIORITY_RANK)), p.name))

    def _arch_ok(self, package: BinaryPackage, relation: Relation) -> bool:
        # dpkg's rule, reduced to one architecture (every candidate is native or "all").
        qualifier = relation["archqual"]
        if package.multi_arch == "foreign":
            return True
        if qualifier == "any":
            return package.multi_arch == "allowed"
        return qualifier in (None, "native", self.arch)

    def _provides_of_installed(self) -> dict[str, list[str | None]]:
        provides: dict[str, list[str | None]] = defaultdict(list)
        for name, version in self.installed.items():
            package = self.index.exact(name, version)
            if package is not None:
                for virtual, provided in package.provides:
                    provides[virtual].append(provided)
        return provides

    # -- Conflicts and Breaks ------------------------------------------------------------------

    def _check_refusals(self) -> None:
        """Fail when a package to be installed conflicts with (or breaks) another one in the image."""
        installed = [p for name, v in sorted(self.installed.items()) if (p := self.index.exact(name, v))]
        image = [self.chosen[name] for name in sorted(self.chosen)] + installed
        for package in image:
            for field_name, relation in package.refusals:
                for other in self._refused(relation, image):
                    if other is not package and (package.name in self.chosen or other.name in self.chosen):
                        raise CogbuildError(
                            f"Debian packages {package.name} {package.version} and {other.name} {other.version} "
                            f"cannot be installed together: {package.name} declares "
                            f"'{field_name}: {_format_group([relation])}'."
                        )

    def _refused(self, relation: Relation, image: list[BinaryPackage]) -> list[BinaryPackage]:
        name, constraint = relation["name"], relation["version"]
        hits = [p for p in image if p.name == name and _version_ok(p.version, constraint)]
        # A conflict on a virtual name hits every provider (a versioned one only matching provides).
        hits += [p for p in image for virtual, version in p.provides
                 if virtual == name and p.name != name and _provided_ok(version, constraint)]  # fmt: skip
        return hits

    # -- results and errors --------------------------------------------------------------------

    def _artifact(self, package: BinaryPackage) -> Artifact:
        return Artifact(
            kind="deb",
            name=package.name,
            version=package.version,
            filename=package.filename,
            url=package.url,
            sha256=package.sha256,
            size=package.size,
            required_by=tuple(sorted(self.required_by[package.name])),
        )

    def _where(self) -> str:
        return f"{self.suite} ({self.arch})"

    def _request_error(self, relation: Relation) -> str:
        name = relation["name"]
        versions = self.index.available_versions(name)
        if versions or self.index.providers(name):
            wanted = relation["version"][1] if relation["version"] else "any"
            offered = ", ".join(versions) or "only as a virtual package without that version"
            return f"Debian package '{name}' has no version {wanted} in {self._where()}; available: {offered}."
        close = _closest_name(name, self.index.names() + self.index.virtual_names())
        hint = f"; did you mean '{close}'?" if close else "."
        return f"Debian package '{name}' is not in {self._where()}{hint}"

    def _dependency_error(self, group: list[Relation], dependent: BinaryPackage) -> str:
        reasons = "; ".join(self._why_not(relation) for relation in group)
        return (
            f"Debian package {dependent.name} {dependent.version} depends on '{_format_group(group)}', "
            f"which {self._where()} cannot satisfy: {reasons}."
        )

    def _why_not(self, relation: Relation) -> str:
        name = relation["name"]
        candidate = self.index.candidates.get(name)
        if candidate is not None:
            older = [v for v in self.index.available_versions(name) if v != candidate.version]
            also = f" (older, not chosen: {', '.join(older)})" if older else ""
            arch = "" if self._arch_ok(candidate, relation) else f" with Multi-Arch: {candidate.multi_arch}"
            return f"{name} is at {candidate.version}{arch}{also}"
        if self.index.providers(name):
            return f"{name} is provided only without a matching version or architecture"
        return f"no package is named or provides {name}"


def _closest_name(name: str, names: list[str]) -> str | None:
    """The shortest name extending `name` past a word ("libsndfile" → "libsndfile1", "libopencv" →
    "libopencv-dev"), else difflib's closest one."""
    stems = [n for n in names if n.startswith(name) and len(n) > len(name) and not n[len(name)].isalpha()]
    if stems:
        return min(stems, key=lambda n: (len(n), n))
    close = difflib.get_close_matches(name, names, n=1)
    return close[0] if close else None


def _version_ok(version: str, constraint: tuple[str, str] | None) -> bool:
    if constraint is None:
        return True
    operator, wanted = constraint
    return _COMPARE[operator](version_compare(version, wanted))


def _provided_ok(provided: str | None, constraint: tuple[str, str] | None) -> bool:
    # An unversioned Provides satisfies only unversioned dependencies.
    if constraint is None:
        return True
    return provided is not None and _version_ok(provided, constraint)


_REQUEST = re.compile(r"^([a-z0-9][a-z0-9+.\-]+)(?::([a-z0-9\-]+))?(?:=(\S+))?$")


def _parse_request(text: str) -> Relation:
    """`name`, `name:arch` or `name=version` (apt's pin syntax) as a relation."""
    match = _REQUEST.match(text.strip())
    if match is None:
        raise CogbuildError(f"'{text}' is not a Debian package name (expected name or name=version).")
    name, qualifier, version = match.groups()
    return {"name": name, "archqual": qualifier, "version": ("=", version) if version else None}


def _format_group(group: list[Relation]) -> str:
    parts = []
    for relation in group:
        text = relation["name"] + (f":{relation['archqual']}" if relation["archqual"] else "")
        if relation["version"]:
            text += f" ({relation['version'][0]} {relation['version'][1]})"
        parts.append(text)
    return " | ".join(parts)


__all__ = ["ARCHITECTURES", "Resolver", "load_index", "resolve_closure"]
