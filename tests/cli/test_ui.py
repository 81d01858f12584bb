"""Progress output: rich on a terminal, plain single lines in a log, nothing with --quiet."""

from __future__ import annotations

import threading

import click
import pytest

from cogbuild.ui import blob_progress, progress_printer, spinner, transfer_bar


@pytest.fixture
def quiet_ctx():
    ctx = click.Context(click.Command("x"), obj={"quiet": True})
    with ctx:
        yield ctx


@pytest.fixture
def terminal(monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich treats the stream as a terminal
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TERM", raising=False)


def test_a_log_gets_plain_lines(capsys):
    progress_printer()("locking cog.yaml")
    with spinner("starting the model") as update:
        update("setting up")
        update("ready")
    with blob_progress("pulling x") as transfer:
        transfer("sha256:a", 10, 100)
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "• locking cog.yaml\n• starting the model\n"


def test_quiet_prints_nothing(capsys, quiet_ctx):
    progress_printer(quiet_ctx)("locking")
    with spinner("starting", quiet_ctx) as update:
        update("x")
    with blob_progress("pulling", quiet_ctx) as transfer:
        transfer("sha256:a", 1, 2)
    assert capsys.readouterr() == ("", "")


def test_a_terminal_gets_a_spinner_and_a_bar(capsys, terminal):
    with spinner("starting the model") as update:
        update("setup")
    with blob_progress("pulling x") as transfer:
        threads = [threading.Thread(target=transfer, args=(f"sha256:{i}", 50, 100)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    err = capsys.readouterr().err
    assert "starting the model" in err and "\x1b[" in err
    assert "pulling x" in err


def test_a_bar_that_never_hears_of_bytes_draws_nothing(capsys, terminal):
    with blob_progress("pulling x"):
        pass
    assert capsys.readouterr().err == ""


def test_transfer_bar_in_a_log_is_one_line_with_the_size(capsys):
    with transfer_bar("downloading 57 artifacts", 23_000_000) as advance:
        for _ in range(100):
            advance(230_000)
    assert capsys.readouterr().err == "• downloading 57 artifacts (23.0 MB)\n"


def test_transfer_bar_on_a_terminal_draws_a_bar(capsys, terminal):
    with transfer_bar("downloading", 1000) as advance:
        advance(1000)
    err = capsys.readouterr().err
    assert "downloading" in err and "\x1b[" in err
