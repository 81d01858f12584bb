"""Ctrl-C and SIGTERM handling (cogbuild/interrupts.py), each case in a Python process of its own so the
signal handlers never touch pytest's."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from cli_helpers import REPO

PRELUDE = """\
import os, signal, socket, sys
from cogbuild.interrupts import exit_interrupted, install, shielded
install()
"""


def run_script(body: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body)], cwd=REPO, capture_output=True,
                          text=True, timeout=60, **options)


def test_an_interrupt_lost_in_a_finalizer_is_delivered_again():
    # The handler runs inside __del__, whose exceptions Python reports as ignored: without a second
    # delivery the recv below would wait forever (here: until the test's timeout).
    done = run_script("""
        class Finalized:
            def __del__(self):
                signal.raise_signal(signal.SIGINT)
        Finalized()
        print("lost", flush=True)
        waiting, _other_end = socket.socketpair()
        try:
            waiting.recv(1)
        except KeyboardInterrupt:
            exit_interrupted()
    """)
    assert done.stdout == "lost\n", done.stderr
    assert "Exception ignored" in done.stderr and "KeyboardInterrupt" in done.stderr
    assert done.returncode == 130, done.stderr
    assert done.stderr.rstrip().endswith("interrupted")


def test_a_signal_during_shielded_cleanup_waits_until_it_is_done():
    done = run_script("""
        try:
            try:
                signal.raise_signal(signal.SIGINT)
            finally:
                with shielded():
                    signal.raise_signal(signal.SIGINT)  # a second Ctrl-C
                    print("cleanup finished", flush=True)
        except KeyboardInterrupt:
            exit_interrupted()
    """)
    assert done.stdout == "cleanup finished\n", done.stderr
    assert done.returncode == 130


def test_sigterm_stops_like_ctrl_c():
    done = run_script("""
        try:
            signal.raise_signal(signal.SIGTERM)
            print("not stopped", flush=True)
        except KeyboardInterrupt:
            exit_interrupted()
    """)
    assert done.stdout == ""
    assert done.returncode == 130


def test_an_ignored_sigint_stays_ignored():
    """A background job of a shell ignores Ctrl-C: cogbuild must not take it back."""
    done = run_script("""
        signal.raise_signal(signal.SIGINT)
        print("still running", flush=True)
    """, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "still running\n"
