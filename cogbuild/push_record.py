"""What the last push of a model directory sent where, so pushing it unchanged loads neither cog.yaml's
parser, the build modules nor the upload client (issue 15).

After a push, a record is kept per command line (working directory, -f, REF, --insecure): a fingerprint of
everything the image was made from — every file under the model directory and of cogbuild itself by
sha256, the files cog.yaml names outside the directory (requirements, weights), the options and the
settings (COGBUILD_*, SOURCE_DATE_EPOCH) — beside the digests pushed (the image, its variant tags, the lock
and SBOM artifacts). The files outside the directory are a function of cog.yaml, which is among the files,
so the next push can recompute the fingerprint without parsing it; when it matches, the local store still
holds the image and a few questions to the registry (light client) find every tag and attachment in place,
the push is done. Anything else takes the full path, which writes a new record. A file is hashed again
only when its size, mtime, inode or mode changed since the record (LayerCache's rule for blobs). Records
live in a ContentStore under the cache's `pushes/`, so one whose bytes do not match its hash counts as absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from dataclasses import asdict, dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Iterator

from . import __version__
from .content_store import ContentStore, file_sha256
from .layers.descriptor import OCI_INDEX, Descriptor
from .registry.layout import Layout
from .registry.reference import fallback_tag, parse_reference
from .settings import Settings

FORMAT = 2
DEFAULT_COMPRESSION = "gzip"
FileTable = dict[str, list]  # path -> [size, mtime_ns, inode, mode, sha256 (or what a link or directory is)]
# Whose files decide what a build makes: cogbuild's, and the gzip engine's (its version decides the layer bytes).
TOOL_PACKAGES = ("cogbuild", "cogbuild.layers", "cogbuild.registry", "cogbuild.lockfiles", "cog", "deflate")
# Settings that cannot change what is built (any other one, present or future, is part of the fingerprint).
NOT_IN_THE_IMAGE = frozenset({"debug", "ready_timeout_text", "runtime", "sign_key", "sign_password", "verify_key",
                              "terminal_forced"})
DERIVED_DIRS = frozenset({"__pycache__"})  # bytecode of cogbuild's own sources: made from files counted already


@dataclass
class PushRecord:
    root: str  # the model directory
    ref: str  # where the image went, as the user named it (or cog.yaml did)
    outside: list[str]  # files and directories cog.yaml names outside the model directory
    fingerprint: str
    files: FileTable  # the model's and cogbuild's files as last hashed, so unchanged ones cost a stat
    pushed: dict[str, str] = field(default_factory=dict)  # tag (or digest) -> the manifest digest it names
    image: dict = field(default_factory=dict)  # the top descriptor, as JSON
    attachments: list[str] = field(default_factory=list)  # artifact manifest digests attached to the image

    def to_bytes(self) -> bytes:
        return json.dumps({"format": FORMAT, **self.__dict__}, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> PushRecord | None:
        try:
            doc = json.loads(data)
            if doc.pop("format") != FORMAT:
                return None
            record = cls(**doc)
            Descriptor.from_json(record.image)
            return record
        except (ValueError, TypeError, KeyError, AttributeError):  # InvalidDescriptor is a ValueError
            return None

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor.from_json(self.image)


def push_options(compression: str = DEFAULT_COMPRESSION, cache: str | None = None,
                 secrets: tuple[str, ...] = ()) -> dict[str, str]:
    """The command-line options of a push that change what is built (part of the fingerprint)."""
    return {"compression": compression, "cache": cache or "", "secrets": ",".join(secrets)}


def unchanged_push(record: PushRecord | None, settings: Settings, options: dict[str, str],
                   insecure: bool) -> str | None:
    """What the push prints (`REF@sha256:…`) when the record answers it: nothing the image is made from
    changed, the local store holds it, and the registry has its tags and attachments. None otherwise."""
    if record is None:
        return None
    current, _ = fingerprint(Path(record.root), record.outside, record.ref, settings, options, record.files)
    if current == record.fingerprint and image_is_stored(record, settings.store_root) \
            and unchanged_push_is_there(record, insecure):
        return f"{record.ref.split('@')[0]}@{record.descriptor.digest}"
    return None


def record_store(settings: Settings) -> ContentStore:
    return ContentStore(settings.cache_root / "pushes")


def record_name(cog_yaml: str | None, ref: str | None, insecure: bool) -> str:
    """The name of the record of this command line in the record store."""
    command_line = f"{os.getcwd()}\0{cog_yaml or ''}\0{ref or ''}\0{insecure}"
    return hashlib.sha256(command_line.encode()).hexdigest()[:32]


def read_record(store: ContentStore, name: str) -> PushRecord | None:
    data = store.get_named(name)  # verified against its sha256: a damaged record is gone
    return PushRecord.from_bytes(data) if data is not None else None


def write_record(store: ContentStore, name: str, record: PushRecord) -> None:
    store.put_named(name, record.to_bytes())


def fingerprint(root: Path, outside: list[str], ref: str, settings: Settings, options: dict[str, str],
                known: FileTable) -> tuple[str, FileTable]:
    """The digest of everything the image pushed to `ref` is made from, and the file table it was computed
    from (`known` supplies the hashes of files whose size, mtime and inode are unchanged)."""
    files: FileTable = {}
    _table(root, "model", known, files, skip=frozenset())
    for path in outside:
        _table(Path(path), f"outside:{path}", known, files, skip=frozenset())
    for package in TOOL_PACKAGES:
        spec = find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            _table(Path(location), f"tool:{package}", known, files, skip=DERIVED_DIRS)
    chosen = {name: str(value) for name, value in asdict(settings).items() if name not in NOT_IN_THE_IMAGE}
    identity = {
        "version": __version__, "python": sys.version, "machine": os.uname().machine, "ref": ref,
        "options": options, "settings": chosen, "files": {path: entry[3:] for path, entry in sorted(files.items())},
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest(), files


def _table(root: Path, label: str, known: FileTable, files: FileTable, skip: frozenset[str]) -> None:
    for path, relative in _paths(str(root), skip):
        key = f"{label}:{relative}"
        st = os.lstat(path)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode]  # a mode change alone changes the image
        previous = known.get(key)
        if stat.S_ISDIR(st.st_mode):
            files[key] = [0, 0, 0, st.st_mode, "directory"]  # an empty one is in the image too
        elif previous is not None and previous[:4] == stamp:
            files[key] = previous
        elif stat.S_ISLNK(st.st_mode):
            files[key] = stamp + ["link:" + os.readlink(path)]
        else:
            files[key] = stamp + [file_sha256(Path(path))]


def _paths(root: str, skip: frozenset[str]) -> Iterator[tuple[str, str]]:
    """Every directory, file and symlink under `root` (symlinked directories not followed) with its path
    relative to `root`, or `root` itself (as ".") if it is not a directory. Strings, not Paths: this runs on
    every unchanged push, for cogbuild's own ~170 files too."""
    if not os.path.isdir(root):
        if os.path.lexists(root):
            yield root, "."
        return
    top = root.rstrip("/") + "/"
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        prefix = "" if dirpath == root else dirpath[len(top):] + "/"
        for name in sorted(filenames) + dirnames:
            yield os.path.join(dirpath, name), prefix + name


def image_is_stored(record: PushRecord, store_root: Path) -> bool:
    """Whether the local store still holds every manifest the record says was pushed."""
    store = Layout(store_root)
    return all(store.has_blob(digest) for digest in record.pushed.values())


def unchanged_push_is_there(record: PushRecord, insecure: bool) -> bool:
    """Whether the registry still has every tag and attachment the record says were pushed (light client)."""
    from .registry.light import LightClient

    ref = parse_reference(record.ref)
    client = LightClient(ref.registry, ref.api_host, insecure=insecure)
    if not all(client.manifest_digest(ref.repository, name) == digest for name, digest in record.pushed.items()):
        return False
    wanted = set(record.attachments)
    for where in (f"manifests/{fallback_tag(record.descriptor.digest)}", f"referrers/{record.descriptor.digest}"):
        answer = client.ask("GET", ref.repository, where, "list artifacts attached to an image in", accept=OCI_INDEX)
        listed = _listed_digests(answer.body) if answer is not None else set()
        if wanted <= listed:
            return True
    return False


def _listed_digests(data: bytes) -> set[str]:
    try:
        entries = json.loads(data).get("manifests")
    except (ValueError, AttributeError):
        return set()
    return {str(e.get("digest")) for e in entries if isinstance(e, dict)} if isinstance(entries, list) else set()
