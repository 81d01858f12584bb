"""`python -m cogbuild` and the `cogbuild` console script.

Ctrl-C and SIGTERM are taken over before the CLI's modules load: a signal during those imports is
otherwise easily lost (see interrupts.py) and the command would run on as if never stopped.
An unchanged push and `lock --check` on a current lock are answered before click loads (fast_path.py);
every other command line goes to click as it came.
"""

import gc
import sys

from .interrupts import exit_interrupted, install


def main() -> None:
    install()
    try:
        _run()
    finally:
        # The process ends next. Frozen, its objects are left out of the collector's passes at interpreter
        # exit, about 20 ms of `cogbuild --help`'s 0.12 s. Exit handlers and threads end as before.
        gc.freeze()


def _run() -> None:
    try:
        if {"push", "lock"} & set(sys.argv[1:]):  # other commands do not load the fast path at all
            from .fast_path import answer

            if answer(sys.argv[1:]):
                return
        from .cli import main as run_cli
    except KeyboardInterrupt:  # stopped while loading: nothing to clean up yet
        exit_interrupted()
    run_cli()


if __name__ == "__main__":
    main()
