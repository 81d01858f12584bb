#!/usr/bin/env python3
"""Lock a realistic model's Python requirements with cogbuild, pip-compile and uv, in one run.

All three produce hash-pinned wheels for CPython 3.11 on linux/x86_64 from PyPI (network needed). cogbuild
and uv run twice: cold (a fresh cache directory) and warm (the same cache again); pip-compile runs cold
only, as it takes minutes (it downloads files whose hashes it cannot read from the index). Prints wall times and
ratios against cogbuild; asserts nothing about speed.

    .venv/bin/python bench/lock/python_lock.py [--requirements torch transformers pillow numpy]
    .venv/bin/python bench/lock/python_lock.py --quick    # one small package: checks the bench still runs
    .venv/bin/python bench/lock/python_lock.py --no-pip-compile    # cogbuild and uv only: a minute, not half an hour
    .venv/bin/python bench/lock/python_lock.py --no-pip-compile --no-pip-alone --rounds 5 --baseline /tmp/main-copy
        # medians of 5 interleaved rounds, beside another checkout's cogbuild (e.g. `git archive main` unpacked)

What differs: cogbuild resolves for the image (target tags and markers) and records one file per
package with its exact size; pip-compile resolves for this host and lists every file's hash per
package; uv resolves for --python-platform and lists every file's hash too. cogbuild runs uv (the
pinned one) through its loopback proxy for a wheel-only closure, picks one file per package from the
pages uv read, and records the sha256 of every page the resolution read: warm, it fetches those pages
again and runs no resolver while all are unchanged. "cogbuild, pip alone" (COGBUILD_LOCK_RESOLVER=pip)
is the path before uv: pip through the metadata proxy (range requests, fetched ahead in parallel, cached
by wheel hash), needed without PEP 658 metadata files on the index (this mirror has none). pip-compile
downloads each wheel whole; uv uses range requests.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPI = "https://pypi.org/simple"
UV_VERSION = "uv"  # the newest uv from PyPI at bench time; printed below


def clean_env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_CACHE_DIR=str(cache / "pip"), UV_CACHE_DIR=str(cache / "uv"),
               XDG_CACHE_HOME=str(cache))
    cert = os.environ.get("SSL_CERT_FILE")
    if cert:  # pip and pip-compile read REQUESTS_CA_BUNDLE; uv reads SSL_CERT_FILE
        env["SSL_CERT_FILE"] = cert
    return env


def run_cogbuild(requirements: list[str], cache: Path, out: Path, resolver: str = "uv", root: Path | None = None) -> int:
    code = (
        "import sys; from cogbuild.pyresolve import Target, resolve_requirements, export_requirements;"
        # COGBUILD_PIP_PROXY, COGBUILD_LOCK_RESOLVER and the cache root (metadata and uv's resolutions kept
        # across the cold and warm runs, as `cogbuild lock` keeps them), as the CLI reads them
        "from cogbuild.settings import read_environment; s = read_environment();"
        "a = resolve_requirements(sys.argv[1:], Target('3.11', 'x86_64', '2.36'), proxy=s.pip_proxy,"
        " uv=s.lock_resolver_text == 'uv', cache_root=s.cache_root);"
        f"open({str(out)!r}, 'w').write(export_requirements(a)); print(len(a))"
    )
    # pip's cache goes where PIP_CACHE_DIR says only without --isolated; point HOME's cache there too.
    env = clean_env(cache)
    env.update(HOME=str(cache), COGBUILD_CACHE=str(cache / "cogbuild"), COGBUILD_LOCK_RESOLVER=resolver)
    if root is not None:  # another checkout's cogbuild, ahead of this one
        env["PYTHONPATH"] = str(root)
    # Not from this directory: `python -c` puts the working directory ahead of PYTHONPATH on sys.path.
    completed = subprocess.run([sys.executable, "-c", code, *requirements], env=env, capture_output=True, text=True,
                               cwd=out.parent)
    if completed.returncode:
        raise SystemExit(completed.stderr)
    return int(completed.stdout.strip().splitlines()[-1])


def run_pip_compile(requirements: list[str], cache: Path, out: Path) -> int:
    source = out.with_suffix(".in")
    source.write_text("\n".join(requirements) + "\n")
    pip_compile = Path(sys.executable).with_name("pip-compile")
    subprocess.run([str(pip_compile), "--quiet", "--generate-hashes", "--allow-unsafe", "--no-header", "--strip-extras",
                    "--index-url", PYPI, "--cache-dir", str(cache / "pip-tools"), "--output-file", str(out),
                    str(source)], env=clean_env(cache), check=True)
    return count_pins(out)


def run_uv(uv: str, requirements: list[str], cache: Path, out: Path) -> int:
    source = out.with_suffix(".in")
    source.write_text("\n".join(requirements) + "\n")
    subprocess.run([uv, "pip", "compile", "--quiet", "--generate-hashes", "--no-header", "--index-url", PYPI,
                    "--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_36",
                    "--only-binary", ":all:", "--cache-dir", str(cache / "uv"), "--output-file", str(out),
                    str(source)], env=clean_env(cache), check=True)
    return count_pins(out)


def count_pins(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if "==" in line and not line.startswith((" ", "#")))


def read_pins(path: Path) -> set[str]:
    """name==version lines, names normalised, so the three outputs compare."""
    from packaging.utils import canonicalize_name

    pins = set()
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split(" ")[0].split("==")
            pins.add(f"{canonicalize_name(name.split('[')[0])}=={version}")
    return pins


def install_uv(where: Path) -> str:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    subprocess.run([str(where / "bin" / "pip"), "install", "--quiet", "--isolated", "--disable-pip-version-check",
                    "--index-url", PYPI, UV_VERSION], check=True, env=clean_env(where))
    uv = str(where / "bin" / "uv")
    print(subprocess.run([uv, "--version"], capture_output=True, text=True).stdout.strip())
    return uv


def slug(name: str) -> str:
    return re.sub(r"\W+", "-", name)


def timed(function, *args) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the subprocesses it ran, pins)."""
    before, start = children_cpu(), time.perf_counter()
    pins = function(*args)
    return time.perf_counter() - start, children_cpu() - before, pins


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", nargs="+", default=["torch", "transformers", "pillow", "numpy"])
    parser.add_argument("--quick", action="store_true", help="lock `six` only: checks the bench still runs")
    parser.add_argument("--no-pip-compile", action="store_true", help="leave out pip-compile (it takes minutes)")
    parser.add_argument("--no-pip-alone", action="store_true", help="leave out cogbuild with pip as the resolver")
    parser.add_argument("--rounds", type=int, default=1, help="time every tool this often, interleaved; print medians")
    parser.add_argument("--baseline", type=Path, help="also time the cogbuild of this checkout (its root directory)")
    args = parser.parse_args()
    if args.quick:
        args.requirements = ["six"]
    with tempfile.TemporaryDirectory(prefix="bench-lock-") as tmp:
        work = Path(tmp)
        uv = install_uv(work / "uv-venv")
        tools = {
            "cogbuild": lambda cache, out: run_cogbuild(args.requirements, cache, out),
            "cogbuild, pip alone": lambda cache, out: run_cogbuild(args.requirements, cache, out, "pip"),
            "pip-compile": lambda cache, out: run_pip_compile(args.requirements, cache, out),
            "uv pip compile": lambda cache, out: run_uv(uv, args.requirements, cache, out),
        }
        if args.baseline:
            tools["cogbuild baseline"] = lambda cache, out: run_cogbuild(args.requirements, cache, out,
                                                                         root=args.baseline.resolve())
        if args.no_pip_compile:
            del tools["pip-compile"]
        if args.no_pip_alone:
            del tools["cogbuild, pip alone"]
        times: dict[str, dict[str, list[float]]] = {name: {"cold": [], "warm": []} for name in tools}
        cpu: dict[str, dict[str, list[float]]] = {name: {"cold": [], "warm": []} for name in tools}
        counts: dict[str, int] = {}
        for _ in range(args.rounds):
            for name, tool in tools.items():
                cache = work / f"cache-{slug(name)}"
                phases = ("cold",) if name == "pip-compile" else ("cold", "warm")
                for phase in phases:
                    seconds, cpu_seconds, counts[name] = timed(tool, cache, work / f"{slug(name)}-{phase}.txt")
                    times[name][phase].append(seconds)
                    cpu[name][phase].append(cpu_seconds)
                shutil.rmtree(cache, ignore_errors=True)
        pins = {name: read_pins(work / f"{slug(name)}-cold.txt") for name in tools}
    print(f"\nrequirements: {' '.join(args.requirements)} (CPython 3.11, linux/x86_64, hashes); "
          f"median of {args.rounds} round(s); load average {os.getloadavg()[0]:.1f}")
    print(f"{'tool':<20}{'pins':>6}{'cold s':>9}{'warm s':>9}{'cold ratio':>12}{'warm ratio':>12}")
    ours = {phase: statistics.median(times["cogbuild"][phase]) for phase in ("cold", "warm")}
    for name, phases in times.items():
        cold = statistics.median(phases["cold"])
        warm = statistics.median(phases["warm"]) if phases["warm"] else None
        warm_s, warm_ratio = (f"{warm:>9.2f}", f"{warm / ours['warm']:>12.2f}") if warm else (f"{'-':>9}", f"{'-':>12}")
        print(f"{name:<20}{counts[name]:>6}{cold:>9.2f}{warm_s}{cold / ours['cold']:>12.2f}{warm_ratio}")
    print("ratio = tool time / cogbuild time (above 1: cogbuild is faster)")
    # CPU seconds (user + system, every thread) move far less than wall time on a loaded shared machine.
    print(f"\n{'CPU s (median)':<20}{'cold':>9}{'warm':>9}")
    for name, phases in cpu.items():
        warm_cpu = f"{statistics.median(phases['warm']):>9.2f}" if phases["warm"] else f"{'-':>9}"
        print(f"{name:<20}{statistics.median(phases['cold']):>9.2f}{warm_cpu}")
    for name in [name for name in tools if name != "cogbuild"]:
        differ = sorted(pins["cogbuild"] ^ pins[name])
        print(f"pins differing from {name}: {', '.join(differ) if differ else 'none'}")


if __name__ == "__main__":
    main()
