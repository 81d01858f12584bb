"""One error family: usage (exit 2), the work or the environment (exit 1, with what to do), bugs (exit 70).

The CLI lists no error roots: whatever derives from layers.errors.CogbuildError is a sentence, whatever
the machine or network raised is an EnvironmentFailure, anything else is a bug.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli_helpers import cogbuild, isolated_env, one_line_error
from cogbuild import settings
from cogbuild.cli import cli, sentence
from cogbuild.environment import as_environment_failure
from cogbuild.errors import CogbuildError, CogUsageError, EnvironmentFailure, UsageError
from cogbuild.layers.deb import DebError
from cogbuild.layers.standalone import TarballError
from cogbuild.layers.tarball import SourceChanged, layer_bytes
from cogbuild.settings import Settings
from cogbuild.layers.tree import Tree, TreeError
from cogbuild.layers.wheel import WheelError
from cogbuild.registry.archive import ArchiveError
from cogbuild.registry.client import RegistryError
from cogbuild.registry.errors import InvalidReference, OCIError
from cogbuild.registry.layout import LayoutError
from fixtures_lock import model_with_empty_lock

REPO = Path(__file__).resolve().parents[2]
PREDICTOR = "from cog import BasePredictor\n\nclass Predictor(BasePredictor):\n    def predict(self) -> str:\n" \
            "        return 'x'\n"


def test_every_package_raises_the_one_family():
    for kind in (TreeError, WheelError, DebError, TarballError, SourceChanged, OCIError, LayoutError, ArchiveError,
                 RegistryError, InvalidReference, EnvironmentFailure):
        assert issubclass(kind, CogbuildError), kind
    assert issubclass(InvalidReference, UsageError) and InvalidReference("x").exit_code == 2
    assert issubclass(TreeError, ValueError)  # layers/ callers that catch ValueError still do


@pytest.mark.parametrize("raised, code, message", [
    (TreeError("path 'x' escapes the image root"), 1, "error: path 'x' escapes the image root"),
    (UsageError("The flag is wrong."), 2, "error: the flag is wrong"),
    (CogUsageError("Must use one of --json or --input."), 2, "error: Must use one of --json or --input."),
    (ConnectionError("reset by peer"), 1, "error: a network request failed (ConnectionError: reset by peer); "
                                          "check the network"),
    (OSError(errno.ENOSPC, "No space left on device", "/store/blob"), 1,
     "error: no space left to write /store/blob; free some space"),
    (KeyError("bug"), 70, "error: internal error (KeyError: 'bug'); rerun with --debug"),
])
def test_the_cli_sorts_failures_by_family(monkeypatch, raised, code, message):
    def describe(*args):
        raise raised

    monkeypatch.setattr("cogbuild.commands.show._describe", describe)
    result = CliRunner().invoke(cli, ["show", "anything"])
    assert result.exit_code == code
    assert result.output.startswith(message) and result.output.count("\n") == 1, result.output


def test_one_message_style():
    assert sentence("Could not fetch http://x: HTTP 404.") == "could not fetch http://x: HTTP 404"
    assert sentence("Debian bookworm carries Python 3.11.2.") == "Debian bookworm carries Python 3.11.2"
    assert sentence("SOURCE_DATE_EPOCH must be a whole number") == "SOURCE_DATE_EPOCH must be a whole number"
    assert sentence("waiting...") == "waiting..."


def test_other_errors_are_not_environment_failures():
    assert as_environment_failure(ValueError("x")) is None
    assert as_environment_failure(FileNotFoundError(errno.ENOENT, "gone", "/x")) is None


@pytest.mark.parametrize("value", ["yesterday", "-1", "1.5", "²"])
def test_a_bad_source_date_epoch_is_a_usage_error(value):
    read = Settings.from_environ({"SOURCE_DATE_EPOCH": value})  # reading the environment accepts any text
    with pytest.raises(UsageError, match=f"^SOURCE_DATE_EPOCH must be a whole number of seconds since 1970, "
                                         f"not {re.escape(repr(value))}$"):
        read.source_date_epoch()


def test_source_date_epoch_default_and_value():
    assert Settings.from_environ({}).source_date_epoch() == 0
    assert Settings.from_environ({"SOURCE_DATE_EPOCH": ""}).source_date_epoch() == 0
    assert Settings.from_environ({"SOURCE_DATE_EPOCH": " 1700000000 "}).source_date_epoch() == 1700000000


@pytest.mark.parametrize("command, variable, value, message", [
    ("build", "SOURCE_DATE_EPOCH", "tomorrow",
     "SOURCE_DATE_EPOCH must be a whole number of seconds since 1970, not 'tomorrow'"),
    ("predict", "COGBUILD_READY_TIMEOUT", "soon",  # before the model's server is started
     "COGBUILD_READY_TIMEOUT must be a positive number of seconds, not 'soon'"),
])
def test_a_malformed_variable_is_a_usage_error_naming_it(tmp_path, command, variable, value, message):
    (tmp_path / "model").mkdir()
    model = model_with_empty_lock(tmp_path / "model")
    (model / "predict.py").write_text(PREDICTOR)
    run = cogbuild([command], model, isolated_env(tmp_path, **{variable: value}))
    assert run.code == 2
    assert one_line_error(run) == message


def test_a_file_that_changes_while_its_layer_is_written_is_named(tmp_path):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"0123456789")
    tree = Tree()
    tree.add_host_file("src/weights.bin", weights, 0o644, 10)
    weights.write_bytes(b"01234")  # the file shrank after it was collected
    with pytest.raises(SourceChanged, match=f"^{re.escape(str(weights))} changed size while the layer was being "
                                            "written; build again once nothing writes to it$"):
        layer_bytes(tree)


def test_every_variable_read_is_in_the_settings_table_and_the_docs():
    read = set()
    for folder in ("cogbuild", "layers", "registry"):
        for path in (REPO / folder).rglob("*.py"):
            read |= set(re.findall(r"\bCOGBUILD_[A-Z_]+[A-Z]\b", path.read_text()))
    assert read - set(settings.VARIABLES) == set()
    docs = (REPO / "docs" / "cli.md").read_text()
    assert [name for name in settings.VARIABLES if name not in docs] == []
    assert all(name in settings.help_text() for name in settings.VARIABLES)
