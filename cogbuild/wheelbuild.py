"""Wheels built from sdists inside the image, pinned like build.run steps (Nix's fixed-output steps).

`cogbuild lock` records each sdist (from an index, or a file in the project) by sha256 and a `[[wheel-build]]`
entry per platform. The build turns it into a wheel with the image's own interpreter, for the image's
platform: `pip wheel --no-deps --no-index` runs in the sandbox over the image's OS, interpreter and
system_packages layers, with pip and the sdist's build requirements (setuptools, …) as the wheels the lock's
`build` group pins, so it needs no network. The wheel is normalised (zip timestamps and modes) and its
sha256 recorded the first time; later builds take the wheel cached under its inputs, and when they must build again, a different
wheel is an error naming the package and both digests unless `--update-run` accepts it.
"""

from __future__ import annotations

import json
import shlex
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .artifacts import Artifact
from .cache import BlobCache
from .content_store import ContentStore
from .errors import CogbuildError, UsageError
from .layers.image import Layer
from .layers.wheel import normalize_wheel
from .lock import BuiltWheel, Lock, accepts_output
from .plan import _key
from .policy import DEBIAN_ARCH
from .registry.layout import Layout
from .runsteps import STEP_ENV
from .sandbox import Sandbox, check_can_run

WORK = "tmp/cogbuild-wheel-build"  # inside the sandbox's root filesystem, which is removed afterwards


class WheelOutputChanged(CogbuildError):
    """A build made another wheel than the lock records."""


@dataclass
class WheelBuilder:
    layout: Layout
    blobs: BlobCache
    lock: Lock
    mtime: int  # SOURCE_DATE_EPOCH: the build's timestamps and the wheel's zip entries
    update: bool = False  # --update-run: a new wheel replaces the recorded one
    progress: Callable[[str], None] = lambda message: None
    recorded: bool = False  # whether any wheel digest in the lock was set or replaced
    cache_root: Path = field(kw_only=True)  # where built wheels are remembered by their inputs, and built

    def wheels(self, platform: str, below: list[Layer], env: dict[str, str]) -> dict[str, Artifact]:
        """sdist sha256 -> the wheel built from it for `platform`, over the image layers `below`."""
        sources = {p.artifact.sha256: p.artifact for p in self.lock.packages
                   if p.platform == platform and p.artifact.kind == "sdist"}
        if not sources:
            return {}
        tools = sorted({p.artifact for p in self.lock.packages if p.platform == platform and p.group == "build"})
        pip = next((t for t in tools if t.name == "pip" and "cogbuild" in t.required_by), None)
        if pip is None:
            raise UsageError(f"cog.lock has source distributions for {platform} but no pip to build them with; "
                             "run `cogbuild lock`")
        self.blobs.fetch_all([*tools, *sources.values()])
        env = {**env, **STEP_ENV, "SOURCE_DATE_EPOCH": str(self.mtime), "PYTHONPATH": f"/{WORK}/pip"}
        sandbox = _LazySandbox(self.layout, self.cache_root, platform, below, self.progress)
        try:
            return {sdist.sha256: self._wheel(sdist, platform, below, pip, tools, env, sandbox)
                    for sdist in sorted(sources.values(), key=lambda a: (a.name, a.version))}
        finally:
            sandbox.remove()

    def _wheel(self, sdist: Artifact, platform: str, below: list[Layer], pip: Artifact, tools: list[Artifact],
               env: dict[str, str], sandbox: _LazySandbox) -> Artifact:
        """The cached wheel when the lock accepts it, else one built now and checked against the lock."""
        record = self._record(platform, sdist)
        key = _key("wheel-build", platform, [layer.diff_id for layer in below], sdist.sha256,
                   [t.sha256 for t in tools], env)
        wheel = self._cached(key, sdist)
        if wheel is None or not accepts_output(record.sha256, wheel.sha256, self.update):
            self.progress(f"building the wheel of {sdist.name} {sdist.version} for {platform}")
            wheel = self._build(sandbox.get(), sdist, pip, tools, env)
            self._remember(key, wheel)
            self._check(record, wheel)
        if (record.filename, record.sha256, record.size) != (wheel.filename, wheel.sha256, wheel.size):
            record.filename, record.sha256, record.size = wheel.filename, wheel.sha256, wheel.size
            self.recorded = True
        return wheel

    def _record(self, platform: str, sdist: Artifact) -> BuiltWheel:
        record = self.lock.wheel_build(platform, sdist.sha256)
        if record is None:
            raise UsageError(f"cog.lock has no [[wheel-build]] entry for {sdist.name} {sdist.version} on {platform}; "
                             "run `cogbuild lock`")
        return record

    def _build(self, sandbox: Sandbox, sdist: Artifact, pip: Artifact, tools: list[Artifact], env: dict[str, str]
               ) -> Artifact:
        work = sandbox.rootfs / WORK
        shutil.rmtree(work, ignore_errors=True)
        for folder in ("src", "out", "wheels"):
            (work / folder).mkdir(parents=True)
        shutil.copyfile(self.blobs.verified_path(sdist), work / "src" / sdist.filename)
        for tool in tools:
            shutil.copyfile(self.blobs.verified_path(tool), work / "wheels" / tool.filename)
        with zipfile.ZipFile(self.blobs.verified_path(pip)) as wheel:
            wheel.extractall(work / "pip")  # pip runs from its unpacked wheel: the image needs no pip of its own
        python = f"python{self.lock.python_version}"
        command = (f"{python} -m pip wheel --no-deps --no-cache-dir --no-index --find-links /{WORK}/wheels "
                   f"--wheel-dir /{WORK}/out {shlex.quote(f'/{WORK}/src/{sdist.filename}')}")
        sandbox.execute(f"building the wheel of {sdist.name} {sdist.version}", command, env)
        made = sorted((work / "out").glob("*.whl"))
        if len(made) != 1:
            raise CogbuildError(f"building {sdist.name} {sdist.version} gave {len(made)} wheels instead of one")
        data = normalize_wheel(made[0].read_bytes(), self.mtime)
        sha256 = self.blobs.put(data)
        shutil.rmtree(work)
        return Artifact("wheel", sdist.name, sdist.version, made[0].name, f"built-from:sha256:{sdist.sha256}",
                        sha256, len(data))

    def _records(self) -> ContentStore:
        """Which wheel each build's inputs gave: a JSON record per input key, checked by hash on read."""
        return ContentStore(self.cache_root / "wheel-builds")

    def _cached(self, key: str, sdist: Artifact) -> Artifact | None:
        """The wheel an earlier build made from the same inputs, if its blob is still there and intact."""
        record = self._records().get_named(key)
        if record is None:
            return None
        try:
            doc = json.loads(record)
            wheel = Artifact("wheel", sdist.name, sdist.version, str(doc["filename"]),
                             f"built-from:sha256:{sdist.sha256}", str(doc["sha256"]), int(doc["size"]))
        except (ValueError, KeyError, TypeError):
            return None
        return wheel if self.blobs.get(wheel) is not None else None

    def _remember(self, key: str, wheel: Artifact) -> None:
        doc = {"filename": wheel.filename, "sha256": wheel.sha256, "size": wheel.size}
        self._records().put_named(key, json.dumps(doc, sort_keys=True).encode())

    def _check(self, record: BuiltWheel, wheel: Artifact) -> None:
        if not accepts_output(record.sha256, wheel.sha256, self.update):
            raise WheelOutputChanged(f"building {record.describe()} from its sdist gave sha256:{wheel.sha256}, "
                                     f"but cog.lock records sha256:{record.sha256}; if the change is expected, "
                                     "accept it with `cogbuild build --update-run`")


class _LazySandbox:
    """The image's layers unpacked into a sandbox the first time a wheel must be built, not before."""

    def __init__(self, layout: Layout, cache_root: Path, platform: str, below: list[Layer],
                 progress: Callable[[str], None]) -> None:
        self.layout, self.cache_root, self.platform, self.below, self.progress = \
            layout, cache_root, platform, below, progress
        self.sandbox: Sandbox | None = None

    def get(self) -> Sandbox:
        if self.sandbox is None:
            check_can_run(DEBIAN_ARCH[self.platform], self.platform)
            self.progress(f"unpacking {len(self.below)} layers to build wheels for {self.platform}")
            self.sandbox = Sandbox(self.layout, self.cache_root)
            self.sandbox.add_layers(self.below)
        return self.sandbox

    def remove(self) -> None:
        if self.sandbox is not None:
            self.sandbox.remove()
