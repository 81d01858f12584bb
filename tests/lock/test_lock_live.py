"""`cogbuild lock` against the real archives: Debian for the OS, PyPI for wheels, per target platform."""

from __future__ import annotations


import pytest

from cogbuild.lock import read_lock

pytestmark = pytest.mark.network


def test_lock_pins_debs_and_wheels_for_each_platform(tmp_path, monkeypatch):
    monkeypatch.setenv("COGBUILD_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cog.yaml").write_text('build:\n  python_version: "3.11"\n  python_packages: ["numpy==2.2.0"]\n'
                                       '  system_packages: ["libgomp1"]\npredict: "predict.py:Predictor"\n')
    (tmp_path / "predict.py").write_text("")
    from click.testing import CliRunner

    from cogbuild.cli import cli

    result = CliRunner().invoke(cli, ["lock", "--platform", "linux/amd64,linux/arm64", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lock = read_lock(tmp_path / "cog.lock")
    assert lock.platforms == ["linux/amd64", "linux/arm64"] and lock.debian_suite == "bookworm"
    for platform, arch, machine in (("linux/amd64", "amd64", "x86_64"), ("linux/arm64", "arm64", "aarch64")):
        os_debs = {a.name: a for a in lock.select(platform, "cpu", "os")}
        assert {"python3.11", "libc6", "libstdc++6", "ca-certificates"} <= set(os_debs)
        assert os_debs["libc6"].filename.endswith(f"_{arch}.deb")
        system = {a.name for a in lock.select(platform, "cpu", "system")}
        assert "libgomp1" in system and not system & set(os_debs), "system layer holds only what is new"
        numpy = next(a for a in lock.select(platform, "cpu", "python") if a.name == "numpy")
        assert numpy.version == "2.2.0" and "cp311" in numpy.filename and machine in numpy.filename
        assert len(numpy.sha256) == 64 and numpy.size > 1_000_000
        runtime = {a.name for a in lock.select(platform, "cpu", "runtime")}
        assert {"aiohttp", "multidict", "yarl"} <= runtime
    # Locking again from the same inputs changes nothing: the file is byte-for-byte stable.
    before = (tmp_path / "cog.lock").read_bytes()
    again = CliRunner().invoke(cli, ["lock", "--platform", "linux/amd64,linux/arm64", str(tmp_path)])
    assert again.exit_code == 0 and "no changes" in again.output
    assert (tmp_path / "cog.lock").read_bytes() == before
