"""Requirements that name a file in the project, or a git commit (gitsource.py), rather than a release on an index.

A file (`./dist/pkg-0.1.0.tar.gz`, `wheels/pkg-1.0-py3-none-any.whl`) is pinned by its sha256 and its path
relative to the project, which is where the lock's `url` points; a path that leads out of the project is
refused, since a lock must not depend on what lies around it. Light on imports: cog.yaml's reader uses it
to find the files whose content the lock depends on.
"""

from __future__ import annotations

from pathlib import Path

from .errors import UsageError

SDIST_SUFFIXES = (".tar.gz", ".zip")

LOCAL_PREFIXES = (".", "/", "~")


def is_local_path(line: str) -> bool:
    return line.startswith(LOCAL_PREFIXES)


def is_git_url(line: str) -> bool:
    return "git+" in line.split("#")[0]


def names_a_source(line: str) -> bool:
    """A line that names a file in the project or a git commit rather than a release on an index."""
    return is_local_path(line) or is_git_url(line)


def local_file(line: str, project_root: Path) -> Path:
    """The project file a requirement line names, checked: inside the project, present, a wheel or sdist."""
    if line.startswith("~"):
        raise UsageError(f"The requirement {line!r} is outside the project directory {project_root}; copy the "
                         "file into the project and name it relative to cog.yaml.")
    root = project_root.resolve()
    path = (root / line).resolve()
    if not path.is_relative_to(root):
        raise UsageError(f"The requirement {line!r} is outside the project directory {root}; copy the file into "
                         "the project and name it relative to cog.yaml.")
    if not path.exists():
        raise UsageError(f"The requirement {line!r} names a file that does not exist ({path}).")
    if not path.is_file() or not path.name.endswith((".whl", *SDIST_SUFFIXES)):
        raise UsageError(f"The requirement {line!r} is not a wheel or a source archive (.whl, .tar.gz, .zip); "
                         "cogbuild takes only those files.")
    return path


def project_path(path: Path, project_root: Path) -> str:
    """How the lock names a project file: its path relative to the project, with forward slashes."""
    return path.relative_to(project_root.resolve()).as_posix()


def local_requirement_files(lines: list[str], project_root: Path) -> list[Path]:
    """The existing project files that requirement lines name (their content is an input of the lock)."""
    root = project_root.resolve()
    paths = [(root / line.split()[0]).resolve() for line in (raw.strip() for raw in lines)
             if line and is_local_path(line) and not line.startswith("~")]
    return sorted({p for p in paths if p.is_file() and p.is_relative_to(root)})
