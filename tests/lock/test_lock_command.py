"""`cogbuild lock --check` and `--diff` on locks the tests write (no network needed)."""

from __future__ import annotations

import hashlib

from click.testing import CliRunner

from cogbuild.artifacts import Artifact
from cogbuild.cli import cli
from cogbuild.config import load_config
from cogbuild.lock import Lock, LockedArtifact, write_lock
from cogbuild.policy import lock_inputs_digest


def wheel(name: str, version: str, size: int) -> Artifact:
    sha = hashlib.sha256(f"{name}{version}".encode()).hexdigest()
    return Artifact("wheel", name, version, f"{name}-{version}-py3-none-any.whl", f"https://example.invalid/{name}",
                    sha, size, ("request",))


def make_model(tmp_path, packages: list[Artifact]):
    (tmp_path / "cog.yaml").write_text('build:\n  python_version: "3.11"\npredict: "predict.py:Predictor"\n')
    (tmp_path / "predict.py").write_text("")
    config = load_config(tmp_path / "cog.yaml")
    lock = Lock(lock_inputs_digest(config), "3.11", "bookworm", ["linux/amd64"], ["cpu"],
                [LockedArtifact("linux/amd64", "python", a, ("cpu",)) for a in packages])
    write_lock(lock, tmp_path / "cog.lock")
    return lock


def test_check_passes_for_a_current_lock_and_fails_once_cog_yaml_changes(tmp_path):
    make_model(tmp_path, [wheel("numpy", "2.2.0", 1000)])
    ok = CliRunner().invoke(cli, ["lock", "--check", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    (tmp_path / "cog.yaml").write_text('build:\n  python_version: "3.11"\n  python_packages: ["rich"]\n'
                                       'predict: "predict.py:Predictor"\n')
    stale = CliRunner().invoke(cli, ["lock", "--check", str(tmp_path)])
    assert stale.exit_code == 1
    assert "cog.lock is stale" in stale.output and "cogbuild lock" in stale.output


def test_check_without_a_lock_says_so(tmp_path):
    (tmp_path / "cog.yaml").write_text('predict: "predict.py:Predictor"\n')
    (tmp_path / "predict.py").write_text("")
    result = CliRunner().invoke(cli, ["lock", "--check", str(tmp_path)])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_diff_reports_added_removed_and_changed_with_sizes(tmp_path):
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    old_dir.mkdir(), new_dir.mkdir()
    make_model(old_dir, [wheel("numpy", "2.2.0", 1_000_000), wheel("six", "1.16.0", 10_000)])
    make_model(new_dir, [wheel("numpy", "2.3.0", 1_500_000), wheel("rich", "15.0.0", 200_000)])
    text = CliRunner().invoke(cli, ["lock", "--diff", str(old_dir / "cog.lock"), str(new_dir)])
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert any(line.startswith("changed") and "numpy  2.2.0 -> 2.3.0  (+0.50 MB)" in line for line in lines)
    assert any(line.startswith("added") and "rich" in line for line in lines)
    assert any(line.startswith("removed") and "six" in line for line in lines)
    assert lines[-1] == "3 changes, +0.69 MB in total"
    markdown = CliRunner().invoke(cli, ["lock", "--diff", str(old_dir / "cog.lock"), "--format", "markdown",
                                        str(new_dir)])
    assert "| changed | `linux/amd64 python numpy` | 2.2.0 | 2.3.0 | +0.50 MB |" in markdown.output


def test_a_hand_broken_lock_names_the_line(tmp_path):
    make_model(tmp_path, [wheel("numpy", "2.2.0", 1000)])
    path = tmp_path / "cog.lock"
    path.write_text(path.read_text().replace("size = 1000", 'size = "a lot"'))
    result = CliRunner().invoke(cli, ["lock", "--check", str(tmp_path)])
    assert result.exit_code == 2
    assert "cog.lock line" in result.output and "package entry is incomplete or malformed" in result.output


def test_diff_shows_an_interpreter_change_first(tmp_path):
    """Debian's 3.11 to a standalone 3.12: one line per platform says which Python, then the packages."""
    def deb(name: str, version: str) -> Artifact:
        sha = hashlib.sha256(f"{name}{version}".encode()).hexdigest()
        return Artifact("deb", name, version, f"{name}_{version}_amd64.deb", f"https://deb.invalid/{name}", sha,
                        5_000_000, ("python3.11",))

    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    old_dir.mkdir(), new_dir.mkdir()
    old = make_model(old_dir, [])
    old.packages.append(LockedArtifact("linux/amd64", "os", deb("python3.11", "3.11.2-6+deb12u6"), ("cpu",)))
    write_lock(old, old_dir / "cog.lock")
    new = make_model(new_dir, [])
    new.python_version, new.debian_suite, new.python_provider = "3.12", "trixie", "standalone"
    cpython = Artifact("python-tarball", "cpython", "3.12.14", "cpython-3.12.14-x86_64.tar.gz",
                       "https://example.invalid/cpython.tar.gz", "c" * 64, 0, ("python_version",))
    new.packages.append(LockedArtifact("linux/amd64", "interpreter", cpython, ("cpu",)))
    write_lock(new, new_dir / "cog.lock")
    text = CliRunner().invoke(cli, ["lock", "--diff", str(old_dir / "cog.lock"), str(new_dir)])
    assert text.exit_code == 0, text.output
    lines = [line for line in text.output.splitlines() if not line.startswith("warning:")]
    assert lines[0] == "Python linux/amd64: 3.11.2 (Debian bookworm) -> 3.12.14 (standalone)"
    assert any(line.startswith("added") and "interpreter cpython  - -> 3.12.14" in line for line in lines)
    assert any(line.startswith("removed") and "os python3.11" in line for line in lines)
    markdown = CliRunner().invoke(cli, ["lock", "--diff", str(old_dir / "cog.lock"), "--format", "markdown",
                                        str(new_dir)])
    assert "\n**Python linux/amd64**: 3.11.2 (Debian bookworm) → 3.12.14 (standalone)\n\n| change |" in \
        "\n" + markdown.output


def test_the_python_switch_is_kept_in_the_lock(tmp_path):
    lock = make_model(tmp_path, [])
    text = (tmp_path / "cog.lock").read_text()
    assert 'python-provider = "debian"' in text and 'python-from = "auto"' in text
    lock.python_from = "standalone"
    write_lock(lock, tmp_path / "cog.lock")
    from cogbuild.lock import read_lock

    assert read_lock(tmp_path / "cog.lock").python_from == "standalone"
    # A lock from before the switch existed reads as auto, with the provider its packages show.
    old = text.replace('python-provider = "debian"\n', "").replace('python-from = "auto"\n', "")
    (tmp_path / "cog.lock").write_text(old)
    assert (read_lock(tmp_path / "cog.lock").python_from, read_lock(tmp_path / "cog.lock").python_provider) == \
        ("auto", "debian")
    bad = CliRunner().invoke(cli, ["lock", "--python-from", "conda", str(tmp_path)])
    assert bad.exit_code == 2 and "conda" in bad.output
    (tmp_path / "cog.lock").write_text(text.replace('python-from = "auto"', 'python-from = "conda"'))
    edited = CliRunner().invoke(cli, ["lock", "--check", str(tmp_path)])
    assert edited.exit_code == 2
    assert "cog.lock has python-from = 'conda', not one of auto, debian, standalone" in edited.output
