"""build.run in cog.lock: one record per step and image, its digest kept across re-locks, checked by --check."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cogbuild.cli import cli
from cogbuild.config import load_config
from cogbuild.errors import CogbuildError, UsageError
from cogbuild.lock import BuiltWheel, Lock, loads, dumps, run_records, write_lock
from cogbuild.lockdiff import diff_locks, render
from cogbuild.policy import lock_inputs_digest
from cogbuild.runsteps import parse_secrets
from cogbuild.sandbox import check_can_run

DIGEST = "sha256:" + "ab" * 32
COG_YAML = """build:
  python_version: "3.11"
  run:
    - echo one > /etc/one
    - command: cat /run/secrets/t > /dev/null
      mounts:
        - {type: secret, id: t, target: /run/secrets/t}
predict: "predict.py:Predictor"
"""


def model_lock(tmp_path) -> Lock:
    (tmp_path / "cog.yaml").write_text(COG_YAML)
    (tmp_path / "predict.py").write_text("")
    config = load_config(tmp_path / "cog.yaml")
    lock = Lock(lock_inputs_digest(config), "3.11", "bookworm", ["linux/amd64"], ["cpu", "gpu"])
    lock.runs = run_records(config.run, lock.platforms, lock.variants)
    return lock


def test_records_round_trip_without_secret_values(tmp_path):
    lock = model_lock(tmp_path)
    assert [(r.variant, r.step) for r in lock.runs] == [("cpu", 1), ("cpu", 2), ("gpu", 1), ("gpu", 2)]
    lock.runs[1].diff_id = DIGEST
    text = dumps(lock)
    assert 'secrets = [\n    "t:/run/secrets/t",\n]' in text
    again = loads(text)
    assert again.runs == lock.runs
    assert again.unrecorded_runs() == [lock.runs[0], lock.runs[2], lock.runs[3]]


def test_relocking_keeps_the_digest_of_an_unchanged_step_only(tmp_path):
    old = model_lock(tmp_path)
    for record in old.runs:
        record.diff_id = DIGEST
    new = model_lock(tmp_path)
    new.runs[0].command = "echo two > /etc/one"  # step 1 of cpu changed
    new.keep_fixed_outputs(old)
    assert [r.diff_id for r in new.runs] == [None, DIGEST, DIGEST, DIGEST]


def test_lock_check_fails_while_a_step_has_no_digest(tmp_path):
    lock = model_lock(tmp_path)
    write_lock(lock, tmp_path / "cog.lock")
    missing = CliRunner().invoke(cli, ["lock", "--check", str(tmp_path)])
    assert missing.exit_code == 1
    assert "records no output digest for build.run step 1 (linux/amd64, cpu); run `cogbuild build`" in \
        missing.output
    for record in lock.runs:
        record.diff_id = DIGEST
    write_lock(lock, tmp_path / "cog.lock")
    assert CliRunner().invoke(cli, ["lock", "--check", str(tmp_path)]).exit_code == 0


def test_a_malformed_digest_is_named(tmp_path):
    text = dumps(model_lock(tmp_path)).replace('step = 2\n', 'step = 2\ndiff-id = "md5:00"\n', 1)
    with pytest.raises(UsageError, match="the diff-id of build.run step 2 is not sha256"):
        loads(text)


def test_secrets_use_buildx_spelling(tmp_path):
    token = tmp_path / "token"
    token.write_text("x")
    assert parse_secrets([f"id=hf,src={token}", f"id=pip,source={token}"]) == {"hf": token, "pip": token}
    with pytest.raises(UsageError, match="must look like id=NAME,src=FILE"):
        parse_secrets([f"name=hf,src={token}"])
    with pytest.raises(UsageError, match="--secret hf: .* is not a readable file"):
        parse_secrets([f"id=hf,src={tmp_path / 'absent'}"])


def test_another_architecture_gets_one_sentence(monkeypatch):
    monkeypatch.setattr("cogbuild.sandbox.HOST_ARCH", "amd64")
    monkeypatch.setattr("cogbuild.sandbox.BINFMT", Path("/nonexistent"))
    with pytest.raises(CogbuildError, match=r"build.run steps for linux/arm64 cannot run on this amd64 host: "
                                            r"no qemu-aarch64 binfmt handler"):
        check_can_run("arm64", "linux/arm64")
    check_can_run("amd64", "linux/amd64")


def test_a_registered_fix_binary_qemu_handler_lets_steps_run(monkeypatch, tmp_path):
    monkeypatch.setattr("cogbuild.sandbox.HOST_ARCH", "amd64")
    monkeypatch.setattr("cogbuild.sandbox.BINFMT", tmp_path)
    handler = tmp_path / "qemu-aarch64"
    handler.write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POC\noffset 0\n")
    with pytest.raises(CogbuildError, match="fix-binary flag"):
        check_can_run("arm64", "linux/arm64")  # without F the interpreter is not reachable from the sandbox
    handler.write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\n")
    check_can_run("arm64", "linux/arm64")


def test_lock_diff_shows_a_step_whose_output_changed(tmp_path):
    old, new = model_lock(tmp_path), model_lock(tmp_path)
    old.runs[0].diff_id = DIGEST
    new.runs[0].diff_id = "sha256:" + "cd" * 32
    assert render(diff_locks(old, new)).splitlines()[0] == \
        "changed  linux/amd64 cpu build.run step 1  sha256:abababababab -> sha256:cdcdcdcdcdcd  (+0.00 MB)"


def test_lock_diff_shows_a_wheel_built_from_an_sdist_whose_output_changed(tmp_path):
    old, new = model_lock(tmp_path), model_lock(tmp_path)
    for lock, sha256 in ((old, "ab" * 32), (new, "cd" * 32)):
        lock.wheel_builds = [BuiltWheel("linux/amd64", "gputil", "1.4.0", "ef" * 32, "GPUtil-1.4.0-py3-none-any.whl",
                                        sha256, 7000)]
    assert render(diff_locks(old, new)).splitlines()[0] == \
        "changed  linux/amd64 wheel-build gputil 1.4.0  sha256:abababababab -> sha256:cdcdcdcdcdcd  (+0.00 MB)"
    new.wheel_builds[0].sha256 = None  # a fresh lock: the wheel is not built yet
    assert "sha256:abababababab -> not built yet" in render(diff_locks(old, new))
