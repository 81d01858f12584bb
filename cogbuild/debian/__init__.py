"""Debian half of `cogbuild lock`: verified archive indexes → apt-like dependency closure → pinned debs.

    suite = suite_for_python("3.11")                       # "bookworm"
    debs = resolve_closure(["python3.11"], suite=suite, arch="amd64")
"""

from .python import UnsupportedPython, standalone_python, suite_for_python
from .resolve import ARCHITECTURES, resolve_closure
from .source import Archive, DebianSource

__all__ = [
    "ARCHITECTURES",
    "Archive",
    "DebianSource",
    "UnsupportedPython",
    "resolve_closure",
    "standalone_python",
    "suite_for_python",
]
