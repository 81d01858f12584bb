"""Inspect a closure by hand: `python -m cogbuild.debian [--suite S] [--arch A] [--json] PACKAGE...`."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from ..errors import CogbuildError
from . import ARCHITECTURES, DebianSource, resolve_closure
from .source import DEBIAN_KEYRING


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cogbuild.debian", description=__doc__)
    parser.add_argument("packages", nargs="+")
    parser.add_argument("--suite", default="bookworm")
    parser.add_argument("--arch", default="amd64", choices=ARCHITECTURES)
    parser.add_argument("--exclude", action="append", default=["debconf", "debconf-2.0"])
    parser.add_argument("--json", action="store_true", help="print the artifacts as JSON")
    parser.add_argument("--mirror", help="one archive URL instead of Debian's three (release, updates, security)")
    parser.add_argument("--keyring", type=Path, default=DEBIAN_KEYRING)
    parser.add_argument("--cache-dir", type=Path, required=True, help="where verified indexes are kept")
    args = parser.parse_args(argv)
    if args.mirror:
        source = DebianSource.single(args.mirror, keyring=args.keyring)
    else:
        source = DebianSource(keyring=args.keyring)
    try:
        debs = resolve_closure(args.packages, suite=args.suite, arch=args.arch, exclude=args.exclude, source=source,
                               cache_root=args.cache_dir)  # fmt: skip
    except CogbuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps([asdict(deb) for deb in debs], indent=2))
        return 0
    for deb in debs:
        print(f"{deb.name:32} {deb.version:28} {deb.size:>10}  {', '.join(deb.required_by)}")
    print(f"{len(debs)} packages, {sum(deb.size for deb in debs) / 1e6:.1f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
