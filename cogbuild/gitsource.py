"""A git requirement (`git+https://host/repo.git@<commit>`) as a source archive, the same bytes each time.

The commit pins the tree; `git archive --format=tar` of it (entries in tree order, mtimes from the commit,
fixed modes) is what the lock pins by sha256 and the build checks again, like any download. Only a full
commit is taken: a branch or tag can move.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import CogbuildError, UsageError
from .settings import process_environment

_GIT_URL = re.compile(r"^(?:(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*@\s*)?git\+(?P<repo>[^@#\s]+(?:@[^@#\s]+)?)"
                      r"@(?P<commit>[0-9a-f]{40})(?:#.*)?$")


@dataclass(frozen=True)
class GitSource:
    repo: str  # what git fetches from: https://host/repo.git, git://…, file://…
    commit: str

    @property
    def url(self) -> str:
        """How the lock names it: pip's spelling."""
        return f"git+{self.repo}@{self.commit}"

    @property
    def filename(self) -> str:
        stem = self.repo.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git") or "source"
        return f"{stem}-{self.commit[:12]}.tar"


def parse_git_requirement(line: str) -> GitSource:
    """`git+URL@COMMIT` or `name @ git+URL@COMMIT`; anything without a full commit is refused."""
    match = _GIT_URL.match(line.strip())
    if match is None:
        raise UsageError(f"The requirement {line!r} names a git branch, tag or default branch, which can move; "
                         "pin a full 40-character commit (git+https://…@<commit>).")
    return GitSource(match["repo"], match["commit"])


def archive(source: GitSource, directory: Path) -> Path:
    """The commit's tree as a tar in `directory` (one top-level folder, as an sdist has)."""
    path = directory / source.filename
    with tempfile.TemporaryDirectory(prefix="cogbuild-git-") as repo:
        _git(["init", "-q", repo], source)
        _git(["-C", repo, "fetch", "-q", "--depth", "1", source.repo, source.commit], source)
        _git(["-C", repo, "archive", "--format=tar", f"--prefix={path.name.removesuffix('.tar')}/", "-o", str(path),
              source.commit], source)
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _git(args: list[str], source: GitSource) -> None:
    try:
        done = subprocess.run(["git", "-c", "protocol.file.allow=always", *args], capture_output=True, text=True,
                              timeout=600, env={"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1",
                                                "PATH": process_environment().get("PATH", "/usr/bin:/bin"),
                                                "HOME": tempfile.gettempdir()})
    except FileNotFoundError:
        raise CogbuildError(f"git is needed to fetch {source.url}; install it (apt-get install git)") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise CogbuildError(f"git could not fetch commit {source.commit} from {source.repo}: {last}")
