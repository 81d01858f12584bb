"""wheels_for_lockfile and export_requirements against the local wheel index."""

from __future__ import annotations

from pathlib import Path

import pytest
from wheelindex import sha256_of

from cogbuild.errors import CogbuildError
from cogbuild.pyresolve import Target, export_requirements, resolve_requirements, wheels_for_lockfile

X86 = Target("3.11", "x86_64", "2.36")
ARM = Target("3.11", "aarch64", "2.36")


def hashes(wheel_dir: Path, prefix: str, exclude: str = "") -> str:
    chosen = [p for p in sorted(wheel_dir.iterdir())
              if p.name.startswith(prefix) and not (exclude and exclude in p.name)]
    return " ".join(f"--hash=sha256:{sha256_of(p)}" for p in chosen)


def write_lock(tmp_path: Path, index_url: str, body: str) -> Path:
    path = tmp_path / "requirements.lock"
    path.write_text(f"--index-url {index_url}\n{body}")
    return path


def test_one_best_wheel_per_pin_for_each_target(tmp_path, simple_url, wheel_dir):
    lock = write_lock(tmp_path, simple_url,
                      f"fastmath==1.0 \\\n    {hashes(wheel_dir, 'fastmath-')}\n    # via\n    #   -r requirements.in\n"
                      f"stable==1.0 {hashes(wheel_dir, 'stable-')}\n    # via fastmath\n")
    x86 = wheels_for_lockfile(lock, X86)
    assert [a.filename for a in x86] == ["fastmath-1.0-cp311-cp311-manylinux_2_28_x86_64.whl",
                                          "stable-1.0-cp38-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"]
    assert [a.required_by for a in x86] == [("request",), ("fastmath",)]
    arm = wheels_for_lockfile(lock, ARM)
    assert [a.filename for a in arm] == ["fastmath-1.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
                                          "stable-1.0-py3-none-any.whl"]
    for artifact in x86 + arm:
        assert artifact.sha256 == sha256_of(wheel_dir / artifact.filename)
        assert artifact.size == (wheel_dir / artifact.filename).stat().st_size


def test_only_hashed_files_are_candidates(tmp_path, simple_url, wheel_dir):
    lock = write_lock(tmp_path, simple_url, f"fastmath==1.0 {hashes(wheel_dir, 'fastmath-', exclude='2_28')}\n")
    assert [a.filename for a in wheels_for_lockfile(lock, X86)] == [
        "fastmath-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"]


def test_no_hashed_wheel_for_the_target_is_an_error(tmp_path, simple_url, wheel_dir):
    lock = write_lock(tmp_path, simple_url, f"x86only==1.0 {hashes(wheel_dir, 'x86only-')}\n")
    with pytest.raises(CogbuildError, match="pins x86only==1.0, but none of its hashed files is a wheel for "
                                            r"CPython 3.11 on linux/aarch64"):
        wheels_for_lockfile(lock, ARM)


def test_markers_skip_pins_for_other_targets(tmp_path, simple_url, wheel_dir):
    lock = write_lock(tmp_path, simple_url,
                      f'helper==1.0 ; platform_machine == "x86_64" {hashes(wheel_dir, "helper-1.0")}\n'
                      f'oldpy==1.0 ; python_version < "3.12" {hashes(wheel_dir, "oldpy-")}\n')
    assert [a.name for a in wheels_for_lockfile(lock, ARM)] == ["oldpy"]
    assert [a.name for a in wheels_for_lockfile(lock, Target("3.13", "x86_64"))] == ["helper"]


@pytest.mark.parametrize("body, message", [
    ("helper>=1 --hash=sha256:" + "a" * 64 + "\n", "not pinned to one version"),
    ("helper==1.0\n", "has no --hash"),
    ("helper==1.0 ; nonsense marker\n", "not valid PEP 508"),
    ("-r more-pins.txt\n", "must pin every package itself"),
])
def test_unpinned_or_unhashed_lines_are_refused(tmp_path, simple_url, body, message):
    with pytest.raises(CogbuildError, match=message):
        wheels_for_lockfile(write_lock(tmp_path, simple_url, body), X86)


def test_missing_lockfile_is_one_sentence(tmp_path):
    with pytest.raises(CogbuildError, match="Could not read the lockfile"):
        wheels_for_lockfile(tmp_path / "absent.txt", X86)


def test_export_round_trips_through_wheels_for_lockfile(tmp_path, simple_url):
    artifacts = resolve_requirements(["purelib", "fastmath", "markers"], X86, index_url=simple_url)
    text = export_requirements(artifacts)
    assert "purelib==1.0 \\\n    --hash=sha256:" in text
    assert "    # via purelib\n" in text
    lock = write_lock(tmp_path, simple_url, text)
    assert wheels_for_lockfile(lock, X86) == artifacts
    assert [a.required_by for a in wheels_for_lockfile(lock, X86)] == [a.required_by for a in artifacts]


def test_export_merges_the_hashes_of_several_targets(simple_url):
    both = resolve_requirements(["fastmath"], X86, index_url=simple_url) + \
        resolve_requirements(["fastmath"], ARM, index_url=simple_url)
    text = export_requirements(both)
    assert text.count("fastmath==1.0") == 1 and text.count("--hash=sha256:") == 2


def test_runtime_lockfile_is_well_formed():
    """The committed runtime lockfiles parse, pin and hash every line (offline: no index is read)."""
    from cogbuild.pyresolve import reqfile

    root = Path(__file__).resolve().parents[2] / "lockfiles"
    for version in ("3.11", "3.13", "3.14"):
        parsed = reqfile.parse((root / f"runtime-py{version}.txt").read_text())
        names = {line.text.split("==")[0] for line in parsed.requirements}
        assert "aiohttp" in names and all(line.hashes for line in parsed.requirements)
        assert all("==" in line.text for line in parsed.requirements)


def test_target_validation():
    with pytest.raises(CogbuildError, match="Architecture 'arm64'"):
        Target("3.11", "arm64")
    with pytest.raises(CogbuildError, match="Python version"):
        Target("311", "x86_64")


def test_exported_lock_installs_with_pip_require_hashes(tmp_path, simple_url):
    """The export is what pip itself accepts: install it for real (pure wheels) with hashes required."""
    import subprocess
    import sys

    artifacts = resolve_requirements(["purelib", "markers"], X86, index_url=simple_url)
    lock = write_lock(tmp_path, simple_url, export_requirements(artifacts))
    subprocess.run([sys.executable, "-m", "pip", "install", "--isolated", "--quiet", "--no-deps",
                    "--disable-pip-version-check", "--require-hashes", "--target", str(tmp_path / "site"),
                    "-r", str(lock)], check=True)
    installed = sorted(p.name for p in (tmp_path / "site").glob("*.dist-info"))
    assert installed == [f"{a.name}-{a.version}.dist-info" for a in artifacts]


def test_command_line_prints_the_lock(tmp_path, simple_url, capsys):
    from cogbuild.pyresolve.__main__ import main

    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"--index-url {simple_url}\nfastmath\n")
    assert main([str(requirements), "--arch", "aarch64"]) == 0
    assert "fastmath==1.0 \\\n    --hash=sha256:" in capsys.readouterr().out
    requirements.write_text(f"--index-url {simple_url}\nx86only\n")
    assert main([str(requirements), "--arch", "aarch64"]) == 1
    assert "x86only 1.0 has no wheel for CPython 3.11 on linux/aarch64" in capsys.readouterr().err
