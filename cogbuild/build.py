"""`cogbuild build`: lock (if needed) → download by hash → compose layers → image(s) in the local store.

One image per (platform, variant) the lock names; with more than one, an OCI index holds them. Layers are
composed in parallel and cached by the digest of their inputs, so an unchanged layer is never recomposed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from . import __version__
from .bytecode import Compilers, can_compile_for
from .cache import BlobCache, file_sha256, file_stamp, remove_scratch, scratch_dir
from .config import CogConfig
from .content_store import ContentStore
from .artifacts import Artifact
from .errors import CogbuildError, UsageError
from .layers.descriptor import OCI_INDEX, Descriptor, Digest, canonical_json
from .layers.image import (Layer, RuntimeConfig, config_bytes, config_descriptor, fit_labels, index_bytes,
                           manifest_bytes, manifest_descriptor)
from .layers.imagegraph import (BYTECODE_ANNOTATION, COMPRESSION_ANNOTATION, CONFIG_LABEL, LOCK_LABEL,
                                SCHEMA_LABEL, VARIANT_ANNOTATION, VERSION_LABEL)
from .layers.osfixups import ImageUser
from .layers.standalone import STANDALONE_PREFIX
from .layers.tarball import Compression, write_layer
from .layers.tree import SpillDir
from .lock import Lock
from .plan import (LayerSpec, WheelTarget, base_layers, code_layers, cuda_layers, python_layers, runtime_layer,
                   server_paths, system_layer)
from .registry.layout import Layout
from .policy import DEBIAN_ARCH
from .schema import static_schema
from .settings import DEFAULT_DEBIAN_SNAPSHOT

if TYPE_CHECKING:
    from .registry.binary_cache import CacheRepository
    from .shared_cache import SharedLayers

Progress = Callable[[str], None]


@dataclass
class BuildOptions:
    cache_root: Path = field(kw_only=True)  # Settings.cache_root: downloads, layer records, scratch space
    platforms: list[str] | None = None  # default: every platform in the lock
    variants: list[str] | None = None  # default: every variant in the lock
    compression: Compression = field(default_factory=Compression)
    bytecode: bool = True  # .pyc from the image's own interpreter, where it runs on this host
    workers: int = max(1, min(4, os.cpu_count() or 1))
    secrets: dict[str, Path] = field(default_factory=dict)  # build.run secret id -> host file
    update_run: bool = False  # accept build.run outputs that differ from what cog.lock records
    # Called when build.run digests were recorded in the lock: saves it, returns its new digest.
    save_lock: Callable[[Lock], str] | None = None
    cache_repository: CacheRepository | None = None  # --cache: layers and downloads shared through a registry
    layer_cache_root: Path | None = None  # default: cache_root; a rebuild that must compose anew sets another
    source_date_epoch: int = 0  # every timestamp in the image (Settings.source_date_epoch)
    debian_snapshot: str | None = DEFAULT_DEBIAN_SNAPSHOT  # where dropped .debs are looked for; None: nowhere

    @property
    def layer_root(self) -> Path:
        """Where layer records and built wheels are kept: layer_cache_root, else cache_root."""
        return self.layer_cache_root or self.cache_root


@dataclass
class BuildResult:
    descriptor: Descriptor  # the manifest (one image) or the index (several)
    images: dict[tuple[str, str], Descriptor]  # (platform, variant) -> manifest
    lock: Lock  # what the images were built from, with any outputs the build recorded (as saved in cog.lock)
    variants: dict[str, Descriptor] = field(default_factory=dict)  # variant -> its manifest or index


class LayerCache:
    """input key -> finished layer, remembered across builds: a small JSON record in a content store, named
    by a reference per key (records are checked against their hash on read); the blob itself lives in the
    image store.

    A blob is hashed when first recorded and again whenever its size, mtime or inode no longer match
    what was recorded then, so an unchanged 2 GB layer costs a stat, not a read, on each rebuild.
    """

    def __init__(self, layout: Layout, compression: Compression, mtime: int, cache_root: Path) -> None:
        self.layout = layout
        self.compression = compression
        self.mtime = mtime
        self.records = ContentStore(cache_root / "layers")

    def key(self, spec: LayerSpec) -> str:
        """The layer's full identity: its inputs, and how its bytes are compressed and stamped."""
        return f"{spec.key}-{self.compression.identity}-{self.mtime}"

    def _ref(self, spec: LayerSpec) -> str:
        return hashlib.sha256(self.key(spec).encode()).hexdigest()  # any key becomes a valid reference name

    def get(self, spec: LayerSpec) -> Layer | None:
        record = self.records.get_named(self._ref(spec))
        if record is None:
            return None
        try:
            doc = json.loads(record)
            desc = Descriptor(doc["mediaType"], doc["digest"], int(doc["size"]))
            diff_id, stamp, libs = doc["diffID"], doc.get("stamp"), tuple(doc.get("libraryDirs", ()))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        blob = self.layout.blob_path(desc.digest)
        try:
            st = blob.stat()
        except FileNotFoundError:
            return None
        if desc.media_type != self.compression.media_type or st.st_size != desc.size:
            return None
        if stamp != file_stamp(st):
            if "sha256:" + file_sha256(blob) != desc.digest:
                return None  # corrupt: compose again
            self.put(spec, Layer(desc, diff_id, spec.comment, libs))
        return Layer(desc, diff_id, spec.comment, libs)

    def put(self, spec: LayerSpec, layer: Layer) -> None:
        st = self.layout.blob_path(layer.descriptor.digest).stat()
        doc = {**layer.descriptor.to_json(), "diffID": layer.diff_id, "stamp": file_stamp(st),
               "libraryDirs": list(layer.library_dirs)}
        self.records.put_named(self._ref(spec), json.dumps(doc, sort_keys=True).encode())


def compose_layer(spec: LayerSpec, layout: Layout, cache: LayerCache) -> Layer:
    tree = spec.compose()
    libs = tree.shared_library_dirs(spec.library_root) if spec.library_root else ()
    fd, tmp = layout.tmp_file()
    try:
        with os.fdopen(fd, "wb") as out:
            digests = write_layer(tree, out, cache.compression, cache.mtime)
        layout.add_blob_file(Path(tmp), digests.digest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    layer = Layer(Descriptor(cache.compression.media_type, Digest(digests.digest), digests.size), digests.diff_id,
                  spec.comment, libs)
    cache.put(spec, layer)
    return layer


def base_plan(lock: Lock, platform: str, variant: str, blobs: BlobCache, user: ImageUser,
              compilers: Compilers | None = None, spill: SpillDir | None = None
              ) -> tuple[list[LayerSpec], WheelTarget]:
    """The image's OS, interpreter and system_packages layers (what sdists are built over), and where its
    wheels go; with `compilers` (shared by the build), Python files get bytecode where the image's interpreter can
    run on this host; with `spill`, unpacked .deb and tarball contents wait on disk."""
    arch = DEBIAN_ARCH[platform]
    os_artifacts = lock.select(platform, variant, "os")
    # Locks made before the interpreter had its own group kept the tarball among the OS artifacts.
    tarballs = [a for a in lock.select(platform, variant, "interpreter") + os_artifacts if a.kind == "python-tarball"]
    bytecode = compilers is not None and can_compile_for(arch)
    specs, target = base_layers(os_artifacts, tarballs[0] if tarballs else None, blobs, arch, lock.python_version,
                                user, compilers if bytecode else None, spill)
    if system := lock.select(platform, variant, "system"):
        specs.append(system_layer(system, blobs, spill))
    return specs, target


def plan_layers(config: CogConfig, lock: Lock, platform: str, variant: str, blobs: BlobCache, user: ImageUser,
                compilers: Compilers | None = None, spill: SpillDir | None = None,
                built: dict[str, Artifact] | None = None) -> tuple[list[LayerSpec], WheelTarget]:
    """The image's layers in order up to the runtime (build.run layers and code follow), and where its
    wheels go; `built` maps each sdist's sha256 to the wheel built from it (see wheelbuild)."""
    specs, target = base_plan(lock, platform, variant, blobs, user, compilers, spill)
    if variant == "gpu" and (cuda := lock.select(platform, variant, "cuda")):
        specs += cuda_layers(cuda, target)
    specs += python_layers([_installable(a, built or {}) for a in lock.select(platform, variant, "python")], target)
    if not config.entrypoint:  # an app runs its own program: no Cog runtime
        specs.append(runtime_layer(lock.select(platform, variant, "runtime"), target))
    return specs, target


def _installable(artifact: Artifact, built: dict[str, Artifact]) -> Artifact:
    """The artifact itself, or for an sdist the wheel built from it."""
    if artifact.kind != "sdist":
        return artifact
    if artifact.sha256 not in built:
        raise CogbuildError(f"no wheel was built from the sdist of {artifact.name} {artifact.version}")
    return built[artifact.sha256]


def image_env(config: CogConfig, lock: Lock, layers: list[Layer], variant: str) -> dict[str, str]:
    standalone = any(a.kind == "python-tarball" for a in lock.artifacts())
    return {
        "PATH": (f"/{STANDALONE_PREFIX}/bin:" if standalone else "") + "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
        # The server runs in its venv; the worker that imports the model on the image's Python (for a
        # standalone CPython, /usr/bin/python3.X links to it). An app has neither.
        **({} if config.entrypoint else {"COG_WORKER_PYTHON": f"/usr/bin/python{lock.python_version}"}),
        **(gpu_env(layers) if variant == "gpu" else {}),
        **(config.environment if config.entrypoint else config.runtime_env()),
    }


def runtime_config(config: CogConfig, lock: Lock, user: ImageUser, lock_digest: str, layers: list[Layer],
                   variant: str, schema: dict | None) -> RuntimeConfig:
    """The image's config; `schema` is the predictor's OpenAPI document (None for an app)."""
    env = image_env(config, lock, layers, variant)
    labels = {
        CONFIG_LABEL: canonical_json(config.raw).decode(),
        VERSION_LABEL: __version__,
        LOCK_LABEL: lock_digest,
    }
    if config.entrypoint:  # an app: its own program, in the user's home (CI runners set their own directory)
        return RuntimeConfig(entrypoint=config.entrypoint, env=env, user=user.spec, labels=labels,
                             working_dir=user.home, exposed_ports=())
    assert schema is not None, "config.py requires a predictor unless entrypoint is set"
    labels[SCHEMA_LABEL] = canonical_json(schema).decode()
    return RuntimeConfig(entrypoint=server_entrypoint(lock.python_version), env=env, user=user.spec, labels=labels)


def server_entrypoint(python_version: str) -> list[str]:
    """The server in its venv, isolated (-I): no PYTHON* variable, user site or /src shadows its packages;
    -u because -I also ignores PYTHONUNBUFFERED."""
    venv_python = server_paths(python_version).interpreter
    return [venv_python, "-I", "-u", "-m", "cog.server.http"]


def gpu_env(layers: list[Layer]) -> dict[str, str]:
    """What the NVIDIA container toolkit reads, and where the CUDA wheels' libraries are."""
    env = {"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "compute,utility"}
    dirs = [d for layer in layers for d in layer.library_dirs]
    if dirs:
        env["LD_LIBRARY_PATH"] = ":".join(dirs)
    return env


def build(config: CogConfig, lock: Lock, lock_digest: str, layout: Layout, options: BuildOptions,
          progress: Progress = lambda message: None) -> BuildResult:
    if not config.predictor and not config.entrypoint:
        raise CogbuildError(f"{config.path.name} names no predictor; add `predict: \"predict.py:Predictor\"` "
                            "(or `entrypoint: [program]` for an image that runs a Python app)")
    platforms = options.platforms or lock.platforms
    variants = options.variants or lock.variants
    for platform in platforms:
        if platform not in lock.platforms:
            raise CogbuildError(f"cog.lock has no {platform}; run `cogbuild lock --platform {platform}`")
    for variant in variants:
        if variant not in lock.variants:
            raise CogbuildError(f"cog.lock has no {variant} variant; lock with that variant first")
    cache = LayerCache(layout, options.compression, options.source_date_epoch, options.layer_root)
    shared = _shared_layers(options.cache_repository, layout, cache, progress, options.cache_root)
    schema = None
    if config.predictor:  # as Cog does: a signature that cannot be served stops here
        schema = static_schema(config.root, config.predictor, config.trainer, shared, options.cache_root)
    layout.init()
    blobs = BlobCache(options.cache_root, mirror=options.cache_repository, snapshot=options.debian_snapshot)
    user = ImageUser()
    compilers = Compilers(options.cache_root) if options.bytecode else None
    import_sources(lock, config.root, blobs)
    spill = SpillDir(scratch_dir(options.cache_root, "unpacked-"))
    try:
        built: dict[str, dict[str, Artifact]] = {}
        if lock.wheel_builds:
            built, lock_digest = _build_wheels(config, lock, lock_digest, layout, cache, blobs, user, compilers,
                                               options, platforms, variants[0], progress)
        planned = {(p, v): plan_layers(config, lock, p, v, blobs, user, compilers, spill, built.get(p))
                   for p in platforms for v in variants}
        plans = {image: specs for image, (specs, _) in planned.items()}
        code = [] if config.run else _code_layers(config, user)
        layers = _compose_layers([s for specs in plans.values() for s in specs] + code, layout, cache, blobs,
                                 options.workers, progress, shared)
        images_layers = {image: [layers[s.key] for s in specs] for image, specs in plans.items()}
        if config.run:
            targets = {image: target for image, (_, target) in planned.items()}
            lock_digest = _add_run_layers(config, lock, lock_digest, layout, cache, options, images_layers,
                                          targets, progress, shared)
            code = _code_layers(config, user)  # after the steps: cog.lock may have changed
            layers.update(_compose_layers(code, layout, cache, blobs, options.workers, progress, shared))
    finally:
        if compilers is not None:
            compilers.close()
        remove_scratch(spill.directory)
    if shared is not None:
        shared.finish(blobs)
    code_layers_built = [layers[s.key] for s in code]  # above the build.run layers, the same in every image
    images = {(p, v): _write_image(layout, below + code_layers_built, config, lock, lock_digest, user, p, v,
                                   schema, options.compression, cache.mtime,
                                   options.bytecode and can_compile_for(DEBIAN_ARCH[p]))
              for (p, v), below in images_layers.items()}
    if len(images) == 1:
        return BuildResult(next(iter(images.values())), images, lock)
    # Runtimes choose from an index by platform only, so each variant also gets an image of its own.
    by_variant = {v: _index(layout, [d for (_, variant), d in images.items() if variant == v])
                  for v in variants}
    return BuildResult(_index(layout, list(images.values())), images, lock, by_variant)


def _shared_layers(repository: CacheRepository | None, layout: Layout, cache: LayerCache,
                   progress: Progress, cache_root: Path) -> SharedLayers | None:
    if repository is None:
        return None
    from .shared_cache import SharedLayers  # it builds on this module

    return SharedLayers(repository, layout, cache, progress, cache_root)


def _code_layers(config: CogConfig, user: ImageUser) -> list[LayerSpec]:
    """The model's directory in /src; an app is installed as a wheel, so its directory stays out."""
    return [] if config.entrypoint else code_layers(config.root, user, config.weights)


def _compose_layers(specs: list[LayerSpec], layout: Layout, cache: LayerCache, blobs: BlobCache, workers: int,
                    progress: Progress, shared: SharedLayers | None = None) -> dict[str, Layer]:
    """Each distinct layer by key: from the local cache, else from the shared cache repository, else composed
    (in parallel) after downloading its inputs."""
    layers: dict[str, Layer] = {}
    todo: dict[str, LayerSpec] = {}  # by key: a layer shared by the cpu and gpu images is composed once
    for spec in specs:
        if spec.key not in layers and spec.key not in todo:
            hit = cache.get(spec)
            if hit is not None:
                layers[spec.key] = hit
            else:
                todo[spec.key] = spec
    if shared is not None:
        shared.keep([spec for spec in specs if spec.key in layers], layers)  # local hits: the cache may lack them
        hits = shared.lookup(todo.values())
        if hits:
            progress(f"{len(hits)} layers from the cache repository {shared.repository.name}")
        for key in hits:
            del todo[key]
        layers.update(hits)
    if todo:
        inputs = {a for spec in todo.values() for a in spec.inputs}
        missing = [a for a in inputs if blobs.get(a) is None]
        if missing:
            progress(f"downloading {len(missing)} artifacts ({sum(a.size for a in missing) / 1e6:.1f} MB)")
            blobs.fetch_all(missing)
        progress(f"composing {len(todo)} of {len(specs)} layers")
        order = largest_inputs_first(list(todo.values()))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for spec, layer in zip(order, pool.map(lambda s: compose_layer(s, layout, cache), order), strict=True):
                layers[spec.key] = layer
        if shared is not None:
            shared.keep(todo.values(), layers)
    return layers


def largest_inputs_first(specs: list[LayerSpec]) -> list[LayerSpec]:
    """The order to compose in: the layer with the most input bytes starts first, so that it is not the last
    one left running alone on an otherwise idle pool (torch's layer, started last of five on two workers,
    kept a warm build ~1 s longer). Order changes no byte: each layer is composed on its own."""
    return sorted(specs, key=lambda spec: -sum(artifact.size for artifact in spec.inputs))


def import_sources(lock: Lock, root: Path, blobs: BlobCache) -> None:
    """Wheels and sdists the lock names by a path in the project, and git commits' trees, go into the
    download cache, checked against their sha256 like any download."""
    local = [a for a in lock.artifacts() if "://" not in a.url and not a.url.startswith("built-from:")]
    for artifact in local:
        if not (root / artifact.url).resolve().is_relative_to(root.resolve()):
            raise UsageError(f"cog.lock names {artifact.url}, which is outside the project directory {root}")
    if local:
        blobs.fetch_all([replace(a, url=(root / a.url).resolve().as_uri()) for a in local])
    for artifact in lock.artifacts():
        if artifact.url.startswith("git+") and blobs.get(artifact) is None:
            _import_git_tree(artifact, blobs)


def _import_git_tree(artifact: Artifact, blobs: BlobCache) -> None:
    from .gitsource import archive, parse_git_requirement

    with tempfile.TemporaryDirectory(prefix="cogbuild-git-") as tmp:
        data = archive(parse_git_requirement(artifact.url), Path(tmp)).read_bytes()
    if blobs.put(data) != artifact.sha256:
        raise CogbuildError(f"the tree of {artifact.url} archived by git has sha256:"
                            f"{hashlib.sha256(data).hexdigest()}, but cog.lock records sha256:{artifact.sha256}")


def _build_wheels(config: CogConfig, lock: Lock, lock_digest: str, layout: Layout, cache: LayerCache,
                  blobs: BlobCache, user: ImageUser, compilers: Compilers | None, options: BuildOptions,
                  platforms: list[str], variant: str, progress: Progress
                  ) -> tuple[dict[str, dict[str, Artifact]], str]:
    """platform -> sdist sha256 -> wheel, built over each platform's base layers (the same in every
    variant); and the lock digest, which changes when new wheel digests were recorded."""
    from .wheelbuild import WheelBuilder  # the sandbox only loads for models that have sdists

    builder = WheelBuilder(layout, blobs, lock, cache.mtime, options.update_run, progress,
                           cache_root=options.layer_root)
    built = {}
    for platform in platforms:
        specs, _ = base_plan(lock, platform, variant, blobs, user, compilers)
        layers = _compose_layers(specs, layout, cache, blobs, options.workers, progress)
        below = [layers[s.key] for s in specs]
        built[platform] = builder.wheels(platform, below, image_env(config, lock, below, variant))
    if builder.recorded and options.save_lock is not None:
        return built, options.save_lock(lock)
    return built, lock_digest


def _add_run_layers(config: CogConfig, lock: Lock, lock_digest: str, layout: Layout, cache: LayerCache,
                    options: BuildOptions, images_layers: dict[tuple[str, str], list[Layer]],
                    targets: dict[tuple[str, str], WheelTarget], progress: Progress,
                    shared: SharedLayers | None) -> str:
    """Append each image's build.run layers (after the runtime, before the code, as Cog runs them after
    installing packages); returns the lock digest, which changes when new outputs were recorded."""
    from .runsteps import StepRunner  # the sandbox only loads for models that have build.run

    runner = StepRunner(layout, cache, lock, options.secrets, options.update_run, progress, shared=shared,
                        cache_root=options.cache_root)
    for (platform, variant), below in images_layers.items():
        below += runner.layers(config.run, platform, variant, below, image_env(config, lock, below, variant),
                               targets[(platform, variant)])
    if runner.recorded and options.save_lock is not None:
        return options.save_lock(lock)
    return lock_digest


def _index(layout: Layout, manifests: list[Descriptor]) -> Descriptor:
    if len(manifests) == 1:
        return manifests[0]
    data = index_bytes(manifests)
    layout.write_blob(data)
    return Descriptor.of(OCI_INDEX, data)


def _write_image(layout: Layout, layers: list[Layer], config: CogConfig, lock: Lock, lock_digest: str,
                 user: ImageUser, platform: str, variant: str, schema: dict | None, compression: Compression,
                 mtime: int, bytecode: bool) -> Descriptor:
    os_name, arch = platform.split("/")
    runtime = runtime_config(config, lock, user, lock_digest, layers, variant, schema)
    labels, too_large = fit_labels(runtime.labels)  # the schema, mostly: Cog's label outgrows containerd's limit
    cfg = config_bytes(layers, replace(runtime, labels=labels), os=os_name, architecture=arch, created=mtime)
    layout.write_blob(cfg)
    annotations = {**too_large, VARIANT_ANNOTATION: variant, COMPRESSION_ANNOTATION: compression.identity,
                   BYTECODE_ANNOTATION: "image interpreter" if bytecode else "none"}
    manifest = manifest_bytes(config_descriptor(cfg), layers, annotations)
    layout.write_blob(manifest)
    return manifest_descriptor(manifest, platform={"architecture": arch, "os": os_name},
                               annotations={VARIANT_ANNOTATION: variant})
