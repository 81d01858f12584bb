"""`--cache REPO`: layers and downloads shared by many builders through one registry repository.

Before composing, every layer the local cache lacks is looked up by its input key in the repository
(`registry/binary_cache.py`). A hit enters the image as a descriptor alone: nothing is downloaded or
composed, and the store only records where the blob lives (push mounts it from there, a local run fetches
it). After the build, the layers composed here and the downloads they read are uploaded, so the next
runner starts warm. Keys are hashes of the inputs, so runners need no coordination.

The model's OpenAPI schema is shared the same way (a `schema` document keyed like the local schema cache),
so a fresh runner need not start an interpreter to compute it. What this host has seen the repository hold
is recorded locally (`Holdings`): a second build on the same runner asks the registry nothing.

The cache only saves time: when its registry cannot be reached the build goes on without it, with a warning.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from .build import LayerCache
from .cache import BlobCache
from .content_store import ContentStore
from .errors import UsageError
from .layers.descriptor import Descriptor, canonical_json, is_digest
from .layers.image import Layer
from .plan import LayerSpec
from .registry.errors import OCIError
from .registry.layout import Layout
from .settings import CACHE_REPO_ENV  # noqa: F401  (re-exported: the tests import it from here)

if TYPE_CHECKING:
    from .registry.binary_cache import CacheRepository

DIFF_ID = "run.cog.diff-id"
LIBRARY_DIRS = "run.cog.library-dirs"
LOOKUPS_AT_ONCE = 8  # one small GET each: many in flight hide the round trips
RECORD_DAYS = 1  # how long Holdings believes the repository still has an entry it saw
LAYER = "layer"  # the kind of a layer entry, as Holdings records it
SCHEMA = "schema"  # the document kind of OpenAPI schemas in the cache repository


def cache_repository(text: str | None, insecure: bool = False) -> CacheRepository | None:
    """The repository `--cache` (or $COGBUILD_CACHE_REPO, Settings.cache_repo) names, or None."""
    if not text:
        return None
    from .registry.binary_cache import CacheRepository  # network clients load only when a cache is named

    try:
        return CacheRepository(text, insecure=insecure)
    except OCIError as exc:
        raise UsageError(str(exc)) from None


class SharedLayers:
    """One build's use of a cache repository: look layers (and the schema) up, then publish what was made here."""

    def __init__(self, repository: CacheRepository, layout: Layout, cache: LayerCache,
                 warn: Callable[[str], None], cache_root: Path) -> None:
        self.repository = repository
        self.layout = layout
        self.cache = cache
        self.warn = warn
        self.usable = True  # until the registry fails once
        self.holdings = Holdings(cache_root, repository.name)
        self._here: dict[str, tuple[LayerSpec, Layer]] = {}  # by spec.key: layers whose blob is local
        self._schemas: dict[str, bytes] = {}  # by key: schemas this build had, for `finish` to offer

    def key(self, spec: LayerSpec) -> str:
        return hashlib.sha256(self.cache.key(spec).encode()).hexdigest()

    def lookup(self, specs: Iterable[LayerSpec]) -> dict[str, Layer]:
        """spec.key -> the cached layer, for each spec the repository has (as recorded here, else asked)."""
        hits: dict[str, Layer] = {}
        unknown = []
        for spec in specs:
            layer = self._recorded(spec)
            if layer is not None:
                hits[spec.key] = layer
            else:
                unknown.append(spec)
        if unknown and self.usable:
            hits.update(self._ask(unknown))
        for layer in hits.values():
            if not self.layout.has_blob(layer.descriptor.digest):
                self.layout.note_remote(layer.descriptor.digest, self.repository.name)
        return hits

    def _recorded(self, spec: LayerSpec) -> Layer | None:
        data = self.holdings.get(LAYER, self.key(spec))
        try:
            return self._layer(spec, Descriptor.from_json(json.loads(data))) if data else None
        except ValueError:  # InvalidDescriptor is one: a record this version cannot read is a miss
            return None

    def _ask(self, specs: list[LayerSpec]) -> dict[str, Layer]:
        try:
            with ThreadPoolExecutor(LOOKUPS_AT_ONCE) as pool:
                found = list(pool.map(lambda spec: self.repository.lookup(self.key(spec)), specs))
        except OCIError as exc:
            return self._give_up("looked up", exc)
        hits = {}
        for spec, desc in zip(specs, found, strict=True):
            if desc is not None and (layer := self._layer(spec, desc)) is not None:
                hits[spec.key] = layer
                self.holdings.put(LAYER, self.key(spec), canonical_json(desc.to_json()))
        return hits

    def _layer(self, spec: LayerSpec, desc: Descriptor) -> Layer | None:
        """The entry as a layer of this build, or None when it is not one (another compression, bad fields)."""
        diff_id = desc.annotations.get(DIFF_ID)
        try:
            library_dirs = tuple(json.loads(desc.annotations.get(LIBRARY_DIRS, "[]")))
        except ValueError:
            return None
        if desc.media_type != self.cache.compression.media_type or not isinstance(diff_id, str) \
                or not is_digest(diff_id) \
                or not all(isinstance(d, str) for d in library_dirs):
            return None
        return Layer(Descriptor(desc.media_type, desc.digest, desc.size), diff_id, spec.comment, library_dirs)

    def keep(self, specs: Iterable[LayerSpec], layers: dict[str, Layer]) -> None:
        """Remember layers this host holds (composed now or cached before) for `finish`."""
        for spec in specs:
            self._here[spec.key] = (spec, layers[spec.key])

    # -- the schema (static_schema's SharedSchemas) --------------------------------------------
    def get(self, key: str) -> dict | None:
        """The schema another builder published under `key`, or None."""
        if not self.usable:
            return None
        try:
            data = self.repository.lookup_document(SCHEMA, key)
        except OCIError as exc:
            self._give_up("looked up", exc)
            return None
        if data is None:
            return None
        try:
            schema = json.loads(data)
        except ValueError:
            return None
        if not isinstance(schema, dict):
            return None
        self.holdings.put(SCHEMA, key, data)
        return schema

    def put(self, key: str, schema: dict) -> None:
        """Offer the build's schema to the repository in `finish`, unless it is known to be there."""
        if self.holdings.get(SCHEMA, key) is None:
            self._schemas[key] = canonical_json(schema)

    def finish(self, blobs: BlobCache) -> None:
        """Upload the layers held here that the repository lacks, under their keys, then the downloads they
        were made from, so a lock whose upstream URLs are gone still builds; and the schema."""
        try:
            self._publish_layers(blobs)
            self._publish_schemas()
        except OCIError as exc:
            self._give_up("updated", exc)

    def _publish_layers(self, blobs: BlobCache) -> None:
        held = list(self._here.values())
        there = self.lookup(spec for spec, _ in held)
        missing = [(spec, layer) for spec, layer in held if spec.key not in there]
        if not self.usable or not missing:
            return
        for spec, layer in missing:
            entry = _entry(layer)
            self.repository.publish(self.layout, self.key(spec), entry)
            self.holdings.put(LAYER, self.key(spec), canonical_json(entry.to_json()))
        inputs = {a.sha256 for spec, _ in missing for a in spec.inputs}
        self.repository.mirror(blobs.as_layout(), sorted(h for h in inputs if blobs.path(h).exists()))

    def _publish_schemas(self) -> None:
        for key, data in self._schemas.items():
            if self.usable and self.repository.lookup_document(SCHEMA, key) is None:
                self.repository.publish_document(SCHEMA, key, data)
            self.holdings.put(SCHEMA, key, data)

    def _give_up(self, what: str, exc: OCIError) -> dict:
        self.usable = False
        self.warn(f"warning: the cache repository {self.repository.name} could not be {what} ({exc}); "
                  "building without it")
        return {}


class Holdings:
    """Entries this host has seen a cache repository hold (found there or published from here), by kind and key.

    A later build trusts the record instead of asking the registry again: keys are hashes of the inputs, so
    an entry never changes, and builders only ever add entries. A registry can still drop entries (garbage
    collection, a wiped repository), so a record is believed for RECORD_DAYS, as Nix believes a cached
    narinfo. Records are blobs of a content store, checked by hash on read; a damaged one counts as absent.
    """

    def __init__(self, cache_root: Path, repository_name: str) -> None:
        self.records = ContentStore(
            cache_root / "cache-repositories" / hashlib.sha256(repository_name.encode()).hexdigest()[:32])

    def get(self, kind: str, key: str) -> bytes | None:
        return self.records.get_named(f"{kind}-{key}", max_age=RECORD_DAYS * 86400)

    def put(self, kind: str, key: str, data: bytes) -> None:
        self.records.put_named(f"{kind}-{key}", data)


def _entry(layer: Layer) -> Descriptor:
    """The layer's descriptor as the cache lists it: what a build needs beside the blob, in annotations."""
    annotations = {DIFF_ID: layer.diff_id}
    if layer.library_dirs:
        annotations[LIBRARY_DIRS] = json.dumps(list(layer.library_dirs))
    return Descriptor(layer.descriptor.media_type, layer.descriptor.digest, layer.descriptor.size,
                      annotations=annotations)
