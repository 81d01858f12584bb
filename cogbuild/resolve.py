"""Make a Lock from a CogConfig: resolve every input for each target platform and variant, run nothing.

The Debian resolver picks the OS + Python runtime and `system_packages`; the Python resolver picks wheels
for the image's interpreter and platform (never the host's); the runtime's own wheels come from the
project's pip-compiled lockfiles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

from .artifacts import Artifact
from .config import CogConfig
from .cuda import CpuWheelSource, configured_cpu_source, resolve_variants, split_gpu_wheels
from .debian import DebianSource, forget_parsed_indexes, resolve_closure, upstream_version
from .errors import UsageError
from .interpreter import Interpreter, choose_interpreter
from .lock import Lock, LockedArtifact, locked, run_records, wheel_build_records
from .policy import (BASE_PACKAGES, DEBIAN_ARCH, NOT_INSTALLED, WHEEL_ARCH, WHEEL_BUILDER, lock_inputs_digest,
                     runtime_lockfile)
from .pyresolve import Target, check_requirements, resolve_requirements, wheels_for_lockfile
from .settings import Settings


@dataclass(frozen=True)
class LockSources:
    """Where locking looks for inputs, as the settings say (defaults: the public archives and indexes), and the
    cache root where what it fetched (Debian indexes, wheel metadata) is kept."""

    cache_root: Path
    debian: DebianSource = field(default_factory=DebianSource)
    python_manifest: str = ""  # COGBUILD_PYTHON_PROVIDER: a manifest of standalone CPythons
    cpu: CpuWheelSource = field(default_factory=CpuWheelSource)
    pip_proxy: bool = True
    uv: bool = True  # COGBUILD_LOCK_RESOLVER: uv resolves where it can, else pip alone

    @classmethod
    def from_settings(cls, settings: Settings) -> LockSources:
        if settings.lock_resolver_text not in ("uv", "pip"):
            raise UsageError(f"COGBUILD_LOCK_RESOLVER is {settings.lock_resolver_text!r}; it must be uv or pip.")
        return cls(settings.cache_root, DebianSource(check_valid_until=settings.debian_check_valid_until),
                   settings.python_provider, configured_cpu_source(settings.cpu_index_url, settings.cpu_find_links),
                   settings.pip_proxy, settings.lock_resolver_text == "uv")


def glibc_version(os_debs: list[Artifact]) -> str:
    """The image's glibc, from the locked libc6 ("2.36-9+deb12u13" -> "2.36"): it bounds manylinux tags."""
    for deb in os_debs:
        if deb.name == "libc6":
            match = re.match(r"(\d+\.\d+)", deb.version)
            if match:
                return match.group(1)
    raise UsageError("the OS closure has no libc6; cannot tell which manylinux wheels the image can run")


def make_lock(config: CogConfig, platforms: list[str], variants: list[str], constraints: Sequence[str] = (),
              python_from: str = "auto", *, sources: LockSources) -> Lock:
    """Resolve everything for each platform; `constraints` keeps Python packages at given versions;
    `python_from` ("auto", "debian", "standalone") says who may serve the interpreter."""
    for platform in platforms:
        if platform not in DEBIAN_ARCH:
            raise UsageError(f"unsupported platform {platform!r} (supported: {', '.join(DEBIAN_ARCH)})")
    platforms = sorted(platforms)
    check_requirements(config.requirements(), config.root)  # bad lines fail before any download
    interpreter = choose_interpreter(config.python_request, python_from, DEBIAN_ARCH[platforms[0]],
                                     cache_root=sources.cache_root)
    lock = Lock(inputs=lock_inputs_digest(config), python_version=config.python_version,
                debian_suite=interpreter.suite, platforms=platforms, variants=sorted(variants),
                python_provider=interpreter.provider, python_from=python_from)
    for platform in lock.platforms:
        lock.packages += _lock_platform(config, platform, interpreter, lock.variants, list(constraints), sources)
    lock.runs = run_records(config.run, lock.platforms, lock.variants)
    lock.wheel_builds = wheel_build_records(lock.packages)
    return lock


def _lock_platform(config: CogConfig, platform: str, interpreter: Interpreter, variants: list[str],
                   constraints: list[str], sources: LockSources) -> list[LockedArtifact]:
    arch, suite = DEBIAN_ARCH[platform], interpreter.suite
    # first: a version with no build fails fast
    tarball = interpreter.tarball(config.python_request, arch, sources.python_manifest)
    os_debs = resolve_closure([*interpreter.debian_packages, *BASE_PACKAGES], suite=suite, arch=arch,
                              exclude=NOT_INSTALLED, source=sources.debian, cache_root=sources.cache_root)
    out = locked(platform, "os", os_debs, variants)
    if tarball is not None:  # a standalone CPython: its own layer on Debian's OS packages
        out += locked(platform, "interpreter", [tarball], variants)
    if config.system_packages:
        system = resolve_closure(config.system_packages, suite=suite, arch=arch, exclude=NOT_INSTALLED,
                                 installed=os_debs, source=sources.debian, cache_root=sources.cache_root)
        out += locked(platform, "system", system, variants)
    forget_parsed_indexes()  # issue #15: the Python resolution and a build need no Debian index in memory
    target = Target(python_version=config.python_version, arch=WHEEL_ARCH[platform],
                    glibc=glibc_version(os_debs), python_full_version=_patch_release(config, tarball, os_debs))
    if not config.entrypoint:  # an app image carries no Cog runtime
        out += locked(platform, "runtime", wheels_for_lockfile(runtime_lockfile(config.python_version), target),
                      variants)
    requirements = config.requirements()
    if any(line.strip() and not line.strip().startswith("#") for line in requirements):
        closures = resolve_variants(requirements, target, variants=variants, cuda=config.cuda, cudnn=config.cudnn,
                                    constraints=constraints, allow_sdist=True, project_root=config.root,
                                    cpu_source=sources.cpu, proxy=sources.pip_proxy, uv=sources.uv,
                                    cache_root=sources.cache_root).artifacts
        out += _python_groups(platform, closures)
        sdists = {a.sha256: a for artifacts in closures.values() for a in artifacts if a.kind == "sdist"}
        if sdists:
            out += locked(platform, "build", _build_tools(list(sdists.values()), target, sources),
                          variants)
    return out


def _build_tools(sdists: list[Artifact], target: Target, sources: LockSources) -> list[Artifact]:
    """What builds the sdists' wheels offline in the image: pip, and each sdist's build requirements as
    wheels for the image (resolved one sdist at a time, since two may need different setuptools)."""
    def resolve(requirements: Sequence[str]) -> list[Artifact]:
        return resolve_requirements(requirements, target, proxy=sources.pip_proxy, uv=sources.uv,
                                    cache_root=sources.cache_root)

    wanted: dict[Artifact, set[str]] = {a: {"cogbuild"} for a in resolve(list(WHEEL_BUILDER))}
    for sdist in sorted(sdists, key=lambda a: a.name):
        if sdist.build_requires:
            for wheel in resolve(list(sdist.build_requires)):
                wanted.setdefault(wheel, set()).add(sdist.name)
    return [replace(wheel, required_by=tuple(sorted(names))) for wheel, names in wanted.items()]


def _patch_release(config: CogConfig, tarball: Artifact | None, os_debs: list[Artifact]) -> str | None:
    """The interpreter's exact release, for python_full_version markers: the tarball's or Debian's."""
    if tarball is not None:
        return tarball.version
    package = f"python{config.python_version}"
    return next((upstream_version(d.version) for d in os_debs if d.name == package), None)


def _python_groups(platform: str, closures: Mapping[str, list[Artifact]]) -> list[LockedArtifact]:
    """Wheels by layer group; one entry per wheel, naming every variant that carries it.

    The CPU closure never holds CUDA wheels (resolve_variants checks that); in the GPU closure they go to
    the `cuda` group, which becomes their own layers.
    """
    carriers: dict[Artifact, list[str]] = {}
    for variant, artifacts in sorted(closures.items()):
        for artifact in artifacts:
            carriers.setdefault(artifact, []).append(variant)
    cuda_wheels, _ = split_gpu_wheels(carriers)
    return [LockedArtifact(platform, "cuda" if artifact in cuda_wheels else "python", artifact, tuple(variants))
            for artifact, variants in carriers.items()]
