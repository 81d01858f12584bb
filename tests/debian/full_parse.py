"""The reference a scanned (lazy) PackageIndex is checked against: every paragraph parsed up front."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple

from debian.debian_support import Version

from cogbuild.debian import index as index_module
from cogbuild.debian.archive import PackagesText
from cogbuild.debian.index import BinaryPackage, PackageIndex


def fully_parsed(texts: Sequence[PackagesText], arch: str) -> list[BinaryPackage]:
    """Every package of the texts, each paragraph parsed in one pass over the whole text."""
    packages = []
    for text in texts:
        for fields in index_module._paragraphs(text.text().decode("utf-8", "replace")):
            package = index_module._package(fields, text.archive.base(), arch)
            if package is not None:
                packages.append(package)
    return packages


def assert_answers_as_a_full_parse(index: PackageIndex, texts: Sequence[PackagesText], arch: str) -> int:
    """Candidates, every version and every virtual name's providers, as a full parse gives them; returns
    how many names were compared."""
    versions: dict[str, list[BinaryPackage]] = {}
    for package in fully_parsed(texts, arch):
        versions.setdefault(package.name, []).append(package)
    highest = {name: max(listed, key=lambda p: Version(p.version)) if len(listed) > 1 else listed[0]
               for name, listed in versions.items()}
    for name, listed in versions.items():
        assert [astuple(p) for p in index.all_versions(name)] == [astuple(p) for p in listed], name
        assert astuple(index.candidates[name]) == astuple(highest[name]), name
    assert sorted(index.candidates) == sorted(highest)
    provided_by: dict[str, list[tuple[tuple, str | None]]] = {}  # virtual -> (candidate, version), by name
    for name in sorted(highest):
        for virtual, version in highest[name].provides:
            provided_by.setdefault(virtual, []).append((astuple(highest[name]), version))
    for virtual, expected in provided_by.items():
        assert [(astuple(p), version) for p, version in index.providers(virtual)] == expected, virtual
    assert set(provided_by) <= set(index.virtual_names())
    return len(versions)
