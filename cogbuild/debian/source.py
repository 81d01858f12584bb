"""Where Debian packages come from: archives (mirror URL + suite), components and the trusted keyring."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SECURITY = "http://deb.debian.org/debian-security"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# apt's Acquire::Check-Valid-Until=false: accept a Release past its Valid-Until (a stale mirror, a snapshot).
IGNORE_VALID_UNTIL_ENV = "COGBUILD_DEBIAN_IGNORE_VALID_UNTIL"


@dataclass(frozen=True)
class Archive:
    """One apt source: a mirror base URL and a suite pattern, where `{suite}` is the release codename."""

    url: str
    suite: str = "{suite}"

    def suite_for(self, codename: str) -> str:
        return self.suite.format(suite=codename)

    def base(self) -> str:
        return self.url.rstrip("/")


def _debian_archives() -> tuple[Archive, ...]:
    # What a stock Debian image's sources.list names: the release, its point updates, its security fixes.
    return (
        Archive(DEBIAN_MIRROR, "{suite}"),
        Archive(DEBIAN_MIRROR, "{suite}-updates"),
        Archive(DEBIAN_SECURITY, "{suite}-security"),
    )


@dataclass(frozen=True)
class DebianSource:
    """The archives to resolve against; when a package is in several, its highest version wins."""

    archives: tuple[Archive, ...] = field(default_factory=_debian_archives)
    components: tuple[str, ...] = ("main",)
    keyring: Path = DEBIAN_KEYRING
    check_valid_until: bool = True  # False as IGNORE_VALID_UNTIL_ENV asks (Settings.debian_check_valid_until)

    @classmethod
    def single(cls, url: str, *, keyring: Path, components: tuple[str, ...] = ("main",)) -> DebianSource:
        """One mirror serving the plain suite (a local or test repository)."""
        return cls(archives=(Archive(url, "{suite}"),), components=components, keyring=Path(keyring))
