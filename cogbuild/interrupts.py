"""Ctrl-C and SIGTERM end a command promptly, and cleanup that has begun is never cut short.

Python raises KeyboardInterrupt for a signal at whatever bytecode the main thread runs next. When that
is inside a finalizer or a weakref callback (the import system runs some at every import), the exception
is printed as "ignored" and lost, and the main thread goes back to a wait the signal had already broken:
a Ctrl-C during start-up or a prediction then went unnoticed until the model was done. So a signal stays
pending, and is sent to the main thread again every REDELIVER_EVERY seconds, until code that acts on it
calls `take()` or a shielded block raises it itself.

Cleanup runs in `shielded()`: a signal that arrives meanwhile is held and raised when the block ends, so
a second Ctrl-C cannot leave a container or a bundle behind.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import contextmanager
from types import FrameType
from typing import Iterator, NoReturn

REDELIVER_EVERY = 0.5
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODE = 130  # what shells report for a command ended by Ctrl-C


class _State:
    pending = 0  # the stop signal no code has acted on yet (0: none)
    resent = False  # a copy was sent to the main thread and has not arrived yet
    shield_depth = 0
    lock = threading.Lock()  # between taking the signal and sending a copy
    wake = threading.Event()
    redelivery: threading.Thread | None = None


_state = _State()


def install() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt in the main thread (call from the main thread).

    A signal the parent ignores (a background job's SIGINT) stays ignored."""
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _on_signal)


def take() -> int:
    """Called where a KeyboardInterrupt is acted on: the signal is dealt with, stop sending it again.
    Returns the signal (0 when the interrupt came from elsewhere)."""
    with _state.lock:
        signum, _state.pending = _state.pending, 0
    return signum


def exit_interrupted() -> NoReturn:
    """End the command as stopped by the user (cleanup has already run on the way here)."""
    take()
    print("interrupted", file=sys.stderr, flush=True)
    sys.exit(EXIT_CODE)


@contextmanager
def shielded() -> Iterator[None]:
    """Run the block to its end even if a stop signal arrives; then raise KeyboardInterrupt for a
    signal that arrived during it, or before it and was not taken."""
    _state.shield_depth += 1
    try:
        yield
    finally:
        _state.shield_depth -= 1
    if not _state.shield_depth and take():
        raise KeyboardInterrupt


def _on_signal(signum: int, frame: FrameType | None) -> None:
    late_copy = _state.resent and not _state.pending
    _state.resent = False
    if late_copy:
        return  # sent again just before the interrupt was taken
    _state.pending = signum
    if _state.shield_depth:
        return  # raised when the shielded block ends
    _start_redelivery()
    raise KeyboardInterrupt


def _start_redelivery() -> None:
    if _state.redelivery is None:
        _state.redelivery = threading.Thread(target=_redeliver, args=(threading.main_thread().ident,),
                                             name="cogbuild-interrupts", daemon=True)
        _state.redelivery.start()
    _state.wake.set()


def _redeliver(main_thread: int) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # the kernel must pick the main thread
    while True:
        _state.wake.wait()
        _state.wake.clear()
        while _state.pending:
            time.sleep(REDELIVER_EVERY)
            with _state.lock:
                if _state.pending and not _state.shield_depth:
                    _state.resent = True
                    signal.pthread_kill(main_thread, _state.pending)
