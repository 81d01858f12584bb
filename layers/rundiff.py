"""What a command changed in a root filesystem, as a layer tree: new and changed entries, OCI whiteouts.

`scan` records every entry's metadata before and after; `diff_tree` turns the two records into a Tree
(the layer's content): entries that are new or whose type, mode, owner or content changed, every parent
directory of those with its current metadata, and a `.wh.NAME` whiteout for each entry that is gone
(one for a removed directory, none for what was below it). The tree is written like any other layer, so
mtimes, ordering and owners follow the same deterministic rules. Devices, fifos and sockets are left out.
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass
from pathlib import Path

from .tree import Entry, Tree

WHITEOUT = ".wh."


@dataclass(frozen=True)
class State:
    """An entry's metadata; ctime moves on every write, chmod or chown, so it stands for the content."""

    type: str  # "file" | "dir" | "symlink"
    mode: int
    uid: int
    gid: int
    size: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    inode: int = 0
    linkname: str = ""

    def same_as(self, other: "State") -> bool:
        if self.type == "dir" == other.type:  # a directory's times move when its entries do
            return (self.mode, self.uid, self.gid) == (other.mode, other.uid, other.gid)
        return self == other


Snapshot = dict[str, State]  # image path ("usr/bin/x") -> state


def scan(root: Path, skip: frozenset[str] = frozenset()) -> Snapshot:
    """Every directory, file and symlink below `root` (not following links); `skip` names paths left out."""
    out: Snapshot = {}
    pending = [""]
    while pending:
        folder = pending.pop()
        with os.scandir(root / folder if folder else root) as items:
            for item in items:
                path = f"{folder}/{item.name}" if folder else item.name
                if path in skip:
                    continue
                state = _state(item)
                if state is None:
                    continue
                out[path] = state
                if state.type == "dir":
                    pending.append(path)
    return out


def _state(item: os.DirEntry) -> State | None:
    st = item.stat(follow_symlinks=False)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        return State("dir", mode, st.st_uid, st.st_gid)
    if stat.S_ISLNK(st.st_mode):
        return State("symlink", 0o777, st.st_uid, st.st_gid, ctime_ns=st.st_ctime_ns, inode=st.st_ino,
                     linkname=os.readlink(item.path))
    if stat.S_ISREG(st.st_mode):
        return State("file", mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    return None  # a device, fifo or socket: no image layer carries one


def diff_tree(root: Path, before: Snapshot, after: Snapshot) -> Tree:
    """The layer that turns `before` into `after`; file contents are read from `root` when it is written."""
    tree = Tree()
    changed = sorted((p for p, s in after.items() if p not in before or not s.same_as(before[p])),
                     key=lambda p: p.encode())
    gone = [p for p in before if p not in after or (after[p].type != before[p].type)]
    whiteouts = sorted(p for p in gone if not _parent_gone(p, before, after))
    for path in changed + [posixpath.dirname(p) for p in whiteouts]:
        _add_parents(tree, path, after)
    for path in changed:
        _add(tree, root, path, after[path])
    for path in whiteouts:
        if path in after:
            continue  # replaced by an entry of another type: the new entry covers it
        folder, name = posixpath.split(path)
        tree.add(Entry(posixpath.join(folder, WHITEOUT + name), "file", 0o644))
    return tree


def _parent_gone(path: str, before: Snapshot, after: Snapshot) -> bool:
    """A whiteout for the parent covers this entry too."""
    parent = posixpath.dirname(path)
    return bool(parent) and parent in before and (parent not in after or after[parent].type != "dir")


def _add_parents(tree: Tree, path: str, after: Snapshot) -> None:
    parent = posixpath.dirname(path)
    chain = []
    while parent and parent not in tree:
        chain.append(parent)
        parent = posixpath.dirname(parent)
    for folder in reversed(chain):
        state = after[folder]
        tree.add_dir(folder, state.mode, state.uid, state.gid)


def _add(tree: Tree, root: Path, path: str, state: State) -> None:
    if state.type == "dir":
        tree.add_dir(path, state.mode, state.uid, state.gid)
    elif state.type == "symlink":
        tree.add(Entry(path, "symlink", 0o777, state.uid, state.gid, linkname=state.linkname))
    else:
        tree.add(Entry(path, "file", state.mode, state.uid, state.gid, source=root / path, size=state.size))
