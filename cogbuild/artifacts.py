"""Pinned inputs: what the lock records and the build downloads, by URL + sha256 + size."""

from __future__ import annotations

from dataclasses import dataclass, field

# The required_by entry of a project a requirement line names itself (pip's "requested").
REQUESTED = "request"


@dataclass(frozen=True, order=True)
class Artifact:
    """One downloadable input of an image, pinned by content.

    kind is "deb", "wheel", "sdist" or "python-tarball"; required_by names what pulled it into the closure
    (a requirement line, a Debian package, or "runtime"), so reviewers can see why it is there. An sdist's
    build_requires (known while locking only) are what its build backend needs, which the lock pins as wheels.
    """

    kind: str
    name: str
    version: str
    filename: str
    url: str
    sha256: str
    size: int
    required_by: tuple[str, ...] = field(default=(), compare=False)
    build_requires: tuple[str, ...] = field(default=(), compare=False)
