"""Live resolution against PyPI (marked network): real wheels, real sizes, both architectures."""

from __future__ import annotations

import pytest

from cogbuild.pyresolve import Target, resolve_requirements, wheels_for_lockfile
from pathlib import Path

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
