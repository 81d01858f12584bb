"""Source distributions: recognising their file names."""

from __future__ import annotations

from packaging.utils import InvalidSdistFilename, canonicalize_name, parse_sdist_filename
from packaging.version import Version

SDIST_SUFFIXES = (".tar.gz", ".zip")


def sdist_version(name: str, filename: str) -> Version | None:
    """The version of `name` an sdist file name carries, or None when it is not an sdist of `name`."""
    if not filename.endswith(SDIST_SUFFIXES):
        return None
    try:
        sdist_name, version = parse_sdist_filename(filename)
    except InvalidSdistFilename:
        return None
    return version if sdist_name == canonicalize_name(name) else None
