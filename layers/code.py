"""The model directory as layers: code in one, large files (weights) each in their own.

What is left out follows `.cogignore` and `.dockerignore` (gitignore-style patterns). Modes are reduced to
0644/0755 so that a checkout's umask does not change the digest; owners are the image user, so a model may
write next to its code as it could in Cog's root-run images.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from .tree import Tree

WEIGHTS_THRESHOLD = 10 * 1024 * 1024
IGNORE_FILES = (".cogignore", ".dockerignore")
ALWAYS_IGNORED = (".git/", ".hg/", ".svn/", "__pycache__/", "*.pyc", ".cogbuild/", ".venv/")


@dataclass
class ModelFiles:
    code: Tree
    weights: list[Tree] = field(default_factory=list)  # one tree per large file, sorted by path


def _ignore_spec(root: Path, exclude: tuple[str, ...] = ()) -> pathspec.PathSpec:
    lines: list[str] = list(ALWAYS_IGNORED) + [f"/{path.strip('/')}" for path in exclude]
    for name in IGNORE_FILES:
        path = root / name
        if path.is_file():
            lines += path.read_text(encoding="utf-8", errors="replace").splitlines()
    return pathspec.GitIgnoreSpec.from_lines(lines)


def collect_model_files(root: Path, dest: str = "src", uid: int = 0, gid: int = 0,
                        weights_threshold: int = WEIGHTS_THRESHOLD, exclude: tuple[str, ...] = ()) -> ModelFiles:
    """Walk `root` (in sorted order, never following symlinked directories) into code and weights trees,
    leaving out what the ignore files say and the paths in `exclude` (relative to `root`)."""
    spec = _ignore_spec(root, exclude)
    code = Tree(uid=uid, gid=gid)
    code.add_dir(dest, 0o755, uid=uid, gid=gid)
    weights: list[Tree] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if not spec.match_file(rel_dir + d + "/"))
        for d in dirnames:
            if (Path(dirpath) / d).is_symlink():
                code.add_symlink(f"{dest}/{rel_dir}{d}", os.readlink(Path(dirpath) / d))
            else:
                code.add_dir(f"{dest}/{rel_dir}{d}", 0o755)
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d).is_symlink()]
        for name in sorted(filenames):
            rel = rel_dir + name
            if spec.match_file(rel):
                continue
            host = Path(dirpath) / name
            st = host.lstat()
            target = f"{dest}/{rel}"
            if stat.S_ISLNK(st.st_mode):
                code.add_symlink(target, os.readlink(host))
            elif stat.S_ISREG(st.st_mode):
                mode = _mode(st.st_mode)
                if st.st_size >= weights_threshold:
                    tree = Tree(uid=uid, gid=gid)
                    tree.add_host_file(target, host, mode, st.st_size)
                    weights.append(tree)
                else:
                    code.add_file(target, host.read_bytes(), mode)
    return ModelFiles(code, weights)


def collect_weight_files(source: Path, target: str, include: tuple[str, ...] = (), exclude: tuple[str, ...] = (),
                         uid: int = 0, gid: int = 0, tree: Tree | None = None) -> Tree:
    """A file, or a directory's files (sorted; `include`/`exclude` are gitignore-style patterns relative to
    it), placed below `target` in a tree of their own: the same files at the same target give the same layer
    in any model."""
    tree = tree if tree is not None else Tree(uid=uid, gid=gid)
    base = target.strip("/")
    if source.is_file():
        tree.add_host_file(f"{base}/{source.name}", source, _mode(source.stat().st_mode), source.stat().st_size)
        return tree
    wanted = pathspec.GitIgnoreSpec.from_lines(include) if include else None
    unwanted = pathspec.GitIgnoreSpec.from_lines(exclude)
    tree.add_dir(base, 0o755)
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(source).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        for name in sorted(filenames):
            rel, host = rel_dir + name, Path(dirpath) / name
            st = host.lstat()
            if not stat.S_ISREG(st.st_mode) or unwanted.match_file(rel) or wanted and not wanted.match_file(rel):
                continue
            tree.add_host_file(f"{base}/{rel}", host, _mode(st.st_mode), st.st_size)
    return tree


def _mode(st_mode: int) -> int:
    return 0o755 if st_mode & 0o111 else 0o644
