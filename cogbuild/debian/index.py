"""Packages indexes, read lazily: the candidate version of every package and who provides each virtual name."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from typing import Any

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
    """Packages of one architecture (and arch "all") merged across archives, read lazily.

    Each name's candidate, what dependencies resolve to, is its highest version, as apt's default.
    Other versions are kept for exact pins (`name=version`) and error messages. Loading an index only
    scans its text for where each package's paragraph is and what Provides lines say; a paragraph's
    fields are parsed when the resolver first asks for its package, so a small closure parses little.
    """

    def __init__(self, tables: Sequence[ScannedIndex]) -> None:
        self._tables = list(tables)
        self.candidates: Mapping[str, BinaryPackage] = _Candidates(self)
        self._versions: dict[str, list[BinaryPackage]] = {}
        self._providers: dict[str, list[tuple[BinaryPackage, str | None]]] = {}

    @classmethod
    def from_texts(cls, texts: Iterable[PackagesText], arch: str, cache: ContentStore | None = None) -> PackageIndex:
        return cls([ScannedIndex(index_text(text, cache), text.archive.base(), arch) for text in texts])

    def all_versions(self, name: str) -> list[BinaryPackage]:
        """Every listed package of this name, in the order of the archives and their indexes."""
        versions = self._versions.get(name)
        if versions is None:
            listed = [package for table in self._tables for package in table.packages(name)]
            versions = self._versions.setdefault(name, listed)  # one list even when threads race
        return versions

    def providers(self, virtual: str) -> list[tuple[BinaryPackage, str | None]]:
        """(candidate, provided version or None) for each candidate that Provides `virtual`, by name."""
        if virtual not in self._providers:
            names = {package.name for table in self._tables for package in table.mentioning(virtual)}
            found = [
                (candidate, version)
                for name in sorted(names)
                if (candidate := self.candidates.get(name)) is not None
                for provided, version in candidate.provides
                if provided == virtual
            ]
            self._providers.setdefault(virtual, found)
        return self._providers[virtual]

    def names(self) -> list[str]:
        """Every name a Package line lists, for "did you mean" (a name may have no candidate: another arch)."""
        return list(dict.fromkeys(chain.from_iterable(table.names() for table in self._tables)))

    def virtual_names(self) -> list[str]:
        """Every name a Provides line mentions, for "did you mean" (unchecked: that would parse them all)."""
        return list(dict.fromkeys(chain.from_iterable(table.virtuals() for table in self._tables)))

    def available_versions(self, name: str) -> list[str]:
        return sorted({package.version for package in self.all_versions(name)}, key=Version)

    def exact(self, name: str, version: str) -> BinaryPackage | None:
        """The package with exactly this version, from whichever archive lists it first."""
        return next((p for p in self.all_versions(name) if p.version == version), None)


class _Candidates(Mapping[str, BinaryPackage]):
    """Name -> highest version, worked out on first lookup. Iterating parses every paragraph (errors, tests)."""

    def __init__(self, index: PackageIndex) -> None:
        self._index = index
        self._chosen: dict[str, BinaryPackage | None] = {}

    def __getitem__(self, name: str) -> BinaryPackage:
        if name not in self._chosen:
            versions = self._index.all_versions(name)
            if len(versions) > 1:  # the first of the highest, as apt; most names are listed once
                self._chosen.setdefault(name, max(versions, key=lambda p: Version(p.version)))
            else:
                self._chosen.setdefault(name, versions[0] if versions else None)
        chosen = self._chosen[name]
        if chosen is None:
            raise KeyError(name)
        return chosen

    def __iter__(self) -> Iterator[str]:
        return (name for name in self._index.names() if name in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _provided_names(provides_field: str) -> list[str]:
    """Names in a Provides field ("foo (= 1.0), bar:any"), cheaply: full parsing waits for a lookup."""
    return [item.split("(")[0].split(":")[0].strip() for item in provides_field.split(",") if item.strip()]


def _paragraphs(text: str) -> Iterator[dict[str, str]]:
    """The fields we read of each paragraph of Packages text, by lower-case name.

    Read as deb822 reads them (a value is stripped; a continuation line is kept as "\\n" + line; a
    blank or whitespace-only line ends a paragraph; "#" lines are comments; names are case-insensitive),
    but only for the fields the resolver needs, with plain string operations: about 4x faster than
    python-debian's general parser.
    """
    keys: dict[str, str | None] = {}  # field name as written -> its lower-case key if wanted, else None
    fields: dict[str, str] = {}
    key: str | None = None  # the wanted field whose continuation lines may follow
    for line in text.replace("\r\n", "\n").split("\n"):
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


def _any_case(name: bytes) -> bytes:
    """A regular expression for a field name in any case ("[Pp][Aa]..."): unlike re.IGNORECASE, it keeps
    the leading "\\n" a literal prefix that the regex engine searches for at C speed (~6x faster here)."""
    return b"".join(b"[%c%c]" % (c, c ^ 0x20) if chr(c).isalpha() else re.escape(bytes([c])) for c in name)


def _line_patterns(field: bytes) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """A field's line at the start of the text, and after a "\\n": group "line" starts past the "\\n"."""
    return re.compile(field), re.compile(rb"\n" + field)


_PACKAGE_LINES = _line_patterns(rb"(?P<line>" + _any_case(b"Package") + rb"[ \t]*:[ \t]*(?P<value>\S*))")
# With its continuation lines: a long Provides may be folded.
_PROVIDES_LINES = _line_patterns(rb"(?P<line>" + _any_case(b"Provides") + rb"[ \t]*:(?P<value>.*(?:\n[ \t]+\S.*)*))")
_BLANK_LINE = re.compile(rb"\n[ \t\r\f\v]*(?:\n|\Z)")


class ScannedIndex:
    """One Packages index's text, with where its paragraphs name packages and what their Provides say.

    The scan is two regular expressions over the whole text (C speed, 0.2-0.4 s for Debian's 50 MB main
    index); each paragraph is parsed on first lookup, with the same focused parser a full read used.
    """

    def __init__(self, text: bytes, base: str, arch: str) -> None:
        self._text, self._base, self._arch = text, base, arch
        self._lines: dict[str, int] = {}  # name -> where its first Package line starts
        self._more_lines: dict[str, list[int]] = {}  # names listed more than once: every Package line
        for line, name in _field_lines(_PACKAGE_LINES, text):
            first = self._lines.setdefault(name, line)
            if first != line:
                self._more_lines.setdefault(name, [first]).append(line)
        self._mentions: dict[str, list[int]] = defaultdict(list)  # virtual name -> its Provides lines
        for line, provides in _field_lines(_PROVIDES_LINES, text):
            for virtual in _provided_names(provides):
                self._mentions[virtual].append(line)
        self._parsed: dict[int, BinaryPackage | None] = {}

    def names(self) -> Iterable[str]:
        return self._lines.keys()

    def virtuals(self) -> Iterable[str]:
        return self._mentions.keys()

    def packages(self, name: str) -> list[BinaryPackage]:
        """The packages listed as `name` (of this arch or "all", with a hash to pin), in the index's order."""
        lines = self._more_lines.get(name) or ([self._lines[name]] if name in self._lines else [])
        found = [self._package_at(line) for line in lines]
        return [package for package in found if package is not None and package.name == name]

    def mentioning(self, virtual: str) -> list[BinaryPackage]:
        """The packages whose Provides lines name `virtual` (a cheap match: their parsed Provides decide)."""
        found = [self._package_at(line) for line in self._mentions.get(virtual, ())]
        return [package for package in found if package is not None]

    def _package_at(self, line: int) -> BinaryPackage | None:
        if line not in self._parsed:
            paragraph = _paragraph_around(self._text, line).decode("utf-8", "replace")
            fields = next(_paragraphs(paragraph), {})
            self._parsed.setdefault(line, _package(fields, self._base, self._arch))
        return self._parsed[line]


def _field_lines(patterns: tuple[re.Pattern[bytes], re.Pattern[bytes]], text: bytes) -> Iterator[tuple[int, str]]:
    """(where the line starts, its value) for each line of one field in the text."""
    at_start, after_newline = patterns
    first = at_start.match(text)
    for match in chain([first] if first else [], after_newline.finditer(text)):
        yield match.start("line"), match["value"].decode("utf-8", "replace")


def _paragraph_around(text: bytes, line: int) -> bytes:
    """The paragraph holding the line that starts at `line`: between the blank lines (or text ends) around it."""
    start = line
    while start > 0:
        previous = text.rfind(b"\n", 0, start - 1) + 1
        if text[previous:start].isspace():  # a blank or whitespace-only line ends a paragraph
            break
        start = previous
    blank = _BLANK_LINE.search(text, line)
    return text[start : blank.start() + 1 if blank else len(text)]


# Bump when the cached text's form changes (it is the decompressed index as published).
_TEXT_FORMAT = "text1"


def index_text(text: PackagesText, cache: ContentStore | None = None) -> bytes:
    """The index's decompressed text, kept in the cache: decompressing Debian's main index takes ~1 s,
    reading its 50 MB and checking their hash a tenth of that."""
    if cache is None:
        return text.text()
    ref = f"{text.index.sha256}-{_TEXT_FORMAT}"
    cached = cache.get_named(ref)  # hashed before it is used
    if cached is not None:
        return cached
    with cache.writer() as sink:  # written while the next piece is decompressed
        decompressed = text.text(copy_to=sink.write)
    cache.set_ref(ref, sink.hasher.hexdigest())
    return decompressed


_PINNABLE = frozenset(("package", "version", "filename", "size", "sha256"))  # what a lock entry needs


def _package(stanza: dict[str, str], base: str, arch: str) -> BinaryPackage | None:
    """The package one paragraph describes, if it is of `arch` or "all" and can be pinned (has a hash)."""
    package_arch = stanza.get("architecture", "")
    if package_arch not in (arch, "all") or not _PINNABLE.issubset(stanza):
        return None
    return BinaryPackage(
        name=stanza["package"],
        version=stanza["version"],
        arch=package_arch,
        multi_arch=stanza.get("multi-arch", "no"),
        priority=stanza.get("priority", "optional"),
        pre_depends=stanza.get("pre-depends", ""),
        depends=stanza.get("depends", ""),
        provides_field=stanza.get("provides", ""),
        url=f"{base}/{stanza['filename']}",
        size=int(stanza["size"]),
        sha256=stanza["sha256"].lower(),
        conflicts=stanza.get("conflicts", ""),
        breaks=stanza.get("breaks", ""),
    )
