"""The answers given before click loads (cogbuild/fast_path.py) are the CLI's answers: the same stdout,
stderr and exit code as the click command for the same command line, in the cases the fast path answers
and in those it hands on; a command line it does not fully understand goes to click as it came."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli_helpers import Run, cogbuild
from cogbuild.fast_path import CommandLine, answer, parse
from fixtures_lock import model_with_empty_lock

CLICK_ONLY = "from cogbuild.cli import main; main()"  # the CLI without the fast path in front


def through_click(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Run:
    done = subprocess.run([sys.executable, "-c", CLICK_ONLY, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    return Run(done.returncode, done.stdout, done.stderr)


def same_answer(args: list[str], cwd: Path, env: dict[str, str]) -> Run:
    fast, slow = cogbuild(args, cwd, env), through_click(args, cwd, env)
    assert (fast.code, fast.out, fast.err) == (slow.code, slow.out, slow.err)
    return fast


@pytest.mark.parametrize("argv, line", [
    (["lock", "--check"], CommandLine("lock", False)),
    (["-q", "--debug", "lock", "--check"], CommandLine("lock", True)),
    (["push", "r.example/m:v1"], CommandLine("push", False, "r.example/m:v1")),
    (["--quiet", "push", "--insecure", "r/m:v1"], CommandLine("push", True, "r/m:v1", True)),
    (["push", "r/m:v1", "--insecure"], CommandLine("push", False, "r/m:v1", True)),
    (["push"], CommandLine("push", False)),
    (["lock", "models/a", "--check"], CommandLine("lock", False, "models/a")),
])
def test_reads_only_the_quick_command_lines(argv, line):
    assert parse(argv) == line


@pytest.mark.parametrize("argv", [
    [], ["--help"], ["--version"], ["lock"], ["lock", "--check", "a", "b"], ["lock", "--check", "-f", "x.yaml"],
    ["lock", "--check", "--help"], ["lock", "--check", "--check"], ["push", "--help"], ["push", "r/m:v1", "--help"],
    ["push", "-f", "cog.yaml", "r/m:v1"], ["push", "r/m:v1", "--compression", "zstd"], ["push", "a", "b"],
    ["push", "--insecure", "--insecure", "r/m:v1"], ["push", "--", "r/m:v1"], ["-qq", "push", "r/m:v1"],
    ["build", "."], ["-v", "lock", "--check"],
])
def test_anything_else_goes_to_click(argv):
    assert parse(argv) is None
    assert answer(argv) is False


@pytest.mark.parametrize("flags", [[], ["-q"]])
def test_lock_check_on_a_current_lock_answers_as_click_does(tmp_path, flags, monkeypatch, capsys):
    model = model_with_empty_lock(tmp_path)
    run = same_answer([*flags, "lock", "--check"], model, env=None)
    assert run.code == 0 and "up to date" in run.out
    assert ("warning:" in run.err) is not bool(flags)  # the fixture's cog.yaml uses the deprecated predict:
    monkeypatch.chdir(model)
    assert answer([*flags, "lock", "--check"])  # answered here, not handed on
    assert capsys.readouterr().out == run.out


def test_lock_check_of_another_directory_answers_as_click_does(tmp_path, monkeypatch, capsys):
    (tmp_path / "model").mkdir()
    model_with_empty_lock(tmp_path / "model")
    run = same_answer(["lock", "model", "--check"], tmp_path, env=None)
    assert run.code == 0 and "cog.lock is up to date" in run.out
    monkeypatch.chdir(tmp_path)
    assert answer(["lock", "model", "--check"])
    assert capsys.readouterr().out == run.out


def test_a_stale_lock_is_reported_by_click_once(tmp_path, monkeypatch, capsys):
    model = model_with_empty_lock(tmp_path)
    (model / "cog.yaml").write_text((model / "cog.yaml").read_text().replace('"3.11"', '"3.12"'))
    run = same_answer(["lock", "--check"], model, env=None)
    assert run.code == 1 and "stale" in run.err and run.err.count("warning:") == 1
    monkeypatch.chdir(model)
    assert answer(["lock", "--check"]) is False
    assert capsys.readouterr() == ("", "")  # nothing printed before handing on


@pytest.mark.e2e
def test_an_unchanged_push_answers_as_click_does(pushed_model, monkeypatch, capsys):
    run = same_answer(["push", pushed_model.ref], pushed_model.model, pushed_model.env)
    assert run.code == 0 and run.out == pushed_model.first.out
    for name, value in pushed_model.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(pushed_model.model)
    assert answer(["push", pushed_model.ref])  # answered here, not handed on
    assert capsys.readouterr().out == run.out


@pytest.mark.e2e
def test_a_changed_model_is_handed_to_click(pushed_model, monkeypatch):
    (pushed_model.model / "helper.py").write_text("CHANGED = True\n")
    for name, value in pushed_model.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(pushed_model.model)
    assert answer(["push", pushed_model.ref]) is False
    changed = pushed_model.push()
    assert changed.code == 0 and changed.out != pushed_model.first.out
