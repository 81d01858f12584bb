"""`cogbuild lock` against the real archives: Debian for the OS, PyPI for wheels, per target platform."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cogbuild.cli import cli
from cogbuild.lock import read_lock

pytestmark = pytest.mark.network


def lock_model(model: Path, build: str, *options: str) -> str:
    """Write a model whose cog.yaml has the `build:` lines given, run `cogbuild lock`; its output."""
    (model / "cog.yaml").write_text(f'build:\n{build}predict: "predict.py:Predictor"\n')
    (model / "predict.py").write_text("")
    result = CliRunner().invoke(cli, ["lock", *options, str(model)])
    assert result.exit_code == 0, result.output
    return result.output


def test_lock_pins_debs_and_wheels_for_each_platform(tmp_path, monkeypatch):
    monkeypatch.setenv("COGBUILD_CACHE", str(tmp_path / "cache"))
    lock_model(tmp_path, '  python_version: "3.11"\n  python_packages: ["numpy==2.2.0"]\n'
                         '  system_packages: ["libgomp1"]\n', "--platform", "linux/amd64,linux/arm64")
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


def test_two_hosts_with_different_pip_configurations_write_the_same_lock(tmp_path, monkeypatch):
    """Pins of the runtime's own packages at other versions lock as asked, whatever pip.conf a host has."""
    from click.testing import CliRunner

    from cogbuild.cli import cli

    monkeypatch.setenv("COGBUILD_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "cog.yaml").write_text('build:\n  python_version: "3.11"\n  python_requirements: requirements.txt\n'
                                    'predict: "predict.py:Predictor"\n')
    (model / "requirements.txt").write_text("aiohttp==3.9.5\nidna==3.10\n")
    (model / "predict.py").write_text("")
    hosts = {
        # As this machine's /etc/xdg/pip/pip.conf: a constraint (here the runtime's idna) and another index.
        "site": ("XDG_CONFIG_DIRS", "[global]\nconstraint = {dir}/constraints.txt\n"
                                    "index-url = http://127.0.0.1:9/simple/\n", "idna==3.20\n"),
        "env": ("PIP_CONFIG_FILE", "[global]\nconstraint = {dir}/constraints.txt\nno-binary = :all:\n",
                "aiohttp<3.9\n"),
    }
    locks = {}
    for host, (variable, conf, constraints) in hosts.items():
        folder = tmp_path / host
        (folder / "pip").mkdir(parents=True)
        (folder / "constraints.txt").write_text(constraints)
        (folder / "pip" / "pip.conf").write_text(conf.format(dir=folder))
        monkeypatch.setenv(variable, str(folder if variable == "XDG_CONFIG_DIRS" else folder / "pip" / "pip.conf"))
        monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
        result = CliRunner().invoke(cli, ["lock", str(model)])
        assert result.exit_code == 0, result.output
        locks[host] = (model / "cog.lock").read_bytes()
        (model / "cog.lock").unlink()
        monkeypatch.delenv(variable)
    assert locks["site"] == locks["env"]
    (model / "cog.lock").write_bytes(locks["site"])
    python = {a.name: a.version for a in read_lock(model / "cog.lock").select("linux/amd64", "cpu", "python")}
    assert python["aiohttp"] == "3.9.5" and python["idna"] == "3.10"


def test_a_standalone_python_locks_on_trixie_and_the_switch_sticks(tmp_path, monkeypatch):
    """'3.12' locks python-build-standalone's newest 3.12 from the shipped data, for both architectures, with
    wheels for cp312 and trixie's glibc; `--python-from standalone` is kept when locking again."""
    monkeypatch.setenv("COGBUILD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("COGBUILD_PYTHON_PROVIDER", raising=False)
    lock_model(tmp_path, '  python_version: "3.12"\n  python_packages: ["numpy==2.2.0"]\n',
               "--platform", "linux/amd64,linux/arm64")
    lock = read_lock(tmp_path / "cog.lock")
    assert (lock.python_provider, lock.debian_suite) == ("standalone", "trixie")
    for platform, machine in (("linux/amd64", "x86_64"), ("linux/arm64", "aarch64")):
        [cpython] = lock.select(platform, "cpu", "interpreter")
        assert cpython.version.startswith("3.12.") and f"-{machine}-unknown-linux-gnu-" in cpython.url
        os_debs = {a.name: a for a in lock.select(platform, "cpu", "os")}
        assert "libc6" in os_debs and "python3.12" not in os_debs and os_debs["libc6"].version.startswith("2.41")
        numpy = next(a for a in lock.select(platform, "cpu", "python") if a.name == "numpy")
        assert "cp312" in numpy.filename and machine in numpy.filename
    # The switch: Debian's 3.13 unless told otherwise, and once told, re-locking keeps it.
    forced = lock_model(tmp_path, '  python_version: "3.13"\n', "--python-from", "standalone")
    assert "Python linux/amd64: 3.12." in forced and "-> 3.13." in forced
    lock_model(tmp_path, '  python_version: "3.13"\n  python_packages: ["six"]\n')
    lock = read_lock(tmp_path / "cog.lock")
    assert (lock.python_from, lock.python_provider) == ("standalone", "standalone")
    assert lock.select("linux/amd64", "cpu", "interpreter")[0].version.startswith("3.13.")
