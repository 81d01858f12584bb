"""Live resolution against PyPI (marked network): real wheels, real sizes, both architectures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from components import unavailable

from cogbuild.cuda import CpuWheelSource, choose_cuda, gpu_wheels, resolve_variants, split_gpu_wheels
from cogbuild.pyresolve import Target, reqfile, resolve_requirements, wheels_for_lockfile

pytestmark = pytest.mark.network


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_requests_and_numpy_for_cp311(arch):
    artifacts = resolve_requirements(["requests", "numpy"], Target("3.11", arch))
    by_name = {a.name: a for a in artifacts}
    assert {"requests", "numpy", "urllib3", "idna", "certifi", "charset-normalizer"} <= set(by_name)
    numpy = by_name["numpy"]
    assert "-cp311-cp311-" in numpy.filename and f"_{arch}" in numpy.filename
    assert numpy.url.startswith("https://files.pythonhosted.org/") and numpy.size > 1_000_000
    assert by_name["urllib3"].required_by == ("requests",) and numpy.required_by == ("request",)
    assert all(len(a.sha256) == 64 for a in artifacts)


def test_runtime_lockfile_has_a_wheel_for_every_supported_target():
    root = Path(__file__).resolve().parents[2] / "lockfiles"
    for version in ("3.11", "3.13", "3.14"):
        for arch in ("x86_64", "aarch64"):
            artifacts = wheels_for_lockfile(root / f"runtime-py{version}.txt", Target(version, arch))
            assert "aiohttp" in {a.name for a in artifacts}
            assert all(a.filename.endswith(".whl") for a in artifacts)


@pytest.mark.parametrize("version", ["3.11", "3.13", "3.14"])
@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_runtime_lockfile_matches_a_resolution_for_the_target(version, arch):
    """The lockfile names exactly what pip resolves for that Python (markers included); this checks the
    3.14 file, compiled on 3.13 with target options, against a resolution evaluated for 3.14."""
    root = Path(__file__).resolve().parents[2]
    lockfile = root / "lockfiles" / f"runtime-py{version}.txt"
    pins = [line.text for line in reqfile.parse(lockfile.read_text()).requirements]
    target = Target(version, arch)
    resolved = resolve_requirements((root / "runtime" / "requirements.in").read_text().splitlines(), target,
                                    constraints=pins)
    locked = wheels_for_lockfile(lockfile, target)
    assert [(a.name, a.version) for a in resolved] == [(a.name, a.version) for a in locked]
    assert [a.sha256 for a in resolved] == [a.sha256 for a in locked]


def cpu_torch_wheels() -> str:
    """Where a CPU build of torch 2.13.0 for cp311 x86_64 lives (PyTorch's CPU index is not reachable here)."""
    location = os.environ.get("COGBUILD_CPU_FIND_LINKS", "/opt/wheels")
    if not list(Path(location).glob("torch-2.13.0+cpu-cp311-*x86_64.whl")):
        unavailable(f"no torch 2.13.0+cpu wheel in {location} (set COGBUILD_CPU_FIND_LINKS)")
    return location


def test_torch_gpu_variant_carries_cuda_and_cpu_variant_does_not():
    location = cpu_torch_wheels()
    lock = resolve_variants(["torch==2.13.0"], Target("3.11", "x86_64"),
                            cpu_source=CpuWheelSource(index_url=None, find_links=(location,)))
    assert lock.choice.cuda == "13.0"
    gpu_only, gpu_rest = split_gpu_wheels(lock.artifacts["gpu"])
    assert {a.name for a in gpu_only} >= {"nvidia-cudnn-cu13", "triton"}
    assert sum(a.size for a in gpu_only) > 1_000_000_000
    cpu = {a.name: a for a in lock.artifacts["cpu"]}
    assert cpu["torch"].version == "2.13.0+cpu" and cpu["torch"].url.startswith("file://")
    assert {a.name: a.version for a in gpu_rest if a.name != "torch"} == \
        {name: a.version for name, a in cpu.items() if name != "torch"}


def test_nvidia_wheel_set_of_torch_2_5_1():
    choice = choose_cuda({"torch": "2.5.1"}, cuda="12.4", cudnn="9", python_version="3.11")
    wheels = {a.name: a for a in gpu_wheels(choice, Target("3.11", "x86_64"))}
    assert wheels["nvidia-cudnn-cu12"].version == "9.1.0.70"
    assert wheels["nvidia-cuda-runtime-cu12"].version == "12.4.127"
    assert all(a.filename.endswith("x86_64.whl") or a.filename.endswith("any.whl") for a in wheels.values())
    assert gpu_wheels(choice, Target("3.11", "aarch64")) == []
