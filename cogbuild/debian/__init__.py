"""Debian half of `cogbuild lock`: verified archive indexes → apt-like dependency closure → pinned debs.

    suite = debian_suite("3.11")                           # "bookworm"
    cache = Path("/tmp/cogbuild-cache")                    # verified indexes are kept under it
    debs = resolve_closure(["python3.11"], suite=suite, arch="amd64", exclude=["debconf", "debconf-2.0"],
                           cache_root=cache)
    extra = resolve_closure(["ffmpeg"], suite=suite, arch="amd64", installed=debs, cache_root=cache)  # only what is new

Modules, in the order data flows through them:
    source.py     DebianSource / Archive: mirrors, suites ("{suite}-security"), components, keyring
    signature.py  gpgv checks InRelease; only the signed text goes on
    release.py    the signed Release: suite check, Valid-Until, sha256 + size of every index
    archive.py    fetch Packages.xz (by-hash when offered), check it against the Release, cache it,
                  decompress it
    (the indexes and their decompressed texts live in cogbuild/content_store.py, re-hashed on every read)
    index.py      the texts scanned for where each package is and what Provides say; a package's fields
                  parsed (a focused parser) when the resolver first asks for it; candidates = highest
                  version, Provides lookup
    resolve.py    the closure: Depends/Pre-Depends, alternatives, virtuals, versions, Multi-Arch
    python.py     python_version → the suite whose python3.X it is
"""

from .python import DEBIAN_PYTHONS, debian_python_package, debian_suite, upstream_version
from .resolve import ARCHITECTURES, forget_parsed_indexes, resolve_closure
from .source import Archive, DebianSource

__all__ = [
    "ARCHITECTURES",
    "Archive",
    "DEBIAN_PYTHONS",
    "DebianSource",
    "debian_python_package",
    "debian_suite",
    "forget_parsed_indexes",
    "resolve_closure",
    "upstream_version",
]
