"""CUDA for the GPU variant: which CUDA/cuDNN a framework pin implies, and how the two variants differ.

The facts live in cogbuild/data/cuda-matrix.json (regenerated from PyPI by scripts/regen-cuda-matrix):
for each torch / tensorflow release, the CUDA and cuDNN versions its PyPI Linux wheels require, the
Python versions it has wheels for, and its GPU wheel set (nvidia-*, triton, cuda-toolkit) per arch.

How the variants are made:
- GPU: the requirements as written, resolved from PyPI. torch's Linux wheels on PyPI are CUDA builds
  that pull the NVIDIA wheels; tensorflow gets its `and-cuda` extra added.
- CPU: CUDA is left out wherever the framework allows. tensorflow without `and-cuda` is CPU-only.
  torch's CPU-only builds (versioned X.Y.Z+cpu) are not on PyPI: they come from a CpuWheelSource,
  by default PyTorch's CPU index (https://download.pytorch.org/whl/cpu). Set COGBUILD_CPU_INDEX_URL
  and/or COGBUILD_CPU_FIND_LINKS (os.pathsep-separated directories or pages) to use a mirror or local
  wheels instead. On arches where PyPI's torch has no GPU wheels (aarch64 before torch 2.11) PyPI's
  torch is already the CPU build and no source is needed. check_cpu_closure refuses a CPU closure
  that still contains GPU wheels, naming the package that pulled them.

Entry points: resolve_variants (both closures for a target, CUDA checked), choose_cuda (the check
alone), gpu_wheels (the NVIDIA wheel set of a choice), split_gpu_wheels (for the CUDA layer).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .artifacts import Artifact
from .errors import CogbuildError, UsageError
from .pyresolve import Target, resolve_requirements

FRAMEWORKS = ("torch", "tensorflow")
GPU_PACKAGE = re.compile(r"^(nvidia-.*|triton|cuda-toolkit|cuda-bindings|cuda-pathfinder)$")
# torch's companions ship +cpu builds from the same index and link the same CUDA libraries.
TORCH_FAMILY = ("torch", "torchvision", "torchaudio")
DEFAULT_TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def is_gpu_package(name: str) -> bool:
    """True for wheels that only the GPU variant carries (CUDA libraries and GPU compilers)."""
    return bool(GPU_PACKAGE.match(canonicalize_name(name)))


@dataclass(frozen=True)
class FrameworkBuild:
    """One framework release as published on PyPI for Linux."""

    framework: str
    version: str
    cuda: str
    cudnn: str | None
    python: tuple[str, ...]
    gpu_requirements: Mapping[str, tuple[str, ...]] = field(compare=False)

    def label(self) -> str:
        return f"{self.framework} {self.version}"


@dataclass(frozen=True)
class CudaChoice:
    """What the GPU variant carries: CUDA/cuDNN versions and the frameworks that imply them.

    cuda is None when nothing asks for CUDA (the model is CPU-only).
    """

    cuda: str | None
    cudnn: str | None
    python_version: str
    frameworks: tuple[FrameworkBuild, ...] = ()

    def gpu_requirements(self, arch: str) -> list[str]:
        """The NVIDIA (and triton) requirements the frameworks' PyPI wheels declare for `arch`."""
        return sorted({line for build in self.frameworks for line in build.gpu_requirements.get(arch, ())})

    def framework(self, name: str) -> FrameworkBuild | None:
        return next((b for b in self.frameworks if b.framework == name), None)


class CudaMatrix:
    """The framework → CUDA/cuDNN/Python table."""

    def __init__(self, data: Mapping) -> None:
        self.builds: dict[str, list[FrameworkBuild]] = {}
        for framework, releases in data["frameworks"].items():
            rows = [FrameworkBuild(framework, version, row["cuda"], row.get("cudnn"), tuple(row["python"]),
                                   {arch: tuple(reqs) for arch, reqs in row["gpu_requirements"].items()})
                    for version, row in releases.items()]
            self.builds[framework] = sorted(rows, key=lambda b: Version(b.version))

    @classmethod
    def load(cls, path: Path | None = None) -> CudaMatrix:
        text = path.read_text() if path else resources.files("cogbuild").joinpath("data/cuda-matrix.json").read_text()
        return cls(json.loads(text))

    def releases(self, framework: str) -> list[FrameworkBuild]:
        return self.builds.get(framework, [])


@lru_cache(maxsize=1)
def default_matrix() -> CudaMatrix:
    return CudaMatrix.load()


def choose_cuda(framework_pins: Mapping[str, str], cuda: str | None = None, cudnn: str | None = None,
                python_version: str = "3.11", *, matrix: CudaMatrix | None = None) -> CudaChoice:
    """Check the pins against CUDA/cuDNN/Python and return the GPU variant's CUDA.

    framework_pins maps a framework name to an exact version ("2.5.1") or a specifier (">=2.4,<2.6",
    "" for any); other names are ignored. cuda/cudnn are the cog.yaml values ("12.4", "12", "9").
    Incompatible pins raise one sentence naming both versions and what would work.
    """
    matrix = matrix or default_matrix()
    if cudnn and not cuda and not _framework_names(framework_pins):
        raise UsageError(f"cudnn {cudnn} is set without cuda; set cuda too.")
    builds = tuple(_choose_build(matrix, name, spec, cuda, cudnn, python_version)
                   for name, spec in sorted(framework_pins.items()) if canonicalize_name(name) in FRAMEWORKS)
    _check_frameworks_agree(builds)
    if not builds:
        return CudaChoice(cuda, cudnn, python_version)
    first = builds[0]
    return CudaChoice(cuda or first.cuda, cudnn or first.cudnn, python_version, builds)


def _framework_names(pins: Mapping[str, str]) -> list[str]:
    return [name for name in pins if canonicalize_name(name) in FRAMEWORKS]


def _choose_build(matrix: CudaMatrix, name: str, spec: str, cuda: str | None, cudnn: str | None,
                  python_version: str) -> FrameworkBuild:
    framework = canonicalize_name(name)
    releases = matrix.releases(framework)
    specifier = _specifier(framework, spec)
    wanted = [b for b in releases if specifier.contains(_base_version(b.version), prereleases=True)]
    if not wanted:
        span = f"{releases[0].version} to {releases[-1].version}" if releases else "none"
        raise CogbuildError(f"{framework} {spec or ''} is not in cogbuild's CUDA matrix (it knows {span}); "
                            "regenerate it with scripts/regen-cuda-matrix.".replace("  ", " "))
    fitting = [b for b in wanted if _fits(b, cuda, cudnn, python_version)]
    if fitting:
        return fitting[-1]
    raise CogbuildError(_mismatch(wanted[-1], releases, cuda, cudnn, python_version))


def _specifier(framework: str, spec: str) -> SpecifierSet:
    spec = spec.strip()
    try:
        Version(spec)
        return SpecifierSet(f"=={_base_version(spec)}")
    except InvalidVersion:
        pass
    try:
        return SpecifierSet(spec)
    except InvalidSpecifier as exc:
        raise UsageError(f"The {framework} pin {spec!r} is neither a version nor a version specifier.") from exc


def _base_version(version: str) -> str:
    """2.5.1+cu121 and 2.5.1+cpu are builds of 2.5.1."""
    return version.split("+", 1)[0]


def _fits(build: FrameworkBuild, cuda: str | None, cudnn: str | None, python_version: str) -> bool:
    return (python_version in build.python and _same_release(cuda, build.cuda)
            and _same_release(cudnn, build.cudnn))


def _same_release(asked: str | None, built: str | None) -> bool:
    """cog.yaml's "12" accepts any CUDA 12.x; "12.4" only 12.4."""
    if asked is None:
        return True
    if built is None:
        return False
    return built.split(".")[: len(asked.split("."))] == asked.split(".")


def _mismatch(build: FrameworkBuild, releases: list[FrameworkBuild], cuda: str | None, cudnn: str | None,
              python_version: str) -> str:
    name = build.framework
    if python_version not in build.python:
        working = [b.version for b in releases if python_version in b.python]
        hint = f"pin {name} {_span(working)}" if working else f"no {name} release has wheels for it"
        return (f"{build.label()} has no wheels for Python {python_version} (only for Python "
                f"{', '.join(build.python)}); use one of those or {hint}.")
    if not _same_release(cuda, build.cuda):
        working = [b.version for b in releases if _same_release(cuda, b.cuda) and python_version in b.python]
        hint = (f" or pin {name} {_span(working)}, built for CUDA {cuda}" if working
                else f" (no {name} release on PyPI is built for CUDA {cuda})")
        return f"{build.label()} is built for CUDA {build.cuda}, not CUDA {cuda}; set cuda to {build.cuda}{hint}."
    working = [b.version for b in releases if _same_release(cudnn, b.cudnn) and _same_release(cuda, b.cuda)
               and python_version in b.python]
    hint = (f" or pin {name} {_span(working)}, built for cuDNN {cudnn}" if working
            else f" (no {name} release on PyPI for this CUDA is built for cuDNN {cudnn})")
    return f"{build.label()} is built for cuDNN {build.cudnn}, not cuDNN {cudnn}; set cudnn to {build.cudnn}{hint}."


def _span(versions: Sequence[str]) -> str:
    return versions[0] if len(versions) == 1 else f"{versions[0]}–{versions[-1]}"


def _check_frameworks_agree(builds: Sequence[FrameworkBuild]) -> None:
    majors = {b.cuda.split(".")[0] for b in builds}
    if len(majors) > 1:
        first, second = builds[0], builds[1]
        raise CogbuildError(f"{first.label()} needs CUDA {first.cuda} but {second.label()} needs CUDA "
                            f"{second.cuda}; pin releases built for the same CUDA major version.")


@dataclass(frozen=True)
class CpuWheelSource:
    """Where CPU-only builds (X.Y.Z+<local_version>) of a framework family come from."""

    index_url: str | None = DEFAULT_TORCH_CPU_INDEX
    find_links: tuple[str, ...] = ()
    local_version: str = "cpu"
    packages: tuple[str, ...] = TORCH_FAMILY


def configured_cpu_source(index_url: str | None, find_links: tuple[str, ...]) -> CpuWheelSource:
    """COGBUILD_CPU_INDEX_URL / COGBUILD_CPU_FIND_LINKS override where torch's CPU builds come from;
    `index_url` None (not set) is PyTorch's CPU index, unless find-links are given."""
    if index_url is None:
        index_url = "" if find_links else DEFAULT_TORCH_CPU_INDEX
    return CpuWheelSource(index_url or None, find_links)


@dataclass(frozen=True)
class VariantInputs:
    """What to pass to resolve_requirements for one variant on one arch."""

    requirements: list[str]
    constraints: list[str]
    extra_index_urls: list[str]
    find_links: list[str]


def variant_inputs(requirements: Sequence[str], resolved_versions: Mapping[str, str], choice: CudaChoice,
                   variant: str, arch: str, cpu_source: CpuWheelSource | None = None) -> VariantInputs:
    """Requirements, constraints and wheel sources for the `cpu` or `gpu` variant on `arch`.

    resolved_versions: versions of the torch family (and tensorflow) as the GPU lock resolved them,
    so the CPU variant gets the same releases in their CPU builds.
    """
    if variant not in ("cpu", "gpu"):
        raise UsageError(f"Variant {variant!r} is neither cpu nor gpu.")
    lines = [_with_tensorflow_extra(line, variant) for line in requirements]
    torch = choice.framework("torch")
    if variant == "gpu" or torch is None or not torch.gpu_requirements.get(arch):
        return VariantInputs(lines, [], [], [])
    source = cpu_source or CpuWheelSource()
    constraints = [f"{name}=={_base_version(version)}+{source.local_version}"
                   for name, version in sorted(resolved_versions.items())
                   if canonicalize_name(name) in source.packages]
    extra = [source.index_url] if source.index_url else []
    return VariantInputs(lines, constraints, extra, list(source.find_links))


def _with_tensorflow_extra(line: str, variant: str) -> str:
    """The GPU variant asks for tensorflow[and-cuda]; the CPU variant for plain tensorflow."""
    stripped = line.strip()
    if not stripped or stripped.startswith(("-", "#")):
        return line
    try:
        requirement = Requirement(stripped.split(" --hash")[0])
    except InvalidRequirement:
        return line
    if canonicalize_name(requirement.name) != "tensorflow":
        return line
    if variant == "gpu":
        requirement.extras.add("and-cuda")
    else:
        requirement.extras.discard("and-cuda")
    return str(requirement)


def gpu_wheels(choice: CudaChoice, target: Target, **resolve_options) -> list[Artifact]:
    """The GPU variant's NVIDIA wheel set for `target`, pinned: what the frameworks' PyPI wheels require
    on that arch, resolved to files (options as for resolve_requirements)."""
    requirements = choice.gpu_requirements(target.arch)
    if not requirements:
        return []
    return [a for a in resolve_requirements(requirements, target, **resolve_options) if is_gpu_package(a.name)]


@dataclass(frozen=True)
class VariantLock:
    """The Python closure of each variant for one target, and the CUDA the GPU one carries."""

    choice: CudaChoice
    artifacts: Mapping[str, list[Artifact]]


def resolve_variants(requirements: Sequence[str], target: Target, *, variants: Sequence[str] = ("cpu", "gpu"),
                     cuda: str | None = None, cudnn: str | None = None, cpu_source: CpuWheelSource | None = None,
                     constraints: Sequence[str] = (), matrix: CudaMatrix | None = None,
                     **resolve_options) -> VariantLock:
    """Lock the requirements for each variant on `target`, checking CUDA/cuDNN against the frameworks.

    The GPU closure is resolved first (from the indexes as given, tensorflow with `and-cuda`); with
    cuda/cudnn set, framework releases built for another CUDA are excluded so the newest fitting one
    wins. The CPU closure then keeps every GPU version except the frameworks' CPU builds and drops
    the CUDA wheels; check_cpu_closure guarantees it. resolve_options go to resolve_requirements.
    """
    matrix = matrix or default_matrix()
    gpu_lines = [_with_tensorflow_extra(line, "gpu") for line in requirements]
    fitting = _cuda_constraints(matrix, cuda, cudnn, target.python_version) if cuda or cudnn else []
    try:
        gpu = resolve_requirements(gpu_lines, target, constraints=[*constraints, *fitting], **resolve_options)
    except CogbuildError:
        if not fitting:
            raise
        # Pins that exclude every fitting release: resolve as asked so choose_cuda names the mismatch.
        gpu = resolve_requirements(gpu_lines, target, constraints=constraints, **resolve_options)
    versions = {a.name: a.version for a in gpu}
    choice = choose_cuda({n: v for n, v in versions.items() if n in FRAMEWORKS}, cuda, cudnn,
                         target.python_version, matrix=matrix)
    artifacts: dict[str, list[Artifact]] = {}
    if "gpu" in variants:
        artifacts["gpu"] = gpu
    if "cpu" in variants:
        artifacts["cpu"] = _resolve_cpu(requirements, target, gpu, choice, cpu_source, constraints, resolve_options)
    return VariantLock(choice, artifacts)


def _cuda_constraints(matrix: CudaMatrix, cuda: str | None, cudnn: str | None, python_version: str) -> list[str]:
    """'torch!=2.5.1,!=…' for every known release built for another CUDA/cuDNN (or not for this Python)."""
    constraints = []
    for framework in FRAMEWORKS:
        unfit = [b.version for b in matrix.releases(framework) if not _fits(b, cuda, cudnn, python_version)]
        if unfit:
            constraints.append(framework + ",".join(f"!={version}" for version in unfit))
    return constraints


def _resolve_cpu(requirements: Sequence[str], target: Target, gpu: list[Artifact], choice: CudaChoice,
                 cpu_source: CpuWheelSource | None, constraints: Sequence[str], options: dict) -> list[Artifact]:
    if not any(is_gpu_package(a.name) for a in gpu) and not choice.framework("tensorflow"):
        return gpu  # nothing CUDA in it: the same closure serves both variants
    options = dict(options)
    versions = {a.name: a.version for a in gpu}
    inputs = variant_inputs(requirements, versions, choice, "cpu", target.arch, cpu_source)
    cpu_builds = {Requirement(c).name for c in inputs.constraints}
    # Same versions as the GPU closure for everything but the CPU builds and the CUDA wheels.
    same = [f"{a.name}=={a.version}" for a in gpu if not is_gpu_package(a.name) and a.name not in cpu_builds]
    try:
        cpu = resolve_requirements(
            inputs.requirements, target, constraints=[*constraints, *same, *inputs.constraints],
            extra_index_urls=[*options.pop("extra_index_urls", ()), *inputs.extra_index_urls],
            find_links=[*options.pop("find_links", ()), *inputs.find_links], **options)
    except CogbuildError as exc:
        missing = _missing_cpu_build(inputs, cpu_source or CpuWheelSource(), target)
        if missing:
            raise CogbuildError(missing) from exc
        raise
    check_cpu_closure(cpu)
    return cpu


def _missing_cpu_build(inputs: VariantInputs, source: CpuWheelSource, target: Target) -> str | None:
    """Why the CPU source cannot serve a pinned CPU build (unreachable, or no such file), if so."""
    from .pyresolve.index import IndexClient

    where = " and ".join([*inputs.extra_index_urls, *inputs.find_links]) or "no CPU wheel source"
    advice = "point COGBUILD_CPU_INDEX_URL or COGBUILD_CPU_FIND_LINKS at CPU builds"
    with IndexClient() as client:
        for constraint in inputs.constraints:
            requirement = Requirement(constraint)
            build = next(iter(requirement.specifier)).version
            files = []
            try:
                for index_url in inputs.extra_index_urls:
                    files += client.project_files(index_url, requirement.name) or []
            except CogbuildError:
                return (f"The CPU variant needs {requirement.name} {build} from {where}, which could not be "
                        f"reached; {advice}.")
            files += [f for location in inputs.find_links for f in client.find_links_files(location)]
            prefix = f"{requirement.name.replace('-', '_')}-{build}-"
            if not any(f.filename.startswith(prefix) and f.filename.endswith(".whl") for f in files):
                return f"The CPU variant needs {requirement.name} {build}, which {where} does not offer; {advice}."
    return None


def split_gpu_wheels(artifacts: Iterable[Artifact]) -> tuple[list[Artifact], list[Artifact]]:
    """(GPU-only wheels, the rest): the GPU ones go into the CUDA layer of the gpu variant."""
    gpu: list[Artifact] = []
    rest: list[Artifact] = []
    for artifact in artifacts:
        (gpu if is_gpu_package(artifact.name) else rest).append(artifact)
    return gpu, rest


def check_cpu_closure(artifacts: Iterable[Artifact]) -> None:
    """The CPU variant must not carry CUDA: name the GPU wheel and what pulled it in."""
    for artifact in artifacts:
        if is_gpu_package(artifact.name):
            via = ", ".join(artifact.required_by) or "the requirements"
            raise CogbuildError(f"The CPU variant still pulls the GPU wheel {artifact.name} (via {via}); give the "
                                "framework a CPU wheel source (COGBUILD_CPU_INDEX_URL or COGBUILD_CPU_FIND_LINKS).")
