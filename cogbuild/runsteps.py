"""`build.run` as fixed-output steps: each step's layer is pinned in cog.lock by its diff_id, like Nix's
fixed-output derivations pin what a fetch produces.

A step's inputs are the layers below it, its command (and where its secrets go) and its environment; its
layer is cached under those. The first build runs the step (in `sandbox.Sandbox`) and records the layer's
diff_id in the lock. Later builds take the cached layer when its diff_id is the recorded one; when they
must run the step again (new inputs, empty cache), a different result is an error naming the step and both
digests, unless `--update-run` accepts it. Secrets never enter a key, a layer, the lock or a log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from functools import partial
from typing import TYPE_CHECKING, Callable

from .build import LayerCache, compose_layer
from .bytecode import add_bytecode
from .config import RunStep
from .errors import CogbuildError, UsageError
from .images import fetch_cached_layers
from .layers.image import Layer
from .layers.tree import Tree
from .lock import Lock, RunRecord, accepts_output
from .plan import LayerSpec, WheelTarget, _key
from .policy import DEBIAN_ARCH
from .registry.layout import Layout
from .sandbox import Sandbox, check_can_run, _short

if TYPE_CHECKING:
    from .shared_cache import SharedLayers

# Set for every step so that what pip and Python write does not depend on the time or the process:
# timestamps from SOURCE_DATE_EPOCH, no bytecode from the step (cogbuild compiles it the same way as every
# other layer's), no pip cache or version check written into the layer. pip installs into the image's
# Python as cogbuild's own wheel layers do, although Debian marks its interpreter externally managed.
STEP_ENV = {"HOME": "/root", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PIP_COMPILE": "0",
            "PIP_NO_CACHE_DIR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore",
            "PIP_BREAK_SYSTEM_PACKAGES": "1"}


class RunOutputChanged(CogbuildError):
    """A step produced another layer than the lock records."""


def parse_secrets(values: list[str]) -> dict[str, Path]:
    """`--secret id=NAME,src=FILE` (buildx's spelling; `source=` works too) -> {NAME: FILE}."""
    secrets: dict[str, Path] = {}
    for value in values:
        fields = dict(part.partition("=")[::2] for part in value.split(","))
        name, src = fields.get("id"), fields.get("src") or fields.get("source")
        if not name or not src or set(fields) - {"id", "src", "source", "type"}:
            raise UsageError(f"--secret {value!r} must look like id=NAME,src=FILE")
        if not Path(src).is_file():
            raise UsageError(f"--secret {name}: {src} is not a readable file")
        secrets[name] = Path(src).resolve()
    return secrets


@dataclass
class StepRunner:
    layout: Layout
    cache: LayerCache
    lock: Lock
    secrets: dict[str, Path] = field(default_factory=dict)
    update: bool = False  # --update-run: a step's new output replaces the recorded one
    progress: Callable[[str], None] = lambda message: None
    recorded: bool = False  # whether any digest in the lock was set or replaced
    shared: SharedLayers | None = None  # --cache: step layers are looked up and published like the others
    cache_root: Path = field(kw_only=True)  # where the sandbox unpacks the layers

    def layers(self, steps: list[RunStep], platform: str, variant: str, below: list[Layer], env: dict[str, str],
               target: WheelTarget) -> list[Layer]:
        """The steps' layers for one image, in order, each run only when no accepted cached layer exists;
        `target` says where its Python packages go and which interpreter byte-compiles them (if any)."""
        env = {**env, **STEP_ENV, "SOURCE_DATE_EPOCH": str(self.cache.mtime)}
        sandbox: Sandbox | None = None
        lower, out = list(below), []
        try:
            for number, step in enumerate(steps, start=1):
                record = self._record(platform, variant, number, step)
                made: list[Tree] = []  # the step's changes, once it has run
                spec = LayerSpec(f"build.run step {number}: {_short(step.command)}",
                                 _key("run", platform, [layer.diff_id for layer in lower], step.identity(), env,
                                      target.compiler is not None),
                                 partial(_first_with_bytecode, made, target))  # `made` is filled once the step ran
                layer = self._cached(spec)
                if layer is not None and self._accepts(record, layer):
                    if sandbox is not None:
                        self._unpack(sandbox, [layer])
                else:
                    self._check_secrets(number, step)
                    if sandbox is None:
                        check_can_run(DEBIAN_ARCH[platform], platform)
                        self.progress(f"build.run: unpacking {len(lower)} layers for {platform} {variant}")
                        sandbox = Sandbox(self.layout, self.cache_root)
                        self._unpack(sandbox, lower)
                    self.progress(f"build.run step {number}/{len(steps)} ({platform} {variant}): "
                                  f"{_short(step.command)}")
                    made.append(sandbox.run(number, step, env, self.secrets))
                    layer = compose_layer(spec, self.layout, self.cache)
                    self._check(record, layer)
                if record.diff_id != layer.diff_id:
                    record.diff_id = layer.diff_id
                    self.recorded = True
                if self.shared is not None and self.layout.has_blob(layer.descriptor.digest):
                    self.shared.keep([spec], {spec.key: layer})
                lower.append(layer)
                out.append(layer)
        finally:
            if sandbox is not None:
                sandbox.remove()
        return out

    def _cached(self, spec: LayerSpec) -> Layer | None:
        """The step's layer from the local cache, else from the cache repository (kept for publishing)."""
        layer = self.cache.get(spec)
        if layer is None and self.shared is not None:
            layer = self.shared.lookup([spec]).get(spec.key)
        return layer

    def _unpack(self, sandbox: Sandbox, layers: list[Layer]) -> None:
        fetch_cached_layers(self.layout, [layer.descriptor for layer in layers])  # those only the cache holds
        sandbox.add_layers(layers)

    def _record(self, platform: str, variant: str, number: int, step: RunStep) -> RunRecord:
        record = self.lock.run_record(platform, variant, number)
        if record is None or record.command != step.command:
            raise UsageError(f"cog.lock does not list build.run step {number} for {platform} {variant} as cog.yaml "
                             "has it; run `cogbuild lock`")
        return record

    def _accepts(self, record: RunRecord, layer: Layer) -> bool:
        return accepts_output(record.diff_id, layer.diff_id, self.update)

    def _check(self, record: RunRecord, layer: Layer) -> None:
        if self._accepts(record, layer):
            return
        raise RunOutputChanged(f"build.run step {record.step} (`{_short(record.command)}`) for {record.platform} "
                               f"{record.variant} produced {layer.diff_id}, but cog.lock records "
                               f"{record.diff_id}; if the change is expected, accept it with "
                               "`cogbuild build --update-run`")

    def _check_secrets(self, number: int, step: RunStep) -> None:
        for mount in step.secrets:
            if mount.id not in self.secrets:
                raise UsageError(f"build.run step {number} mounts the secret {mount.id!r}; pass it with "
                                 f"--secret id={mount.id},src=FILE")


def _first_with_bytecode(made: list[Tree], target: WheelTarget) -> Tree:
    return _with_bytecode(made[0], target)


def _with_bytecode(tree: Tree, target: WheelTarget) -> Tree:
    """A step's tree byte-compiled like a wheel layer (bytecode below it would be stale for changed files)."""
    if target.compiler is not None:
        add_bytecode(tree, target.compiler, target.paths.site_packages)
    return tree
