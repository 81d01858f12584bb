"""The signed Release file: which suite it describes and the sha256 + size of every index in it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from debian import deb822

from ..errors import CogbuildError
from .source import IGNORE_VALID_UNTIL_ENV


@dataclass(frozen=True)
class IndexFile:
    path: str  # relative to dists/<suite>/, e.g. "main/binary-amd64/Packages.xz"
    sha256: str
    size: int


@dataclass(frozen=True)
class Release:
    suite: str
    codename: str
    by_hash: bool  # the mirror serves indexes under by-hash/SHA256/<hex> (no race with mirror updates)
    architectures: tuple[str, ...]  # as listed; empty when the Release does not say
    all_in_arch_indexes: bool  # arch-"all" packages are listed in each binary-<arch>/Packages
    files: dict[str, IndexFile]

    @classmethod
    def parse(
        cls, text: bytes, *, expected_suite: str, what: str, check_valid_until: bool = True, now: datetime | None = None
    ) -> Release:
        """Parse signed Release text and check it is the suite that was asked for and still valid."""
        fields = deb822.Release(text.decode("utf-8", "replace"))
        suite, codename = fields.get("Suite", ""), fields.get("Codename", "")
        if expected_suite not in (suite, codename):
            raise CogbuildError(f"{what} describes suite '{codename or suite}', not '{expected_suite}'.")
        if check_valid_until:
            _check_valid_until(fields.get("Valid-Until"), now or datetime.now(timezone.utc), what)
        files = {}
        for entry in fields.get("SHA256", []):
            files[entry["name"]] = IndexFile(entry["name"], entry["sha256"].lower(), int(entry["size"]))
        if not files:
            raise CogbuildError(f"{what} lists no SHA256 checksums.")
        return cls(
            suite=suite,
            codename=codename,
            by_hash=fields.get("Acquire-By-Hash", "no").strip().lower() == "yes",
            architectures=tuple(fields.get("Architectures", "").split()),
            all_in_arch_indexes="Packages" in fields.get("No-Support-for-Architecture-all", "").split(),
            files=files,
        )


def _check_valid_until(value: str | None, now: datetime, what: str) -> None:
    # A Release past its Valid-Until could be an old snapshot replayed to hide security fixes.
    if not value:
        return
    try:
        until = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise CogbuildError(f"{what} has an unreadable Valid-Until date '{value}'.") from None
    if until.tzinfo is None:
        until = until.replace(tzinfo=timezone.utc)
    if until < now:
        raise CogbuildError(
            f"{what} expired on {value} (Valid-Until), so it may be a stale copy; "
            f"set {IGNORE_VALID_UNTIL_ENV}=1 to accept it anyway."
        )
