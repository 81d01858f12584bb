"""What changed between two locks, for a reviewer: the interpreter first (its version and who serves it),
then added, removed and changed packages with size deltas, and build.run steps and wheels built from sdists
whose recorded output changed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .lock import Lock


@dataclass(frozen=True)
class Change:
    key: str  # "linux/amd64 os libc6"
    old_version: str | None
    new_version: str | None
    size_delta: int

    @property
    def kind(self) -> str:
        if self.old_version is None:
            return "added"
        if self.new_version is None:
            return "removed"
        return "changed"


def _by_key(lock: Lock) -> dict[str, tuple[str, int, str]]:
    """Packages by platform, group and name; build.run steps by platform, variant and number, and wheels
    built from sdists by platform and name, their "version" the start of the digest they must produce."""
    packages = {f"{p.platform} {p.group} {p.artifact.name}": (p.artifact.version, p.artifact.size, p.artifact.sha256)
                for p in lock.packages}
    steps = {f"{r.platform} {r.variant} build.run step {r.step}": (r.diff_id[:19] if r.diff_id else "not run yet", 0,
                                                                    r.command) for r in lock.runs}
    wheels = {f"{b.platform} wheel-build {b.name} {b.version}": (_short(b.sha256), b.size or 0, b.source)
              for b in lock.wheel_builds}
    return {**packages, **steps, **wheels}


def _short(sha256: str | None) -> str:
    return f"sha256:{sha256[:12]}" if sha256 else "not built yet"


def diff_locks(old: Lock, new: Lock) -> list[Change]:
    before, after = _by_key(old), _by_key(new)
    changes = []
    for key in sorted(before.keys() | after.keys()):
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        changes.append(Change(key, a[0] if a else None, b[0] if b else None, (b[1] if b else 0) - (a[1] if a else 0)))
    return changes


def describe(old: Lock, new: Lock, markdown: bool = False) -> str:
    """The whole review text: interpreter changes, then package changes."""
    return render(diff_locks(old, new), markdown, interpreter_changes(old, new))


def interpreter_changes(old: Lock, new: Lock) -> list[tuple[str, str, str]]:
    """(platform, old, new) where the image's CPython differs, e.g. "3.11.2 (Debian bookworm)" -> "3.12.14
    (standalone)"."""
    shared = sorted(set(old.platforms) & set(new.platforms))
    return [(p, old.interpreter(p), new.interpreter(p)) for p in shared if old.interpreter(p) != new.interpreter(p)]


def _mb(n: int) -> str:
    return f"{n / 1e6:+.2f} MB"


def render(changes: list[Change], markdown: bool = False,
           interpreters: Sequence[tuple[str, str, str]] = ()) -> str:
    if not changes and not interpreters:
        return "No changes." if markdown else "no changes"
    total = sum(c.size_delta for c in changes)
    if markdown:
        rows = [f"**Python {platform}**: {old} → {new}" for platform, old, new in interpreters]
        if rows:
            rows.append("")
        rows += ["| change | package | old | new | size |", "|---|---|---|---|---|"]
        rows += [f"| {c.kind} | `{c.key}` | {c.old_version or ''} | {c.new_version or ''} | {_mb(c.size_delta)} |"
                 for c in changes]
        return "\n".join(rows + ["", f"**{len(changes)} changes, {_mb(total)} in total**"])
    lines = [f"Python {platform}: {old} -> {new}" for platform, old, new in interpreters]
    lines += [f"{c.kind:8} {c.key}  {c.old_version or '-'} -> {c.new_version or '-'}  ({_mb(c.size_delta)})"
              for c in changes]
    return "\n".join(lines + [f"{len(changes)} changes, {_mb(total)} in total"])
