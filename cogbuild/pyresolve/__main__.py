"""Lock requirements for an image platform from the shell, for debugging a lock:

    python -m cogbuild.pyresolve requirements.txt [--python 3.11] [--arch x86_64|aarch64] [--glibc 2.36]
    python -m cogbuild.pyresolve --lockfile lockfiles/runtime-py3.11.txt --arch aarch64

Prints pip-compile-style requirements with one --hash per project (the file chosen for the target).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import CogbuildError
from . import Target, export_requirements, resolve_requirements, wheels_for_lockfile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cogbuild.pyresolve", description=__doc__.splitlines()[0])
    parser.add_argument("requirements", nargs="?", type=Path, help="a requirements file to resolve")
    parser.add_argument("--lockfile", type=Path, help="pick wheels from a pinned file with --hash lines instead")
    parser.add_argument("--python", default="3.11")
    parser.add_argument("--arch", default="x86_64")
    parser.add_argument("--glibc", default="2.36")
    parser.add_argument("--allow-sdist", action="store_true")
    args = parser.parse_args(argv)
    if (args.requirements is None) == (args.lockfile is None):
        parser.error("give either a requirements file or --lockfile")
    try:
        target = Target(args.python, args.arch, args.glibc)
        if args.lockfile:
            artifacts = wheels_for_lockfile(args.lockfile, target)
        else:
            lines = args.requirements.read_text().splitlines()
            artifacts = resolve_requirements(lines, target, allow_sdist=args.allow_sdist)
    except (CogbuildError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(export_requirements(artifacts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
