"""Suite-wide settings.

Property and fuzz tests (hypothesis, schemathesis) explore at random on a developer's machine, where a new
counterexample is welcome; under CI they replay the same examples every run, so a submission is judged by
its code, not by the luck of the draw.
"""

import os
import signal
from pathlib import Path

import pytest
from hypothesis import settings

# A suite started as a background job of a non-interactive shell (`scripts/test &`, many CI runners)
# inherits SIGINT ignored, and so would every cogbuild it starts: cogbuild rightly keeps an ignored Ctrl-C
# ignored, so the Ctrl-C tests would see nothing. They test what a user at a terminal gets; a handler set
# here is reset to the default in each child at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Settings a developer may have exported that change what an in-process test sees (timestamps, tracebacks,
# waits); a test that wants one sets it itself. Paths (COGBUILD_CACHE, COGBUILD_STORE) stay with the
# suites' own fixtures, which choose per test or per session what may be shared.
UNSET_FOR_TESTS = ("SOURCE_DATE_EPOCH", "COGBUILD_DEBUG", "COGBUILD_READY_TIMEOUT")


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in UNSET_FOR_TESTS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cache_root(tmp_path) -> Path:
    """The cache root a test passes to library functions (the CLI passes Settings.cache_root)."""
    return tmp_path / "cache"
