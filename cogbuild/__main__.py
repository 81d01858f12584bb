"""`python -m cogbuild` and the `cogbuild` console script.

Ctrl-C and SIGTERM are taken over before the CLI's modules load: a signal during those imports is
otherwise easily lost (see interrupts.py) and the command would run on as if never stopped.
"""

from .interrupts import exit_interrupted, install


def main() -> None:
    install()
    try:
        from .cli import main as run_cli
    except KeyboardInterrupt:  # stopped while loading: nothing to clean up yet
        exit_interrupted()
    run_cli()


if __name__ == "__main__":
    main()
