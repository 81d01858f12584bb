"""`cog.lock`: every input of the image, pinned by URL + sha256 + size, readable in a pull request.

The file is TOML: a header (format version, digest of the inputs it was made from, Python version, Debian
suite, platforms, variants) and one `[[package]]` table per artifact, sorted by platform, layer group and
name. Nothing in it depends on the time or the machine it was made on.
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import tomli_w

from .artifacts import Artifact
from .errors import UsageError
from .layers.descriptor import is_sha256_hex

LOCK_VERSION = 1
LOCK_NAME = "cog.lock"
# Layer groups, least to most often changed; the build composes them in this order. `interpreter` holds a
# standalone CPython (with Debian's Python, the interpreter is among the `os` packages). `build` holds no
# layer: it is the pip that builds the sdists' wheels (see BuiltWheel).
GROUPS = ("os", "interpreter", "system", "cuda", "python", "runtime", "build")
PLATFORMS = ("linux/amd64", "linux/arm64")
VARIANTS = ("cpu", "gpu")
PYTHON_FROM = ("auto", "debian", "standalone")  # the switch: who may serve the interpreter
HEADER = "# cog.lock: every input of this model's image, pinned. Made by `cogbuild lock`; review, don't edit.\n"


@dataclass(frozen=True, order=True)
class LockedArtifact:
    platform: str
    group: str
    artifact: Artifact
    variants: tuple[str, ...] = ("cpu", "gpu")


@dataclass
class RunRecord:
    """A `build.run` step for one image, with the digest (diff_id) of the layer it must produce.

    `diff_id` is None until a build has run the step once; from then on it is the step's fixed output.
    """

    platform: str
    variant: str
    step: int  # 1-based, in cog.yaml's order
    command: str
    secrets: tuple[str, ...] = ()  # "id:/target" of each secret mount, never a value
    diff_id: str | None = None

    def same_step(self, other: "RunRecord") -> bool:
        return (self.platform, self.variant, self.step, self.command, self.secrets) == \
            (other.platform, other.variant, other.step, other.command, other.secrets)


@dataclass
class BuiltWheel:
    """The wheel a build makes from an sdist (from an index or the project) for one platform.

    `sha256` (with filename and size) is None until a build has made the wheel once; from then on it is the
    build's fixed output, as a build.run step's diff_id is.
    """

    platform: str
    name: str
    version: str
    source: str  # sha256 of the sdist it is built from
    filename: str | None = None
    sha256: str | None = None
    size: int | None = None

    def same_build(self, other: "BuiltWheel") -> bool:
        return (self.platform, self.name, self.version, self.source) == \
            (other.platform, other.name, other.version, other.source)

    def describe(self) -> str:
        return f"{self.name} {self.version} ({self.platform})"


@dataclass
class Lock:
    inputs: str
    python_version: str
    debian_suite: str
    platforms: list[str]
    variants: list[str]
    packages: list[LockedArtifact] = field(default_factory=list)
    python_provider: str = "debian"  # who serves the interpreter: "debian" or "standalone"
    python_from: str = "auto"  # the switch it was locked with; re-locking keeps it
    runs: list[RunRecord] = field(default_factory=list)
    wheel_builds: list[BuiltWheel] = field(default_factory=list)

    def run_record(self, platform: str, variant: str, step: int) -> RunRecord | None:
        return next((r for r in self.runs if (r.platform, r.variant, r.step) == (platform, variant, step)), None)

    def unrecorded_runs(self) -> list[RunRecord]:
        return [r for r in self.runs if r.diff_id is None]

    def keep_fixed_outputs(self, previous: "Lock | None") -> None:
        """Re-locking keeps each unchanged step's and wheel build's recorded output: it is fixed until
        `build --update-run`."""
        for record in self.runs:
            old = next((r for r in previous.runs if r.same_step(record)), None) if previous else None
            if old is not None:
                record.diff_id = old.diff_id
        for built in self.wheel_builds:
            was = next((b for b in previous.wheel_builds if b.same_build(built)), None) if previous else None
            if was is not None:
                built.filename, built.sha256, built.size = was.filename, was.sha256, was.size

    def wheel_build(self, platform: str, source: str) -> BuiltWheel | None:
        return next((b for b in self.wheel_builds if (b.platform, b.source) == (platform, source)), None)

    def unrecorded_wheel_builds(self) -> list[BuiltWheel]:
        return [b for b in self.wheel_builds if b.sha256 is None]

    def select(self, platform: str, variant: str, group: str) -> list[Artifact]:
        return [p.artifact for p in self.packages
                if p.platform == platform and p.group == group and variant in p.variants]

    def interpreter(self, platform: str) -> str:
        """The image's CPython for a reviewer: "3.12.14 (standalone)" or "3.11.2 (Debian bookworm)"."""
        for p in self.packages:
            if p.platform == platform and p.artifact.kind == "python-tarball":
                return f"{p.artifact.version} (standalone)"
        from .debian.python import upstream_version  # local: the debian package loads network clients

        for p in self.packages:
            if p.platform == platform and p.artifact.name == f"python{self.python_version}":
                return f"{upstream_version(p.artifact.version)} (Debian {self.debian_suite})"
        return f"{self.python_version} ({self.python_provider})"

    def artifacts(self) -> list[Artifact]:
        """Every distinct artifact, for the downloader."""
        return sorted({p.artifact for p in self.packages}, key=lambda a: (a.kind, a.name, a.sha256))


# -- reading and writing ------------------------------------------------------------------------

def _sort_key(p: LockedArtifact) -> tuple:
    return (p.platform, GROUPS.index(p.group), p.artifact.name, p.artifact.version, p.artifact.sha256)


def dumps(lock: Lock) -> str:
    doc: dict[str, Any] = {
        "version": LOCK_VERSION,
        "inputs": lock.inputs,
        "python": lock.python_version,
        "python-provider": lock.python_provider,
        "python-from": lock.python_from,
        "debian": lock.debian_suite,
        "platforms": list(lock.platforms),
        "variants": list(lock.variants),
        "package": [
            {
                "platform": p.platform,
                "group": p.group,
                "variants": list(p.variants),
                "kind": p.artifact.kind,
                "name": p.artifact.name,
                "version": p.artifact.version,
                "filename": p.artifact.filename,
                "url": p.artifact.url,
                "sha256": p.artifact.sha256,
                "size": p.artifact.size,
                "required-by": sorted(p.artifact.required_by),
            }
            for p in sorted(lock.packages, key=_sort_key)
        ],
    }
    if lock.runs:
        doc["run"] = [_run_entry(r) for r in sorted(lock.runs, key=lambda r: (r.platform, r.variant, r.step))]
    if lock.wheel_builds:
        doc["wheel-build"] = [_wheel_build_entry(b) for b in
                              sorted(lock.wheel_builds, key=lambda b: (b.platform, b.name, b.version, b.source))]
    return HEADER + tomli_w.dumps(doc)


def _run_entry(record: RunRecord) -> dict[str, Any]:
    entry: dict[str, Any] = {"platform": record.platform, "variant": record.variant, "step": record.step,
                             "command": record.command}
    if record.secrets:
        entry["secrets"] = list(record.secrets)
    if record.diff_id:
        entry["diff-id"] = record.diff_id
    return entry


def _wheel_build_entry(built: BuiltWheel) -> dict[str, Any]:
    entry: dict[str, Any] = {"platform": built.platform, "name": built.name, "version": built.version,
                             "source-sha256": built.source}
    if built.sha256:
        entry.update({"filename": built.filename, "sha256": built.sha256, "size": built.size})
    return entry


def write_lock(lock: Lock, path: Path) -> None:
    from .cache import atomic_write  # local import: cache imports httpx, not needed for reading

    atomic_write(path, dumps(lock).encode())


def loads(text: str, name: str = LOCK_NAME) -> Lock:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{name} is not valid TOML ({exc}); run `cogbuild lock` to remake it") from None
    if doc.get("version") != LOCK_VERSION:
        raise UsageError(f"{name} has format version {doc.get('version')!r}; this cogbuild reads version "
                         f"{LOCK_VERSION}: run `cogbuild lock` to remake it")
    try:
        lock = Lock(inputs=str(doc["inputs"]), python_version=str(doc["python"]),
                    debian_suite=str(doc["debian"]), platforms=list(doc["platforms"]),
                    variants=list(doc["variants"]), python_from=str(doc.get("python-from", "auto")))
        for i, entry in enumerate(doc.get("package", []), start=1):
            lock.packages.append(_read_package(entry, i, name, text))
        lock.runs = [_read_run(entry, name) for entry in doc.get("run", [])]
        lock.wheel_builds = [_read_wheel_build(entry, name) for entry in doc.get("wheel-build", [])]
    except KeyError as exc:
        raise UsageError(f"{name} lacks the key {exc.args[0]!r}; run `cogbuild lock` to remake it") from None
    except TypeError:  # e.g. `platforms = 0`, or `package` that is not an array of tables
        raise UsageError(f"{name} has a value of the wrong type in its header or package list; run "
                         "`cogbuild lock` to remake it") from None
    if lock.python_from not in PYTHON_FROM:
        raise UsageError(f"{name} has python-from = {lock.python_from!r}, not one of {', '.join(PYTHON_FROM)}; "
                         "run `cogbuild lock` to remake it")
    standalone = any(p.artifact.kind == "python-tarball" for p in lock.packages)
    lock.python_provider = str(doc.get("python-provider", "standalone" if standalone else "debian"))
    return lock


def _read_package(entry: dict[str, Any], index: int, name: str, text: str) -> LockedArtifact:
    where = f"{name} line {_line_of_package(text, index)}"
    try:
        artifact = Artifact(kind=str(entry["kind"]), name=str(entry["name"]), version=str(entry["version"]),
                            filename=str(entry["filename"]), url=str(entry["url"]),
                            sha256=str(entry["sha256"]), size=int(entry["size"]),
                            required_by=tuple(entry.get("required-by", ())))
        locked = LockedArtifact(platform=str(entry["platform"]), group=str(entry["group"]),
                                artifact=artifact, variants=tuple(entry["variants"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{where}: package entry is incomplete or malformed ({exc})") from None
    if locked.group not in GROUPS:
        raise UsageError(f"{where}: unknown group {locked.group!r} (expected one of {', '.join(GROUPS)})")
    if not is_sha256_hex(artifact.sha256):
        raise UsageError(f"{where}: sha256 of {artifact.name} is not 64 lowercase hex digits")
    return locked


def _read_run(entry: dict[str, Any], name: str) -> RunRecord:
    try:
        record = RunRecord(platform=str(entry["platform"]), variant=str(entry["variant"]), step=int(entry["step"]),
                           command=str(entry["command"]), secrets=tuple(map(str, entry.get("secrets", ()))),
                           diff_id=entry.get("diff-id"))
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{name}: a [[run]] entry is incomplete or malformed ({exc})") from None
    if record.diff_id is not None and not _is_digest(str(record.diff_id)):
        raise UsageError(f"{name}: the diff-id of build.run step {record.step} is not sha256:<64 hex digits>")
    return record


def _read_wheel_build(entry: dict[str, Any], name: str) -> BuiltWheel:
    try:
        built = BuiltWheel(platform=str(entry["platform"]), name=str(entry["name"]), version=str(entry["version"]),
                           source=str(entry["source-sha256"]), filename=entry.get("filename"),
                           sha256=entry.get("sha256"), size=entry.get("size"))
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{name}: a [[wheel-build]] entry is incomplete or malformed ({exc})") from None
    recorded = (built.filename, built.sha256, built.size)
    if not is_sha256_hex(built.source) or (any(v is not None for v in recorded) and not (
            isinstance(built.filename, str) and built.filename.endswith(".whl") and "/" not in built.filename
            and is_sha256_hex(str(built.sha256)) and isinstance(built.size, int))):
        raise UsageError(f"{name}: the [[wheel-build]] entry of {built.describe()} needs source-sha256 and, once "
                         "built, a .whl filename, a sha256 of 64 lowercase hex digits and a size")
    return built


def _is_digest(text: str) -> bool:
    algorithm, _, hexpart = text.partition(":")
    return algorithm == "sha256" and len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart)


def _line_of_package(text: str, index: int) -> int:
    count = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() == "[[package]]":
            count += 1
            if count == index:
                return number
    return 0


def read_lock(path: Path) -> Lock:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist; run `cogbuild lock`") from None
    return loads(text, path.name)


def wheel_build_records(packages: Iterable[LockedArtifact]) -> list[BuiltWheel]:
    """One record per sdist and platform; the wheels' digests come from building."""
    keys = {(p.platform, p.artifact.name, p.artifact.version, p.artifact.sha256)
            for p in packages if p.artifact.kind == "sdist"}
    return [BuiltWheel(*key) for key in sorted(keys)]


def accepts_output(recorded: str | None, made: str, update: bool) -> bool:
    """A fixed output (a step's layer, a built wheel) is taken when none is recorded yet, when it is the
    recorded one, or when `--update-run` says to take the new one."""
    return recorded is None or update or recorded == made


def run_records(steps: list, platforms: Iterable[str], variants: Iterable[str]) -> list[RunRecord]:
    """One record per build.run step (config.RunStep) and image; the digests come from building."""
    return [RunRecord(platform, variant, number, step.command, tuple(f"{s.id}:{s.target}" for s in step.secrets))
            for platform in platforms for variant in variants for number, step in enumerate(steps, start=1)]


def locked(platform: str, group: str, artifacts: Iterable[Artifact], variants: Iterable[str]
           ) -> list[LockedArtifact]:
    return [LockedArtifact(platform, group, a, tuple(variants)) for a in artifacts]
