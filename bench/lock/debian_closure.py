"""Benchmark: cogbuild's Debian closure vs apt (the named peer), side by side in one run.

    .venv/bin/python bench/lock/debian_closure.py [--arch amd64] [--suite bookworm] [PACKAGE ...]
    .venv/bin/python bench/lock/debian_closure.py --quick    # one small closure: checks the bench still runs

Both sides start from nothing (cold: fetch, verify and parse the indexes, then resolve) and then run again
with their indexes in place (warm). apt runs with a private configuration: an empty dpkg status (a bare
image, like ours), the same three archives, Recommends off, so `apt-get install --simulate` lists the
whole closure. The two closures are compared by name and version, then timings printed as ratios.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cogbuild.debian import forget_parsed_indexes, resolve_closure
from cogbuild.debian.source import DEBIAN_KEYRING, DEBIAN_MIRROR, DEBIAN_SECURITY

EXCLUDE = ("debconf", "debconf-2.0")


def ours(packages: list[str], suite: str, arch: str, cache: Path) -> tuple[float, dict[str, str]]:
    start = time.perf_counter()
    debs = resolve_closure(packages, suite=suite, arch=arch, exclude=EXCLUDE, cache_root=cache)
    return time.perf_counter() - start, {deb.name: deb.version for deb in debs}


def apt_config(root: Path, suite: str, arch: str) -> dict[str, str]:
    """A self-contained apt: its own lists, cache, sources and an empty dpkg status."""
    for directory in ("lists/partial", "cache/archives/partial", "etc/apt.conf.d", "etc/preferences.d",
                      "etc/sources.list.d", "log"):  # fmt: skip
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "status").write_text("")
    signed = f"[signed-by={DEBIAN_KEYRING}]"
    (root / "etc/sources.list").write_text(
        f"deb {signed} {DEBIAN_MIRROR} {suite} main\n"
        f"deb {signed} {DEBIAN_MIRROR} {suite}-updates main\n"
        f"deb {signed} {DEBIAN_SECURITY} {suite}-security main\n"
    )
    (root / "apt.conf").write_text(
        f'Dir::State "{root}";\nDir::State::Lists "{root}/lists";\nDir::State::status "{root}/status";\n'
        f'Dir::Cache "{root}/cache";\nDir::Etc "{root}/etc";\nDir::Etc::SourceList "{root}/etc/sources.list";\n'
        f'Dir::Etc::SourceParts "{root}/etc/sources.list.d";\nDir::Etc::Parts "{root}/etc/apt.conf.d";\n'
        f'Dir::Etc::PreferencesParts "{root}/etc/preferences.d";\nDir::Log "{root}/log";\n'
        f'APT::Architecture "{arch}";\nAPT::Architectures {{ "{arch}"; }};\nAPT::Install-Recommends "false";\n'
        'Acquire::Languages "none";\nAcquire::IndexTargets::deb::Contents-deb::DefaultEnabled "false";\n'
    )
    return dict(os.environ, APT_CONFIG=str(root / "apt.conf"), DEBIAN_FRONTEND="noninteractive")


def apt(packages: list[str], env: dict[str, str], *, update: bool) -> tuple[float, dict[str, str]]:
    start = time.perf_counter()
    if update:
        subprocess.run(["apt-get", "-qq", "update"], env=env, check=True, capture_output=True)
    result = subprocess.run(["apt-get", "install", "--simulate", "-q", *packages], env=env, check=True,
                            capture_output=True, text=True)  # fmt: skip
    elapsed = time.perf_counter() - start
    # "Inst libc6 (2.36-9+deb12u13 Debian:12.11/oldstable [amd64])"
    closure = dict(re.findall(r"^Inst (\S+) \((\S+)", result.stdout, re.MULTILINE))
    return elapsed, closure


def compare(our_closure: dict[str, str], apt_closure: dict[str, str]) -> None:
    only_ours = sorted(set(our_closure) - set(apt_closure))
    only_apt = sorted(set(apt_closure) - set(our_closure))
    versions = sorted(n for n in set(our_closure) & set(apt_closure) if our_closure[n] != apt_closure[n])
    print(f"closure: ours {len(our_closure)} packages, apt {len(apt_closure)}")
    print(f"  only ours: {' '.join(only_ours) or '-'}")
    print(f"  only apt (debconf is excluded on purpose): {' '.join(only_apt) or '-'}")
    print(f"  different versions: {' '.join(versions) or '-'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="bookworm")
    parser.add_argument("--arch", default="amd64", choices=["amd64", "arm64"])
    parser.add_argument("packages", nargs="*", default=["python3.11", "ffmpeg"])
    parser.add_argument("--quick", action="store_true", help="the closure of `zlib1g` only (the index fetch stays)")
    args = parser.parse_args()
    if args.quick:
        args.packages = ["zlib1g"]
    if shutil.which("apt-get") is None:
        print("apt-get is not installed: no peer to compare against", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="cogbuild-bench-") as tmp:
        cache, env = Path(tmp, "ours"), apt_config(Path(tmp, "apt"), args.suite, args.arch)
        our_cold, our_closure = ours(args.packages, args.suite, args.arch, cache)
        apt_cold, apt_closure = apt(args.packages, env, update=True)
        forget_parsed_indexes()  # warm = indexes on disk, not parsed in memory (a new `cogbuild lock`)
        our_warm, _ = ours(args.packages, args.suite, args.arch, cache)
        apt_warm, _ = apt(args.packages, env, update=False)
    print(f"{' '.join(args.packages)} on {args.suite}/{args.arch}")
    compare(our_closure, apt_closure)
    print(f"{'':22}{'cogbuild':>10}{'apt':>10}{'ours/apt':>10}")
    print(f"{'cold (fetch+resolve)':22}{our_cold:>9.2f}s{apt_cold:>9.2f}s{our_cold / apt_cold:>10.2f}")
    print(f"{'warm (indexes cached)':22}{our_warm:>9.2f}s{apt_warm:>9.2f}s{our_warm / apt_warm:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
