"""Reproducibility as evidence: rebuild a pushed image from its project and the lock attached to it.

The rebuild composes every layer afresh (a layout and layer cache of its own, downloads verified by hash
as always), so a match says the project and the lock produce exactly the pushed bytes, not that this
machine remembered them. The model directory is never written: when its cog.lock is not the attached
one, the build runs on a copy.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .build import BYTECODE_ANNOTATION, COMPRESSION_ANNOTATION, BuildOptions, build
from .errors import CogbuildError, UsageError
from .layers.tarball import Compression
from .lock import LOCK_NAME
from .lock import loads as load_lock
from .project import Project
from .registry.client import RegistryClient
from .imageinfo import describe
from .lock_artifacts import attached_lock
from .registry.layout import Layout
from .registry.reference import Reference
from .registry.remote import RegistrySource


@dataclass(frozen=True)
class RebuildReport:
    image_digest: str
    rebuilt_digest: str
    difference: str | None  # None when the digests match

    @property
    def matches(self) -> bool:
        return self.difference is None


def rebuild_and_compare(ref: Reference, directory: Path, cache_root: Path, *, insecure: bool = False,
                        source_date_epoch: int = 0, progress: Callable[[str], None] = lambda message: None
                        ) -> RebuildReport:
    """Rebuild `directory` with the lock attached to `ref`: downloads come from (and go to) the cache at
    `cache_root`; layers are composed anew in a scratch cache."""
    client = RegistryClient(ref.registry, ref.api_host, insecure=insecure)
    source = RegistrySource(client, ref)
    top = source.top()
    lock_text = attached_lock(client, ref, top.digest)
    if lock_text is None:
        raise CogbuildError(f"{ref} carries no cog.lock to rebuild from (push it with cogbuild)")
    pushed = describe(source, top, name=str(ref))
    with tempfile.TemporaryDirectory(prefix="cogbuild-rebuild-") as scratch:
        project = _project_with_lock(directory, lock_text, Path(scratch))
        lock = load_lock(lock_text.decode())
        if not project.lock_is_current(lock):
            raise UsageError(f"{project.config.path} is not the cog.yaml {ref} was built from (the attached "
                             "lock was made for other inputs)")
        layout = Layout(Path(scratch) / "store").init()
        options = BuildOptions(platforms=_platforms(pushed), variants=_variants(pushed),
                               compression=_compression(pushed), cache_root=cache_root,
                               layer_cache_root=Path(scratch) / "cache",
                               source_date_epoch=source_date_epoch,
                               bytecode=not all(_annotation(image, BYTECODE_ANNOTATION) == "none"
                                                for image in pushed["images"]))
        progress(f"rebuilding {project.config.root} with the lock attached to {ref}")
        outcome = build(project.config, lock, project.lock_digest(), layout, options, progress)
        rebuilt = describe(layout, outcome.descriptor, name="rebuild")
    difference = None if outcome.descriptor.digest == top.digest else _first_difference(pushed, rebuilt)
    return RebuildReport(top.digest, outcome.descriptor.digest, difference)


def _project_with_lock(directory: Path, lock_text: bytes, scratch: Path) -> Project:
    """The project in `directory`, or a copy of it beside `scratch` when its cog.lock is another."""
    if not (directory / "cog.yaml").is_file():
        raise UsageError(f"{directory} has no cog.yaml to rebuild from")
    lock_path = directory / LOCK_NAME
    if lock_path.is_file() and lock_path.read_bytes() == lock_text:
        return Project.load(directory=directory)
    copy = scratch / "model" / directory.resolve().name  # the same directory name: it can reach the image
    shutil.copytree(directory, copy, symlinks=True)
    (copy / LOCK_NAME).write_bytes(lock_text)
    return Project.load(directory=copy)


def _platforms(summary: dict[str, Any]) -> list[str]:
    return sorted({"/".join(image["platform"].split("/")[:2]) for image in summary["images"]})


def _variants(summary: dict[str, Any]) -> list[str] | None:
    return sorted({image["variant"] for image in summary["images"] if image["variant"]}) or None


def _compression(summary: dict[str, Any]) -> Compression:
    """What the image says it was compressed with (e.g. `gzip-6-blocks…/zlib-1.2.13`), as a build option."""
    recorded = {_annotation(image, COMPRESSION_ANNOTATION) for image in summary["images"]}
    try:
        return Compression.from_identity(sorted(recorded)[0])
    except ValueError:
        return Compression.parse("gzip")


def _annotation(image: dict[str, Any], key: str) -> str:
    return str(image["annotations"].get(key, ""))


def _first_difference(pushed: dict[str, Any], rebuilt: dict[str, Any]) -> str:
    """The first layer that differs between the images of the same platform and variant, in a sentence."""
    ours = {(i["platform"], i["variant"]): i for i in rebuilt["images"]}
    for image in pushed["images"]:
        title = " ".join(p for p in (image["platform"], image["variant"]) if p)
        mine = ours.get((image["platform"], image["variant"]))
        if mine is None:
            return f"the rebuild has no {title} image"
        for number, (theirs, built) in enumerate(zip(image["layers"], mine["layers"], strict=False), 1):
            if theirs["digest"] != built["digest"]:
                return (f"{title}: layer {number} ({theirs['holds'] or 'unnamed'}) differs: the image has "
                        f"{theirs['digest']}, the rebuild {built['digest']}")
        if len(image["layers"]) != len(mine["layers"]):
            return f"{title}: the image has {len(image['layers'])} layers, the rebuild {len(mine['layers'])}"
        if image["digest"] != mine["digest"]:
            return f"{title}: every layer matches, the image config or manifest differs (labels, annotations)"
    return "the index differs while every image matches"
