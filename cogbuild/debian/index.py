"""Parsed Packages indexes: the candidate version of every package and who provides each virtual name."""

from __future__ import annotations

import hashlib
import json
from sys import intern
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from dataclasses import dataclass, fields
from functools import cached_property
from itertools import islice
from pathlib import Path

from debian import deb822
from debian.debian_support import Version

from ..content_store import ContentStore
from .archive import PackagesText

_FIELDS = [
    "Package", "Version", "Architecture", "Multi-Arch", "Priority",
    "Pre-Depends", "Depends", "Provides", "Filename", "Size", "SHA256", "Conflicts", "Breaks",
]  # fmt: skip

_FIELD_NAMES = {name.lower() for name in _FIELDS}

# apt's order when several packages provide a virtual name and none is chosen yet.
PRIORITY_RANK = {"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}

Relation = Mapping[str, Any]  # PkgRelation's dict: name, archqual, version=(op, ver) | None, arch, restrictions


@dataclass(frozen=True, eq=False)
class BinaryPackage:
    name: str
    version: str
    arch: str
    multi_arch: str  # "no", "same", "foreign" or "allowed"
    priority: str
    pre_depends: str
    depends: str
    provides_field: str
    url: str
    size: int
    sha256: str
    conflicts: str = ""
    breaks: str = ""

    @cached_property
    def dependencies(self) -> list[list[Relation]]:
        """Pre-Depends then Depends, each an OR-group of alternatives, in the order the package lists them."""
        groups: list[list[Relation]] = []
        for text in (self.pre_depends, self.depends):
            if text:
                groups.extend(list(group) for group in deb822.PkgRelation.parse_relations(text))
        return groups

    @cached_property
    def provides(self) -> list[tuple[str, str | None]]:
        """(virtual name, provided version or None); only `=` versions count, as in dpkg."""
        provided = []
        for group in deb822.PkgRelation.parse_relations(self.provides_field) if self.provides_field else []:
            for relation in group:
                version = relation["version"]
                provided.append((relation["name"], version[1] if version and version[0] == "=" else None))
        return provided

    @cached_property
    def refusals(self) -> list[tuple[str, Relation]]:
        """("Conflicts" or "Breaks", relation): packages that must not be installed beside this one."""
        refused: list[tuple[str, Relation]] = []
        for field_name, text in (("Conflicts", self.conflicts), ("Breaks", self.breaks)):
            for group in deb822.PkgRelation.parse_relations(text) if text else []:
                refused.extend((field_name, relation) for relation in group)
        return refused

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


class PackageIndex:
    """Packages of one architecture (and arch "all") merged across archives.

    Each name's candidate, what dependencies resolve to, is its highest version, as apt's default.
    Other versions are kept for exact pins (`name=version`) and error messages.
    """

    def __init__(self, packages: Iterable[BinaryPackage]) -> None:
        self.candidates: dict[str, BinaryPackage] = {}
        self.all_versions: dict[str, list[BinaryPackage]] = defaultdict(list)
        for package in packages:
            self.all_versions[package.name].append(package)
            current = self.candidates.get(package.name)
            # Version objects only for names listed more than once: most are not, and keeping one per
            # package would cost more memory than the rest of the index's bookkeeping.
            if current is None or Version(package.version) > Version(current.version):
                self.candidates[package.name] = package
        # Virtual name -> candidates whose Provides mention it; the relation is parsed only on lookup.
        self._mentions: dict[str, list[BinaryPackage]] = defaultdict(list)
        for name in sorted(self.candidates):
            package = self.candidates[name]
            if not package.provides_field:  # most packages: skip the split
                continue
            for virtual in _provided_names(package.provides_field):
                self._mentions[virtual].append(package)
        self._providers: dict[str, list[tuple[BinaryPackage, str | None]]] = {}

    def providers(self, virtual: str) -> list[tuple[BinaryPackage, str | None]]:
        """(candidate, provided version or None) for each candidate that Provides `virtual`, by name."""
        if virtual not in self._providers:
            self._providers[virtual] = [
                (package, version)
                for package in self._mentions.get(virtual, ())
                for provided, version in package.provides
                if provided == virtual
            ]
        return self._providers[virtual]

    def virtual_names(self) -> list[str]:
        return list(self._mentions)

    @classmethod
    def from_texts(cls, texts: Iterable[PackagesText], arch: str, cache: ContentStore | None = None) -> PackageIndex:
        return cls(package for text in texts for package in load_packages(text, arch, cache))

    def available_versions(self, name: str) -> list[str]:
        return sorted({package.version for package in self.all_versions.get(name, ())}, key=Version)

    def exact(self, name: str, version: str) -> BinaryPackage | None:
        """The package with exactly this version, from whichever archive lists it first."""
        return next((p for p in self.all_versions.get(name, ()) if p.version == version), None)


def _provided_names(provides_field: str) -> list[str]:
    """Names in a Provides field ("foo (= 1.0), bar:any"), cheaply: full parsing waits for a lookup."""
    return [item.split("(")[0].split(":")[0].strip() for item in provides_field.split(",") if item.strip()]


def _paragraphs(pieces: Iterable[str]) -> Iterator[dict[str, str]]:
    """The fields we read of each paragraph of a Packages index (given in pieces), by lower-case name.

    Read as deb822 reads them (a value is stripped; a continuation line is kept as "\\n" + line; a
    blank or whitespace-only line ends a paragraph; "#" lines are comments; names are case-insensitive),
    but only for the fields the resolver needs, with plain string operations: about 4x faster than
    python-debian's general parser on Debian's main index, where parsing was most of a cold lock.
    """
    keys: dict[str, str | None] = {}  # field name as written -> its lower-case key if wanted, else None
    fields: dict[str, str] = {}
    key: str | None = None  # the wanted field whose continuation lines may follow
    for line in _lines(pieces):
        first = line[:1]
        if first in (" ", "\t") and not line.isspace():
            if key is not None:
                fields[key] += "\n" + line
        elif not first or first in (" ", "\t"):
            if fields:
                yield fields
                fields = {}
            key = None
        elif first != "#":
            name, colon, value = line.partition(":")
            if colon:
                key = keys.get(name, "")
                if key == "":  # a name not seen yet: normalise it once, not on every line
                    lower = name.rstrip().lower()
                    key = keys[name] = lower if lower in _FIELD_NAMES else None
                if key is not None:
                    fields[key] = value.strip()
    if fields:
        yield fields


def _lines(pieces: Iterable[str]) -> Iterator[str]:
    """The lines of text given in pieces that may end mid-line, without their line ends."""
    partial = ""
    for piece in pieces:
        text = partial + piece
        if "\r" in text:  # a "\r" that ends this text stays in `partial`: a split "\r\n" is still caught
            text = text.replace("\r\n", "\n")
        lines = text.split("\n")
        partial = lines.pop()
        yield from lines
    if partial:
        yield partial


# Bump when BinaryPackage's fields or their parsing change, so older parsed caches are not read.
# v4: one JSON array per line, so the parsed form is written and read a batch of lines at a time.
_PARSED_FORMAT = "v4"
_COLUMNS = [field.name for field in fields(BinaryPackage)]
_BATCH = 2048  # packages per json call: a few hundred kB in memory at once, and few calls
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def load_packages(text: PackagesText, arch: str, cache: ContentStore | None = None) -> list[BinaryPackage]:
    """parse_packages, remembered in the cache: parsing a full Debian index takes seconds, loading JSON not."""
    if cache is None:
        return list(parse_packages(text, arch))
    base = hashlib.sha256(text.archive.base().encode()).hexdigest()[:16]
    ref = f"{text.index.sha256}-{arch}-{base}-{_PARSED_FORMAT}.json"
    sha256 = cache.get_ref(ref)
    path = None if sha256 is None else cache.get_path(sha256)  # hashed before it is read
    if path is not None:
        try:
            return _read_parsed(path)
        except (ValueError, TypeError):
            pass  # unreadable: parse again and overwrite
    packages = list(parse_packages(text, arch))
    _write_parsed(cache, ref, packages)
    return packages


# Columns whose values repeat across packages (architectures, priorities, common dependency lists): one
# string object each (sys.intern) instead of one per package, about a third of a parsed index's memory.
_REPEATING = [_COLUMNS.index(name) for name in ("version", "arch", "multi_arch", "priority", "pre_depends",
                                                "depends", "provides_field", "conflicts", "breaks")]


def _shared(row: list[Any]) -> list[Any]:
    for column in _REPEATING:
        row[column] = intern(row[column])
    return row


def _read_parsed(path: Path) -> list[BinaryPackage]:
    packages: list[BinaryPackage] = []
    with path.open("rb") as lines:
        while batch := list(islice(lines, _BATCH)):
            rows = json.loads(b"[" + b",".join(batch) + b"]")
            packages.extend(BinaryPackage(*_shared(row)) for row in rows)
    return packages


def _write_parsed(cache: ContentStore, ref: str, packages: list[BinaryPackage]) -> None:
    """The packages as lines of JSON arrays, written a batch at a time, never whole in memory."""
    with cache.writer() as sink:
        for start in range(0, len(packages), _BATCH):
            batch = packages[start : start + _BATCH]
            lines = [_ENCODER.encode([getattr(package, name) for name in _COLUMNS]) for package in batch]
            sink.write(("\n".join(lines) + "\n").encode())
    cache.set_ref(ref, sink.hasher.hexdigest())


_PINNABLE = frozenset(("package", "version", "filename", "size", "sha256"))  # what a lock entry needs


def parse_packages(text: PackagesText, arch: str) -> Iterable[BinaryPackage]:
    """Packages of `arch` or "all" in one index; entries that cannot be pinned (no hash) are skipped."""
    base = text.archive.base()
    for stanza in _paragraphs(text.pieces()):
        package_arch = stanza.get("architecture", "")
        if package_arch not in (arch, "all"):
            continue
        if not _PINNABLE.issubset(stanza):
            continue
        yield BinaryPackage(
            name=stanza["package"],
            version=intern(stanza["version"]),
            arch=intern(package_arch),
            multi_arch=intern(stanza.get("multi-arch", "no")),
            priority=intern(stanza.get("priority", "optional")),
            pre_depends=intern(stanza.get("pre-depends", "")),
            depends=intern(stanza.get("depends", "")),
            provides_field=intern(stanza.get("provides", "")),
            url=f"{base}/{stanza['filename']}",
            size=int(stanza["size"]),
            sha256=stanza["sha256"].lower(),
            conflicts=intern(stanza.get("conflicts", "")),
            breaks=intern(stanza.get("breaks", "")),
        )


