"""Wheels built from sdists in cog.lock: one [[wheel-build]] per sdist and platform, its digest fixed once
recorded, kept across re-locks while the sdist is the same, and checked by `lock --check`."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cogbuild.artifacts import Artifact
from cogbuild.cli import cli
from cogbuild.config import load_config
from cogbuild.errors import UsageError
from cogbuild.lock import Lock, dumps, loads, locked, wheel_build_records, write_lock
from cogbuild.policy import lock_inputs_digest

SOURCE, WHEEL = "12" * 32, "34" * 32
SDIST = Artifact("sdist", "gputil", "1.4.0", "GPUtil-1.4.0.tar.gz", "https://files.example/GPUtil-1.4.0.tar.gz",
                 SOURCE, 5584)
OWN = Artifact("sdist", "own", "0.1.0", "own-0.1.0.tar.gz", "dist/own-0.1.0.tar.gz", "56" * 32, 300)


def model_lock(tmp_path, *sdists: Artifact) -> Lock:
    (tmp_path / "cog.yaml").write_text('build:\n  python_version: "3.11"\npredict: "predict.py:Predictor"\n')
    (tmp_path / "predict.py").write_text("")
    lock = Lock(lock_inputs_digest(load_config(tmp_path / "cog.yaml")), "3.11", "bookworm",
                ["linux/amd64", "linux/arm64"], ["cpu", "gpu"])
    for platform in lock.platforms:
        lock.packages += locked(platform, "python", sdists, lock.variants)
    lock.wheel_builds = wheel_build_records(lock.packages)
    return lock


def test_one_record_per_sdist_and_platform_round_trips(tmp_path):
    lock = model_lock(tmp_path, SDIST, OWN)
    assert [(b.platform, b.name) for b in lock.wheel_builds] == [
        ("linux/amd64", "gputil"), ("linux/amd64", "own"), ("linux/arm64", "gputil"), ("linux/arm64", "own")]
    built = lock.wheel_build("linux/amd64", SOURCE)
    built.filename, built.sha256, built.size = "GPUtil-1.4.0-py3-none-any.whl", WHEEL, 7000
    text = dumps(lock)
    assert 'url = "dist/own-0.1.0.tar.gz"' in text  # a project file is named relative to the project
    again = loads(text)
    assert again.wheel_builds == lock.wheel_builds
    assert [b.describe() for b in again.unrecorded_wheel_builds()] == [
        "own 0.1.0 (linux/amd64)", "gputil 1.4.0 (linux/arm64)", "own 0.1.0 (linux/arm64)"]


def test_relocking_keeps_a_built_wheel_while_its_sdist_is_the_same(tmp_path):
    old = model_lock(tmp_path, SDIST, OWN)
    for built in old.wheel_builds:
        built.filename, built.sha256, built.size = "x-1-py3-none-any.whl", WHEEL, 1
    changed = Artifact("sdist", "own", "0.1.0", "own-0.1.0.tar.gz", "dist/own-0.1.0.tar.gz", "78" * 32, 301)
    new = model_lock(tmp_path, SDIST, changed)
    new.keep_fixed_outputs(old)
    assert {(b.platform, b.name): b.sha256 for b in new.wheel_builds} == {
        ("linux/amd64", "gputil"): WHEEL, ("linux/arm64", "gputil"): WHEEL,
        ("linux/amd64", "own"): None, ("linux/arm64", "own"): None}


def lock_check(lock: Lock, directory) -> tuple[int, str]:
    write_lock(lock, directory / "cog.lock")
    done = CliRunner().invoke(cli, ["lock", "--check", str(directory)])
    return done.exit_code, done.output


def test_lock_check_fails_while_a_wheel_is_not_built(tmp_path):
    lock = model_lock(tmp_path, SDIST)
    code, output = lock_check(lock, tmp_path)
    assert code == 1
    assert "records no built wheel for the sdist of gputil 1.4.0 (linux/amd64); run `cogbuild build`" in output
    for built in lock.wheel_builds[:1]:
        built.filename, built.sha256, built.size = "GPUtil-1.4.0-py3-none-any.whl", WHEEL, 7000
    assert lock_check(lock, tmp_path)[0] == 1  # linux/arm64's is still missing
    for built in lock.wheel_builds:
        built.filename, built.sha256, built.size = "GPUtil-1.4.0-py3-none-any.whl", WHEEL, 7000
    code, output = lock_check(lock, tmp_path)
    assert code == 0 and output.endswith(f"{tmp_path / 'cog.lock'} is up to date\n")


@pytest.mark.parametrize("edit", [
    ('source-sha256 = "' + SOURCE, 'source-sha256 = "nothex'),
    ('sha256 = "' + WHEEL, 'sha256 = "' + WHEEL[:10]),
    ('filename = "GPUtil-1.4.0-py3-none-any.whl"', 'filename = "../evil.whl"'),
])
def test_a_malformed_wheel_build_is_named(tmp_path, edit):
    lock = model_lock(tmp_path, SDIST)
    built = lock.wheel_builds[0]
    built.filename, built.sha256, built.size = "GPUtil-1.4.0-py3-none-any.whl", WHEEL, 7000
    text = dumps(lock)
    assert edit[0] in text
    with pytest.raises(UsageError, match=r"the \[\[wheel-build\]\] entry of gputil 1.4.0 \(linux/amd64\)"):
        loads(text.replace(*edit))


def test_a_project_file_in_the_requirements_is_an_input_of_the_lock(tmp_path):
    (tmp_path / "dist").mkdir()
    source = tmp_path / "dist" / "own-0.1.0.tar.gz"
    source.write_bytes(b"one")
    (tmp_path / "requirements.txt").write_text("./dist/own-0.1.0.tar.gz\n")
    (tmp_path / "predict.py").write_text("")
    (tmp_path / "cog.yaml").write_text('build:\n  python_version: "3.11"\n  python_requirements: requirements.txt\n'
                                       'predict: "predict.py:Predictor"\n')
    before = lock_inputs_digest(load_config(tmp_path / "cog.yaml"))
    source.write_bytes(b"two")
    assert lock_inputs_digest(load_config(tmp_path / "cog.yaml")) != before


@pytest.mark.parametrize("line, sentence", [
    ("../outside-1.0.tar.gz", "is outside the project directory"),
    ("./dist/missing-1.0.tar.gz", "names a file that does not exist"),
    ("git+https://example.com/repo.git@main", "pin a full 40-character commit"),
])
def test_bad_requirement_lines_exit_2_with_one_sentence_and_no_lock(tmp_path, line, sentence):
    (tmp_path / "requirements.txt").write_text(line + "\n")
    (tmp_path / "predict.py").write_text("")
    (tmp_path / "cog.yaml").write_text('build:\n  python_version: "3.11"\n  python_requirements: requirements.txt\n'
                                       'predict: "predict.py:Predictor"\n')
    done = CliRunner().invoke(cli, ["lock", str(tmp_path)])
    errors = [text for text in done.output.splitlines() if text.startswith("error:")]
    assert done.exit_code == 2 and len(errors) == 1 and sentence in errors[0], done.output
    assert not (tmp_path / "cog.lock").exists()
