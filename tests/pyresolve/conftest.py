"""Fixtures for pyresolve: a wheel index built and served on 127.0.0.1 for the whole session."""

from __future__ import annotations

import pytest
from wheelindex import Dist, WheelIndex, build_sdist, build_wheel

X86_2_17 = "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"

FIXTURE_DISTS = [
    Dist("purelib", "1.0", requires=["helper>=1"]),
    Dist("helper", "1.0"),
    Dist("helper", "2.0"),
    # manylinux levels: the image's glibc (2.36) rules out 2_39, prefers 2_28 over 2_17.
    Dist("fastmath", "1.0", X86_2_17),
    Dist("fastmath", "1.0", "cp311-cp311-manylinux_2_28_x86_64"),
    Dist("fastmath", "1.0", "cp311-cp311-manylinux_2_39_x86_64"),
    Dist("fastmath", "1.0", "cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64"),
    Dist("fastmath", "1.0", "cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64"),
    Dist("fastmath", "1.0", "cp311-cp311-macosx_11_0_arm64"),
    Dist("fastmath", "1.0", "cp311-cp311-linux_x86_64"),
    # abi3 beats the pure-Python fallback for any CPython >= 3.8.
    Dist("stable", "1.0", "cp38-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64"),
    Dist("stable", "1.0", "py3-none-any"),
    Dist("x86only", "1.0", X86_2_17),
    # Markers must be evaluated for the image, not for the host running the tests.
    Dist("markers", "1.0", requires=['x86dep; platform_machine == "x86_64"',
                                     'armdep; platform_machine == "aarch64"',
                                     'oldpy; python_version < "3.12"']),
    Dist("x86dep", "1.0"),
    Dist("armdep", "1.0"),
    Dist("oldpy", "1.0"),
    Dist("withextra", "1.0", requires=['helper<2; extra == "more"']),
    Dist("newpy", "1.0", requires_python=">=3.13"),
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "network: needs PyPI (pypi.org, files.pythonhosted.org)")


@pytest.fixture(autouse=True, params=["uv", "pip"])
def lock_resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs twice: uv resolving wherever it may (pip for the rest), and pip alone (as with
    COGBUILD_LOCK_RESOLVER=pip, which the CLI passes down as uv=False). Same answers."""
    if request.param == "pip":
        monkeypatch.setattr("cogbuild.pyresolve.resolve.usable_uv", lambda target: None)
    return request.param


@pytest.fixture(scope="session")
def wheel_dir(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("wheels")
    for dist in FIXTURE_DISTS:
        build_wheel(directory, dist)
    build_sdist(directory, "srconly", "1.0")
    # PEP 643: dependencies declared statically, so usable without building; and a dynamic one.
    build_sdist(directory, "staticsrc", "1.0", "2.2", requires=("helper<2",))
    build_sdist(directory, "staticsrc", "0.9", "2.2")
    build_sdist(directory, "dynsrc", "1.0", "2.2", requires=("helper",), dynamic=("Requires-Dist",))
    return directory


@pytest.fixture(scope="session")
def index(wheel_dir):
    server = WheelIndex(wheel_dir)
    yield server
    server.close()


@pytest.fixture
def simple_url(index) -> str:
    return index.url + "/simple/"
