"""choose_cuda against a small matrix built here and against the shipped one; the CPU/GPU variants
resolved from the local wheel index (a fake CUDA torch on the index, its +cpu build in find-links)."""

from __future__ import annotations

import json

import pytest
from wheelindex import Dist, build_wheel

from cogbuild.cuda import (
    CpuWheelSource,
    CudaMatrix,
    check_cpu_closure,
    choose_cuda,
    resolve_variants,
    split_gpu_wheels,
    variant_inputs,
)
from cogbuild.errors import CogbuildError
from cogbuild.pyresolve import Target, resolve_requirements
from cogbuild.resolve import LockSources
from cogbuild.settings import Settings


def row(cuda, cudnn, python, x86=(), arm=()):
    return {"cuda": cuda, "cudnn": cudnn, "python": python, "arches": ["aarch64", "x86_64"],
            "gpu_requirements": {"x86_64": list(x86), "aarch64": list(arm)}}


MATRIX = CudaMatrix({"frameworks": {
    "torch": {
        "2.0.1": row("11.7", "8.5", ["3.10", "3.11"], ["nvidia-cublas-cu11==11.10.3.66"]),
        "2.3.1": row("12.1", "8.9", ["3.10", "3.11", "3.12"], ["nvidia-cublas-cu12==12.1.3.1"]),
        "2.5.1": row("12.4", "9.1", ["3.11", "3.12", "3.13"], ["nvidia-cublas-cu12==12.4.5.8", "triton==3.1.0"]),
    },
    "tensorflow": {
        "2.14.0": row("11.8", "8.7", ["3.10", "3.11"]),
        "2.16.1": row("12.3", "8.9", ["3.10", "3.11", "3.12"]),
    },
}})


def test_framework_pin_decides_cuda_and_cudnn():
    choice = choose_cuda({"torch": "2.5.1", "numpy": "2.0"}, python_version="3.11", matrix=MATRIX)
    assert (choice.cuda, choice.cudnn) == ("12.4", "9.1")
    assert choice.gpu_requirements("x86_64") == ["nvidia-cublas-cu12==12.4.5.8", "triton==3.1.0"]
    assert choice.gpu_requirements("aarch64") == []


def test_specifier_picks_the_newest_release_that_fits_cuda_and_python():
    assert choose_cuda({"torch": ">=2.0"}, cuda="12.1", matrix=MATRIX).framework("torch").version == "2.3.1"
    assert choose_cuda({"torch": ""}, cuda="11", matrix=MATRIX).framework("torch").version == "2.0.1"
    assert choose_cuda({"torch": "2.5.1+cu124"}, matrix=MATRIX).framework("torch").version == "2.5.1"


def test_cuda_mismatch_names_both_versions_and_what_works():
    with pytest.raises(CogbuildError) as error:
        choose_cuda({"torch": "2.5.1"}, cuda="12.1", matrix=MATRIX)
    assert str(error.value) == ("torch 2.5.1 is built for CUDA 12.4, not CUDA 12.1; set cuda to 12.4 "
                                "or pin torch 2.3.1, built for CUDA 12.1.")


def test_cudnn_and_python_mismatches():
    with pytest.raises(CogbuildError, match=r"torch 2.5.1 is built for cuDNN 9.1, not cuDNN 8; .*torch 2.0.1–2.3.1"):
        choose_cuda({"torch": "2.5.1"}, cudnn="8", matrix=MATRIX)
    with pytest.raises(CogbuildError, match=r"torch 2.0.1 has no wheels for Python 3.13 .* pin torch 2.5.1\.$"):
        choose_cuda({"torch": "2.0.1"}, python_version="3.13", matrix=MATRIX)


def test_frameworks_on_different_cuda_majors_conflict():
    with pytest.raises(CogbuildError, match="tensorflow 2.14.0 needs CUDA 11.8 but torch 2.5.1 needs CUDA 12.4"):
        choose_cuda({"torch": "2.5.1", "tensorflow": "2.14.0"}, matrix=MATRIX)
    assert choose_cuda({"torch": "2.3.1", "tensorflow": "2.16.1"}, matrix=MATRIX).cuda == "12.3"


def test_no_framework():
    assert choose_cuda({}, matrix=MATRIX).cuda is None
    assert choose_cuda({}, cuda="12.4", cudnn="9", matrix=MATRIX).cuda == "12.4"
    with pytest.raises(CogbuildError, match="cudnn 9 is set without cuda"):
        choose_cuda({}, cudnn="9", matrix=MATRIX)
    with pytest.raises(CogbuildError, match="not in cogbuild's CUDA matrix"):
        choose_cuda({"torch": "9.9"}, matrix=MATRIX)
    with pytest.raises(CogbuildError, match="neither a version nor a version specifier"):
        choose_cuda({"torch": "latest please"}, matrix=MATRIX)


def test_shipped_matrix_facts():
    """Facts read from PyPI's torch and tensorflow METADATA by scripts/regen-cuda-matrix."""
    shipped = choose_cuda({"torch": "2.5.1"})
    assert (shipped.cuda, shipped.cudnn) == ("12.4", "9.1")
    assert "nvidia-cudnn-cu12==9.1.0.70" in shipped.gpu_requirements("x86_64")
    assert choose_cuda({"torch": "2.0.1"}).cuda == "11.7"
    assert choose_cuda({"tensorflow": "2.16.1"}).cuda == "12.3"


def test_matrix_file_round_trip(tmp_path):
    path = tmp_path / "matrix.json"
    path.write_text(json.dumps({"frameworks": {"torch": {"2.5.1": row("12.4", "9.1", ["3.11"])}}}))
    assert CudaMatrix.load(path).releases("torch")[0].cuda == "12.4"


def test_cpu_source_is_configurable_from_the_environment():
    def cpu_source(environ):
        return LockSources.from_settings(Settings.from_environ(environ)).cpu

    assert cpu_source({}).index_url == "https://download.pytorch.org/whl/cpu"
    local = cpu_source({"COGBUILD_CPU_FIND_LINKS": "/opt/wheels"})
    assert (local.index_url, local.find_links) == (None, ("/opt/wheels",))
    mirror = cpu_source({"COGBUILD_CPU_INDEX_URL": "https://mirror.example/cpu", "COGBUILD_CPU_FIND_LINKS": "/w"})
    assert (mirror.index_url, mirror.find_links) == ("https://mirror.example/cpu", ("/w",))


def test_tensorflow_gets_and_cuda_only_in_the_gpu_variant():
    choice = choose_cuda({"tensorflow": "2.16.1"}, matrix=MATRIX)
    gpu = variant_inputs(["tensorflow==2.16.1", "pillow"], {}, choice, "gpu", "x86_64")
    cpu = variant_inputs(["tensorflow[and-cuda]==2.16.1"], {}, choice, "cpu", "x86_64")
    assert gpu.requirements == ["tensorflow[and-cuda]==2.16.1", "pillow"]
    assert cpu.requirements == ["tensorflow==2.16.1"] and cpu.constraints == []


@pytest.fixture(scope="module")
def cuda_index(tmp_path_factory):
    from wheelindex import WheelIndex

    pypi = tmp_path_factory.mktemp("pypi")
    cpu_wheels = tmp_path_factory.mktemp("cpu-wheels")
    build_wheel(pypi, Dist("torch", "2.5.1", requires=['nvidia-cublas-cu12==12.4.5.8; platform_machine == "x86_64"',
                                                       'triton==3.1.0; platform_machine == "x86_64"', "filelock"]))
    build_wheel(pypi, Dist("nvidia_cublas_cu12", "12.4.5.8", "py3-none-manylinux2014_x86_64"))
    build_wheel(pypi, Dist("triton", "3.1.0", "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"))
    build_wheel(pypi, Dist("filelock", "3.0"))
    build_wheel(cpu_wheels, Dist("torch", "2.5.1+cpu", requires=["filelock"]))
    server = WheelIndex(pypi)
    yield server.url + "/simple/", cpu_wheels
    server.close()


def test_gpu_and_cpu_variants_resolve_apart(cuda_index):
    simple_url, cpu_wheels = cuda_index
    target = Target("3.11", "x86_64")
    gpu = resolve_requirements(["torch==2.5.1"], target, index_url=simple_url)
    gpu_only, rest = split_gpu_wheels(gpu)
    assert [a.name for a in gpu_only] == ["nvidia-cublas-cu12", "triton"]
    assert [a.name for a in rest] == ["filelock", "torch"]
    with pytest.raises(CogbuildError, match="CPU variant still pulls the GPU wheel nvidia-cublas-cu12 \\(via torch\\)"):
        check_cpu_closure(gpu)

    choice = choose_cuda({"torch": "2.5.1"}, matrix=MATRIX)
    source = CpuWheelSource(index_url=None, find_links=(str(cpu_wheels),))
    inputs = variant_inputs(["torch==2.5.1"], {"torch": "2.5.1", "filelock": "3.0"}, choice, "cpu", "x86_64", source)
    assert inputs.constraints == ["torch==2.5.1+cpu"]
    cpu = resolve_requirements(inputs.requirements, target, index_url=simple_url, constraints=inputs.constraints,
                               extra_index_urls=inputs.extra_index_urls, find_links=inputs.find_links)
    check_cpu_closure(cpu)
    assert {a.name: a.version for a in cpu} == {"filelock": "3.0", "torch": "2.5.1+cpu"}
    torch = {a.name: a for a in cpu}["torch"]
    assert torch.filename == "torch-2.5.1+cpu-py3-none-any.whl"
    assert torch.size == (cpu_wheels / torch.filename).stat().st_size


def test_arm_torch_on_pypi_is_already_the_cpu_build():
    choice = choose_cuda({"torch": "2.5.1"}, matrix=MATRIX)
    inputs = variant_inputs(["torch==2.5.1"], {"torch": "2.5.1"}, choice, "cpu", "aarch64")
    assert (inputs.constraints, inputs.extra_index_urls, inputs.find_links) == ([], [], [])


def test_resolve_variants_locks_both_closures(cuda_index):
    simple_url, cpu_wheels = cuda_index
    source = CpuWheelSource(index_url=None, find_links=(str(cpu_wheels),))
    lock = resolve_variants(["torch"], Target("3.11", "x86_64"), cpu_source=source, matrix=MATRIX,
                            index_url=simple_url)
    assert (lock.choice.cuda, lock.choice.cudnn) == ("12.4", "9.1")
    gpu = {a.name: a.version for a in lock.artifacts["gpu"]}
    cpu = {a.name: a.version for a in lock.artifacts["cpu"]}
    assert gpu == {"filelock": "3.0", "nvidia-cublas-cu12": "12.4.5.8", "torch": "2.5.1", "triton": "3.1.0"}
    assert cpu == {"filelock": "3.0", "torch": "2.5.1+cpu"}


def test_resolve_variants_names_a_cuda_the_locked_framework_was_not_built_for(cuda_index):
    simple_url, cpu_wheels = cuda_index
    with pytest.raises(CogbuildError, match=r"torch 2.5.1 is built for CUDA 12.4, not CUDA 12.1; set cuda to 12.4 "
                                            r"or pin torch 2.3.1, built for CUDA 12.1."):
        resolve_variants(["torch"], Target("3.11", "x86_64"), cuda="12.1", matrix=MATRIX, index_url=simple_url)


def test_resolve_variants_without_cuda_shares_one_closure(simple_url):
    lock = resolve_variants(["purelib"], Target("3.11", "aarch64"), matrix=MATRIX, index_url=simple_url)
    assert lock.choice.cuda is None
    assert lock.artifacts["cpu"] == lock.artifacts["gpu"] and [a.name for a in lock.artifacts["cpu"]] == [
        "helper", "purelib"]


def test_cpu_source_without_the_build_is_named(cuda_index, tmp_path):
    simple_url, _ = cuda_index
    empty = CpuWheelSource(index_url=None, find_links=(str(tmp_path),))
    with pytest.raises(CogbuildError, match=rf"needs torch 2.5.1\+cpu, which {tmp_path} does not offer; point "
                                            "COGBUILD_CPU_INDEX_URL or COGBUILD_CPU_FIND_LINKS"):
        resolve_variants(["torch"], Target("3.11", "x86_64"), cpu_source=empty, matrix=MATRIX, index_url=simple_url)
    unreachable = CpuWheelSource(index_url="http://127.0.0.1:9/simple/")
    with pytest.raises(CogbuildError, match=r"needs torch 2.5.1\+cpu from http://127.0.0.1:9/simple/, which could "
                                            "not be reached"):
        resolve_variants(["torch"], Target("3.11", "x86_64"), cpu_source=unreachable, matrix=MATRIX,
                         index_url=simple_url)
